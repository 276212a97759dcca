//! `--summary SECS`: the commonest (cause, process, port) combinations of
//! each period, counted whether reported, silenced by a rule or counted
//! in a storm summary.

use std::{collections::HashMap, time::Instant};

use crate::{
    classify::{Cause, Direction},
    model::{conn::Comm, summary::Summary},
};

/// Rows shown per period.
pub(crate) const TOP: usize = 10;
/// Distinct rows counted per period; resets past it count in the total.
const MAX_ROWS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    cause: Cause,
    comm: Option<Comm>,
    port: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct Row {
    count: u64,
    suppressed: u64,
}

pub(crate) struct TopTable {
    rows: HashMap<Key, Row>,
    total: u64,
    since: Instant,
}

impl Default for TopTable {
    fn default() -> Self {
        TopTable {
            rows: HashMap::new(),
            total: 0,
            since: Instant::now(),
        }
    }
}

/// The service's port: ours for sent resets, the peer's for received
/// ones (the other side's ports are ephemeral).
pub(crate) fn service_port(direction: Direction, local: u16, remote: u16) -> u16 {
    match direction {
        Direction::Sent => local,
        Direction::Received => remote,
    }
}

impl TopTable {
    pub(crate) fn add(
        &mut self,
        cause: Cause,
        comm: Option<Comm>,
        port: u16,
        n: u64,
        suppressed: bool,
    ) {
        self.total += n;
        let key = Key { cause, comm, port };
        if self.rows.len() >= MAX_ROWS && !self.rows.contains_key(&key) {
            return;
        }
        let row = self.rows.entry(key).or_default();
        row.count += n;
        if suppressed {
            row.suppressed += n;
        }
    }

    /// The period's top rows, commonest first; starts a new period.
    pub(crate) fn take(&mut self, unix_ns: i128) -> Vec<Summary> {
        let period_s = (self.since.elapsed().as_secs_f64().round() as u64).max(1);
        self.since = Instant::now();
        let mut rows: Vec<(Key, Row)> = self.rows.drain().collect();
        rows.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then_with(|| a.0.cause.id().cmp(b.0.cause.id()))
                .then_with(|| a.0.port.cmp(&b.0.port))
                .then_with(|| {
                    a.0.comm
                        .map(|c| c.as_str().to_string())
                        .cmp(&b.0.comm.map(|c| c.as_str().to_string()))
                })
        });
        let total = std::mem::take(&mut self.total);
        rows.into_iter()
            .take(TOP)
            .zip(1..)
            .map(|((k, r), rank)| Summary {
                unix_ns,
                period_s,
                rank,
                count: r.count,
                suppressed: r.suppressed,
                cause: k.cause,
                comm: k.comm,
                port: k.port,
                period_count: total,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commonest_first_with_silenced_counted() {
        let mut t = TopTable::default();
        let nginx = Some(Comm::from_str_lossy("nginx"));
        t.add(Cause::NoListener, None, 81, 1, false);
        t.add(Cause::AbortUnreadData, nginx, 8080, 5, true);
        t.add(Cause::AbortUnreadData, nginx, 8080, 2, false);
        let rows = t.take(0);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].rank, rows[0].count, rows[0].suppressed), (1, 7, 5));
        assert_eq!(
            (rows[1].cause, rows[1].comm, rows[1].period_count),
            (Cause::NoListener, None, 8)
        );
        assert!(t.take(0).is_empty(), "a new period starts empty");
    }
}
