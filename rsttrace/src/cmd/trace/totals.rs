//! Losses as they happen, and the totals printed at exit.

use std::time::Duration;

use anyhow::{bail, Result};
use rsttrace_common::{
    config::{Control, MODE_EVENTS},
    event::{
        COUNTER_AGGREGATED, COUNTER_AGG_OVERFLOW, COUNTER_EMITTED, COUNTER_FILTERED, COUNTER_LOST,
        COUNTER_SEEN, COUNTER_STRAY,
    },
};

use super::{storm::drain_aggregates, Stop, DRAIN_LIMIT};
use crate::{capture::Capture, model::lost::LostWhy, pipeline::Pipeline};

/// Losses already reported, by kind.
#[derive(Default)]
pub(super) struct Losses {
    buffer_full: u64,
    nested: u64,
    unwritten: u64,
}

/// How long a stalled reader gets at exit before its records are given
/// up (and counted): half of the second the README promises from SIGTERM
/// to exit, the rest is for draining and detaching (the e2e test
/// `edges::a_stalled_stdout_does_not_hold_shutdown` times it).
const EXIT_WAIT: Duration = Duration::from_millis(500);

/// Records the kernel could not hand over because the buffer was full.
/// Perf buffers also report their losses to the reader; the kernel
/// counter covers them, so take the larger rather than the sum.
fn buffer_full(capture: &mut Capture) -> u64 {
    let c = capture.counters();
    c.values[COUNTER_LOST as usize].max(capture.perf_lost())
}

impl Losses {
    /// Reports new losses as `lost` records and on stderr.
    pub(super) fn report(&mut self, capture: &mut Capture, pipeline: &mut Pipeline) {
        let full = buffer_full(capture);
        if full > self.buffer_full {
            let delta = full - self.buffer_full;
            log::warn!("{delta} resets lost: the kernel could not hand them over (raise --buffer-size or use --storm auto)");
            pipeline.on_lost(delta, LostWhy::BufferFull);
            self.buffer_full = full;
        }
        let nested = capture.counters().recursion_misses;
        if nested > self.nested {
            let delta = nested - self.nested;
            log::warn!(
                "{delta} events lost: the kernel skipped a program already running on the same CPU"
            );
            pipeline.on_lost(delta, LostWhy::Nested);
            self.nested = nested;
        }
        let sink = pipeline.sink();
        let (unwritten, flowing) = (sink.dropped(), sink.flowing());
        if unwritten > self.unwritten && flowing {
            // Said on stderr when it started (see `Sink::send`).
            pipeline.on_lost(unwritten - self.unwritten, LostWhy::OutputStalled);
            self.unwritten = unwritten;
        }
    }
}

pub(super) fn finish(
    capture: &mut Capture,
    pipeline: &mut Pipeline,
    control: &mut Control,
    outcome: Result<Stop>,
) -> Result<()> {
    let stop = outcome?;
    let reading = !matches!(stop, Stop::OutputClosed) && !pipeline.is_closed();
    if reading {
        hand_over_the_rest(capture, pipeline, control)?;
    }
    let counters = capture.counters();
    let lost = buffer_full(capture) + counters.recursion_misses;
    let _ = pipeline.flush();
    let sunk = pipeline.finish_output(EXIT_WAIT);
    let sink = pipeline.sink();
    let (name, error, closed) = (sink.name().to_string(), sink.error(), sink.closed());
    if let Some(e) = pipeline.take_write_error().or(error) {
        bail!("cannot write to {name}: {e}");
    }
    if !reading || closed {
        // `rsttrace | head`: the reader has what it wanted.
        return Ok(());
    }
    let s = pipeline.stats();
    let extra = accounted_besides(&s, control, sunk.unwritten, &name);
    eprintln!("{}", totals_line(&s, &counters.values, lost, &extra));
    Ok(())
}

/// Stops producing, hands over what is buffered and the storm counts,
/// and writes the --summary period so far.
fn hand_over_the_rest(
    capture: &mut Capture,
    pipeline: &mut Pipeline,
    control: &mut Control,
) -> Result<()> {
    while capture.drain(DRAIN_LIMIT, &mut |bytes| pipeline.handle(bytes)) >= DRAIN_LIMIT {}
    pipeline.release(true);
    if control.mode != MODE_EVENTS {
        drain_aggregates(capture, pipeline, control)?;
        drain_aggregates(capture, pipeline, control)?;
    }
    pipeline.summarize();
    Ok(())
}

/// The resets and records accounted other than as reported, for the exit
/// line: counted in storms, silenced, failures, filtered, unwritten.
fn accounted_besides(
    s: &crate::pipeline::Stats,
    control: &Control,
    unwritten: u64,
    output: &str,
) -> String {
    let mut extra = String::new();
    if s.suppressed_records > 0 || control.mode != MODE_EVENTS {
        extra += &format!(
            ", {} counted in {} storm summaries",
            s.suppressed_resets, s.suppressed_records
        );
    }
    if s.silenced > 0 {
        extra += &format!(", {} suppressed by rules", s.silenced);
    }
    if s.failures > 0 {
        extra += &format!(", {} connection failures", s.failures);
    }
    if s.filtered > 0 {
        extra += &format!(", {} filtered out", s.filtered);
    }
    if unwritten > 0 {
        extra += &format!(", {unwritten} records not written ({output} stalled)");
    }
    extra
}

/// The exit totals: what rsttrace reported against what the kernel saw.
fn totals_line(s: &crate::pipeline::Stats, v: &[u64], lost: u64, extra: &str) -> String {
    let undecodable = match s.decode_errors {
        0 => String::new(),
        n => format!(", {n} undecodable records"),
    };
    let keyless = match v[COUNTER_AGG_OVERFLOW as usize] {
        0 => String::new(),
        n => format!(" ({n} counted without a key: aggregation table full)"),
    };
    let strays = match v[COUNTER_STRAY as usize] {
        0 => String::new(),
        n => format!(
            ", {n} resets for no socket (stray{})",
            if s.strays > 0 {
                ", reported"
            } else {
                "; --stray-resets reports them"
            }
        ),
    };
    format!(
        "rsttrace: {} resets reported ({} sent, {} received){extra}, {lost} lost{undecodable}; \
         kernel: {} resets seen, {} aggregated{keyless}, {} outside --netns{strays}, {} records sent",
        s.resets,
        s.sent,
        s.received,
        v[COUNTER_SEEN as usize],
        v[COUNTER_AGGREGATED as usize],
        v[COUNTER_FILTERED as usize],
        v[COUNTER_EMITTED as usize],
    )
}
