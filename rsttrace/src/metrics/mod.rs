//! `--metrics ADDR:PORT`: counts for Prometheus.  The pipeline tallies
//! every reset it classifies (reported, silenced by a rule, or counted
//! in a storm summary) by direction, cause, the owner's process name and
//! its container; a scrape renders the tally with what the capture and
//! the output say (hooks, losses).  Labels never carry addresses, ports
//! or pids, and process names and containers are bounded (see `labels`).

pub(crate) mod exposition;
pub(crate) mod labels;
pub(crate) mod server;

use std::collections::HashMap;

use self::labels::BoundedLabel;
use crate::{
    classify::{Cause, Direction},
    hash::BuildWordHasher,
    model::{failure::FailureKind, lost::LostWhy, reset::Reset, suppressed::Suppressed},
};

/// Distinct process names kept as their own label value.
pub(crate) const MAX_COMMS: usize = 64;
/// Distinct containers kept as their own label value.
pub(crate) const MAX_CONTAINERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ResetKey {
    direction: Direction,
    cause: Cause,
    comm: u16,
    container: u16,
}

/// Hashed as one word (with `WordHasher`): every reset is counted here.
impl std::hash::Hash for ResetKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = (self.direction as u64) << 48
            | (self.cause as u64) << 32
            | u64::from(self.comm) << 16
            | u64::from(self.container);
        state.write_u64(word);
    }
}

/// What the pipeline counted.
pub(crate) struct Tally {
    resets: HashMap<ResetKey, u64, BuildWordHasher>,
    comms: BoundedLabel,
    containers: BoundedLabel,
    /// Resets silenced, by rule (in the rules' order).
    pub by_rule: Vec<u64>,
    pub storm_aggregated: u64,
    failures: HashMap<FailureKind, u64>,
    lost: HashMap<LostWhy, u64>,
}

impl Tally {
    pub(crate) fn new(rules: usize) -> Self {
        Tally {
            resets: HashMap::default(),
            comms: BoundedLabel::new(MAX_COMMS),
            containers: BoundedLabel::new(MAX_CONTAINERS),
            by_rule: vec![0; rules],
            storm_aggregated: 0,
            failures: HashMap::new(),
            lost: HashMap::new(),
        }
    }

    fn count(&mut self, direction: Direction, cause: Cause, comm: &str, container: &str, n: u64) {
        let key = ResetKey {
            direction,
            cause,
            comm: self.comms.id(comm),
            container: self.containers.id(container),
        };
        *self.resets.entry(key).or_insert(0) += n;
    }

    /// A reset reported, or silenced by rule `rule`.
    pub(crate) fn reset(&mut self, r: &Reset, rule: Option<usize>) {
        let owner = r.owner.as_ref();
        let comm = owner.map_or("", |o| o.comm.as_str());
        let container = owner
            .and_then(|o| o.container())
            .and_then(|c| c.id.as_deref())
            .map_or("", short_id);
        self.count(r.direction, r.cause, comm, container, 1);
        if let Some(i) = rule {
            self.by_rule[i] += 1;
        }
    }

    /// A storm summary: resets the kernel counted instead of reporting.
    pub(crate) fn storm(&mut self, s: &Suppressed) {
        let comm = s.owner.as_ref().map_or("", |o| o.comm.as_str());
        self.count(s.direction, s.cause, comm, "", s.count);
        self.storm_aggregated += s.count;
    }

    pub(crate) fn failure(&mut self, kind: FailureKind) {
        *self.failures.entry(kind).or_insert(0) += 1;
    }

    /// Resets the kernel could not hand over.  (Records the output could
    /// not write are the sink's to count.)
    pub(crate) fn lost(&mut self, why: LostWhy, n: u64) {
        if why != LostWhy::OutputStalled {
            *self.lost.entry(why).or_insert(0) += n;
        }
    }
}

/// The 12-digit form of a container id that `docker ps` and `podman ps`
/// show.
pub(crate) fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::{
        exposition::{render, Snapshot},
        *,
    };

    /// The exposition of a tally, with nothing else to report.
    fn exposition(t: &Tally) -> String {
        render(&Snapshot {
            tally: t,
            rule_names: vec![],
            kernel: "6.18",
            transport: "ringbuf",
            hooks: vec![],
            filtered: 0,
            kernel_seen: 0,
            strays: 0,
            unwritten: 0,
        })
    }

    /// The comm and container label values of every resets series.
    fn label_values(t: &Tally) -> (Vec<String>, Vec<String>, u64) {
        let body = exposition(t);
        let (mut comms, mut containers, mut total) = (vec![], vec![], 0);
        for line in body
            .lines()
            .filter(|l| l.starts_with("rsttrace_resets_total{"))
        {
            let value = |label: &str| {
                let start = line.find(&format!("{label}=\"")).expect(label) + label.len() + 2;
                line[start..start + line[start..].find('"').unwrap()].to_string()
            };
            comms.push(value("comm"));
            containers.push(value("container"));
            total += line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        }
        (comms, containers, total)
    }

    /// `extra` process names past their ceiling (sent resets, one each)
    /// and `extra` containers past theirs (received, two each).
    fn overflowing_tally(extra: usize) -> Tally {
        let mut t = Tally::new(0);
        for i in 0..MAX_COMMS + extra {
            let comm = format!("comm{i}");
            t.count(Direction::Sent, Cause::NoListener, &comm, "", 1);
        }
        for i in 0..MAX_CONTAINERS + extra {
            let id = format!("{i:012x}");
            t.count(Direction::Received, Cause::PeerReset, "", &id, 2);
        }
        t
    }

    /// How many distinct values other than `other` and empty, all with
    /// `prefix`.
    fn named(values: &[String], prefix: &str) -> usize {
        let mut v: Vec<&String> = values
            .iter()
            .filter(|v| !v.is_empty() && *v != "other")
            .collect();
        v.sort();
        v.dedup();
        assert!(v.iter().all(|c| c.starts_with(prefix)), "{v:?}");
        v.len()
    }

    /// At the real ceilings: the first 64 process names and 32 containers
    /// keep their own series, every later one is counted under `other`,
    /// and no reset is lost on the way.
    #[test]
    fn process_names_and_containers_are_bounded_at_their_ceilings() {
        let extra = 10;
        let t = overflowing_tally(extra);
        let (comms, containers, total) = label_values(&t);
        assert_eq!(named(&comms, "comm"), MAX_COMMS);
        assert_eq!(named(&containers, ""), MAX_CONTAINERS);
        // The first ones seen are the ones named.
        assert!(comms.contains(&"comm0".to_string()) && comms.contains(&"comm63".to_string()));
        assert!(!comms.contains(&"comm64".to_string()));
        assert!(containers.contains(&format!("{:012x}", MAX_CONTAINERS - 1)));
        assert!(!containers.contains(&format!("{MAX_CONTAINERS:012x}")));
        // One `other` series each, holding exactly the overflow.
        assert_eq!(comms.iter().filter(|c| *c == "other").count(), 1);
        assert_eq!(containers.iter().filter(|c| *c == "other").count(), 1);
        assert_eq!(
            total,
            (MAX_COMMS + extra) as u64 + 2 * (MAX_CONTAINERS + extra) as u64
        );
        let body = exposition(&t);
        let other = |label: &str, n: u64| {
            let line = body
                .lines()
                .find(|l| {
                    l.starts_with("rsttrace_resets_total{")
                        && l.contains(&format!("{label}=\"other\""))
                })
                .unwrap_or_else(|| panic!("no {label}=other series"));
            assert!(line.ends_with(&format!(" {n}")), "{line}");
        };
        other("comm", extra as u64);
        other("container", 2 * extra as u64);
    }
}
