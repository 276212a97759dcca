//! From the measurements of a run to the figures the tables show: each
//! variant's samples with their ratio to the adjacent baselines, and
//! min / median / max over the rounds.

use super::{
    measure::Sample,
    schedule::{adjacent_baselines, Step},
    variants::Variant,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no values.
    pub(super) fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut xs: Vec<f64> = values.into_iter().collect();
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let median = match n {
            0 => return None,
            n if n % 2 == 1 => xs[n / 2],
            n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
        };
        Some(Summary {
            min: xs[0],
            median,
            max: xs[n - 1],
        })
    }
}

/// One variant's measurements, one per round.
pub(super) struct Runs {
    pub variant: Variant,
    pub samples: Vec<Sample>,
    /// Each sample's rate over the mean of its adjacent baselines.
    pub ratios: Vec<f64>,
    /// Measured apart with BPF run-time statistics on (which slow every
    /// program run): the in-kernel cost, never a ratio.
    pub costed: Vec<Sample>,
}

/// One table: the baselines and every variant.
pub(super) struct Table {
    pub baseline: Vec<Sample>,
    pub runs: Vec<Runs>,
}

/// Sorts the samples of a run (in `steps` order) by variant.
pub(super) fn collect(variants: &[Variant], steps: &[Step], samples: Vec<Sample>) -> Table {
    let rates: Vec<f64> = samples.iter().map(|s| s.rate).collect();
    let bases = adjacent_baselines(steps, &rates);
    let mut runs: Vec<Runs> = variants
        .iter()
        .map(|v| Runs {
            variant: v.clone(),
            samples: Vec::new(),
            ratios: Vec::new(),
            costed: Vec::new(),
        })
        .collect();
    let mut baseline = Vec::new();
    for ((step, sample), base) in steps.iter().zip(samples).zip(bases) {
        match step {
            Step::Baseline => baseline.push(sample),
            Step::Variant(k) => {
                let r = &mut runs[*k];
                r.ratios.push(base.map_or(f64::NAN, |b| sample.rate / b));
                r.samples.push(sample);
            }
        }
    }
    Table { baseline, runs }
}

impl Runs {
    pub(super) fn rate(&self) -> Option<Summary> {
        Summary::of(self.samples.iter().map(|s| s.rate))
    }

    pub(super) fn ratio(&self) -> Option<Summary> {
        Summary::of(self.ratios.iter().copied().filter(|r| r.is_finite()))
    }

    /// A figure of the runs with BPF statistics on.
    pub(super) fn per_costed(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<Summary> {
        Summary::of(self.costed.iter().filter_map(f))
    }

    /// A tracer counter summed over the rounds.
    pub(super) fn total(&self, f: impl Fn(&Sample) -> u64) -> u64 {
        self.samples.iter().map(f).sum()
    }

    /// A tracer figure's largest value over the rounds.
    pub(super) fn peak(&self, f: impl Fn(&Sample) -> u64) -> u64 {
        self.samples.iter().map(f).max().unwrap_or(0)
    }
}

/// Largest change between consecutive baselines, relative to their mean:
/// how much the machine drifted while the run lasted.
pub(super) fn baseline_drift(baseline: &[Sample]) -> Option<f64> {
    baseline
        .windows(2)
        .map(|w| (w[1].rate - w[0].rate).abs() / ((w[0].rate + w[1].rate) / 2.0))
        .filter(|d| d.is_finite())
        .max_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::{super::variants, *};

    fn sample(rate: f64) -> Sample {
        Sample {
            rate,
            ..Sample::default()
        }
    }

    #[test]
    fn min_median_max() {
        let s = Summary::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(Summary::of([4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Summary::of([]), None);
    }

    #[test]
    fn ratios_per_variant_against_adjacent_baselines() {
        let choice = variants::Choice {
            only: &["rsttrace".into(), "tcpdump".into()],
            transport: None,
        };
        let vs = variants::select(super::super::load::Load::SynStorm, &choice, |_| false);
        let steps: Vec<Step> = super::super::schedule::schedule(2, 2)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        // B 0 B 1 | B 1 B 0 | B
        let rates = [100.0, 50.0, 100.0, 80.0, 60.0, 30.0, 60.0, 40.0, 100.0];
        let t = collect(&vs, &steps, rates.iter().map(|&r| sample(r)).collect());
        assert_eq!(t.baseline.len(), 5);
        assert_eq!(t.runs[0].ratios, [0.5, 0.5]);
        assert_eq!(t.runs[1].ratios, [1.0, 0.5]);
        let r = t.runs[1].ratio().unwrap();
        assert_eq!((r.min, r.median, r.max), (0.5, 0.75, 1.0));
        assert_eq!(t.runs[0].rate().unwrap().median, 45.0);
    }

    #[test]
    fn drift_between_consecutive_baselines() {
        let b = [sample(100.0), sample(100.0), sample(80.0)];
        let d = baseline_drift(&b).unwrap();
        assert!((d - 20.0 / 90.0).abs() < 1e-9);
        assert_eq!(baseline_drift(&b[..1]), None);
    }
}
