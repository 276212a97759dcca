//! Storm handling in userspace: draining the kernel's per-key counts, and
//! telling when a storm starts and ends.

use std::time::Duration;

use anyhow::Result;
use rsttrace_common::config::Control;

use crate::{capture::Capture, pipeline::Pipeline};

/// How often storm modes look at the reset rate.
pub(super) const STORM_CHECK: Duration = Duration::from_millis(200);
/// Calm checks before a storm counts as over.
const CALM_CHECKS: u32 = 10;

/// Tells when a storm starts (`Some(true)`) and ends (`Some(false)`),
/// from the kernel's count of resets seen.
pub(super) struct StormWatch {
    per_check: u64,
    last_seen: Option<u64>,
    storming: bool,
    calm: u32,
}

impl StormWatch {
    pub(super) fn new(per_sec: u32) -> Self {
        StormWatch {
            per_check: (u64::from(per_sec) * STORM_CHECK.as_millis() as u64 / 1000).max(1),
            last_seen: None,
            storming: false,
            calm: 0,
        }
    }

    pub(super) fn update(&mut self, seen: u64) -> Option<bool> {
        let delta = seen.saturating_sub(self.last_seen.replace(seen)?);
        if delta >= self.per_check {
            self.calm = 0;
            if !self.storming {
                self.storming = true;
                return Some(true);
            }
        } else if self.storming {
            self.calm += 1;
            if self.calm >= CALM_CHECKS {
                self.storming = false;
                return Some(false);
            }
        }
        None
    }
}

/// Switches the programs to the other epoch and reports the old one.
pub(super) fn drain_aggregates(
    capture: &mut Capture,
    pipeline: &mut Pipeline,
    control: &mut Control,
) -> Result<()> {
    let old = control.epoch as u8;
    control.epoch ^= 1;
    capture.set_control(*control)?;
    let entries = capture.take_aggregates(old)?;
    pipeline.on_aggregates(&entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_watch_pauses_and_resumes() {
        // 5000/s = 1000 per 200 ms check.
        let mut w = StormWatch::new(5000);
        assert_eq!(w.update(0), None, "the first reading is a baseline");
        assert_eq!(w.update(500), None);
        assert_eq!(w.update(5000), Some(true));
        assert_eq!(w.update(9000), None, "still storming");
        for i in 0..CALM_CHECKS - 1 {
            assert_eq!(w.update(9000 + u64::from(i)), None);
        }
        assert_eq!(w.update(9100), Some(false));
        assert_eq!(w.update(9200), None);
    }
}
