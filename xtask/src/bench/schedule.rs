//! The order of the measurements.  Every round runs the no-tracer baseline
//! before each tracer variant, and the run ends with one more baseline, so
//! every variant sits between two baselines; its ratio in that round is
//! taken against their mean, which cancels slow drift of the machine.  The
//! variants rotate by one place per round so that none always runs first.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// No tracer.
    Baseline,
    /// The variant with this index.
    Variant(usize),
}

/// The steps of a run, each with its round (0-based; the closing baseline
/// belongs to the last round).
pub(super) fn schedule(variants: usize, rounds: usize) -> Vec<(usize, Step)> {
    let mut steps = Vec::new();
    for round in 0..rounds {
        for k in 0..variants {
            steps.push((round, Step::Baseline));
            steps.push((round, Step::Variant((k + round) % variants)));
        }
    }
    if variants > 0 && rounds > 0 {
        steps.push((rounds - 1, Step::Baseline));
    }
    steps
}

/// For each step, the mean of the baseline values nearest before and after
/// it (`None` for baselines themselves, or when no baseline was measured).
pub(super) fn adjacent_baselines(steps: &[Step], values: &[f64]) -> Vec<Option<f64>> {
    let is_base = |s: &Step| *s == Step::Baseline;
    (0..steps.len())
        .map(|i| {
            if is_base(&steps[i]) {
                return None;
            }
            let before = steps[..i].iter().rposition(is_base);
            let after = steps[i + 1..].iter().position(is_base).map(|j| i + 1 + j);
            let found: Vec<f64> = [before, after]
                .into_iter()
                .flatten()
                .filter_map(|j| values.get(j).copied())
                .collect();
            (!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Step::*, *};

    #[test]
    fn baseline_before_every_variant_and_rotation() {
        let steps: Vec<Step> = schedule(3, 2).into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            [
                Baseline,
                Variant(0),
                Baseline,
                Variant(1),
                Baseline,
                Variant(2),
                Baseline,
                Variant(1),
                Baseline,
                Variant(2),
                Baseline,
                Variant(0),
                Baseline,
            ]
        );
        let rounds: Vec<usize> = schedule(3, 2).into_iter().map(|(r, _)| r).collect();
        assert_eq!(rounds, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
        assert!(schedule(0, 5).is_empty());
    }

    #[test]
    fn no_variant_always_first() {
        let firsts: Vec<Step> = (0..3)
            .map(|r| {
                let s = schedule(3, 3);
                s.into_iter()
                    .find(|(round, s)| *round == r && *s != Baseline)
                    .unwrap()
                    .1
            })
            .collect();
        assert_eq!(firsts, [Variant(0), Variant(1), Variant(2)]);
    }

    #[test]
    fn ratios_use_the_neighbouring_baselines() {
        let steps = [Baseline, Variant(0), Baseline, Variant(1), Baseline];
        let values = [100.0, 50.0, 80.0, 30.0, 60.0];
        assert_eq!(
            adjacent_baselines(&steps, &values),
            [None, Some(90.0), None, Some(70.0), None]
        );
        // A variant at an edge uses the one baseline it has.
        assert_eq!(
            adjacent_baselines(&[Variant(0), Baseline], &[1.0, 4.0]),
            [Some(4.0), None]
        );
    }
}
