//! The event loop: read the kernel's buffers, hand records to the
//! pipeline, and serve signals, timers and the scanner's answers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rsttrace_common::{
    config::{Control, MODE_EVENTS},
    event::COUNTER_SEEN,
};
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    time::{Interval, MissedTickBehavior},
};

use super::{
    rawdump::RawDump,
    service::Service,
    storm::{drain_aggregates, StormWatch, STORM_CHECK},
    totals::Losses,
    Stop, DRAIN_LIMIT,
};
use crate::{
    capture::{diag::Diagnostics, Capture},
    cli::TraceArgs,
    output::OutputError,
    pipeline::Pipeline,
};

/// How soon to look again after reading something: catches records that
/// arrived without a wake-up (see the eBPF wake-up policy).
const RECHECK: Duration = Duration::from_millis(10);

/// What the loop keeps between iterations.
struct Loop<'a> {
    args: &'a TraceArgs,
    control: &'a mut Control,
    recheck: Option<Duration>,
    last_summary: Instant,
    storm: StormWatch,
    losses: Losses,
    /// Dev-only: every record read, saved (see `rawdump`).
    dump: Option<RawDump>,
}

/// The signals and clocks the loop waits on besides the buffers.
struct Wakers {
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
    tick: Interval,
    storm_check: Interval,
    summary: Interval,
    deadline: Option<tokio::time::Instant>,
}

fn every(period: Duration, first: Duration) -> Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

impl Wakers {
    fn new(args: &TraceArgs, service: &Service) -> Result<Wakers> {
        let on = |kind, name| signal(kind).with_context(|| format!("cannot handle {name}"));
        let summary = service.summary.unwrap_or(Duration::from_secs(3600));
        Ok(Wakers {
            sigint: on(SignalKind::interrupt(), "SIGINT")?,
            sigterm: on(SignalKind::terminate(), "SIGTERM")?,
            sighup: on(SignalKind::hangup(), "SIGHUP")?,
            tick: every(Duration::from_secs(1), Duration::ZERO),
            storm_check: every(STORM_CHECK, Duration::ZERO),
            summary: every(summary, summary),
            deadline: args
                .duration
                .map(|s| tokio::time::Instant::now() + Duration::from_secs(s)),
        })
    }
}

/// Sleeps until `deadline` (forever without one).
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn run(
    capture: &mut Capture,
    pipeline: &mut Pipeline,
    args: &TraceArgs,
    control: &mut Control,
    service: &Service,
) -> Result<Stop> {
    let mut w = Wakers::new(args, service)?;
    // Storm modes take the firewall hooks off while a storm lasts.
    let watch_storms = control.mode != MODE_EVENTS && capture.has_firewall();
    let mut diagnostics = capture.take_diagnostics();
    let mut l = Loop::new(args, control);
    loop {
        let scanner_busy = pipeline.scanner_busy();
        tokio::select! {
            r = capture.ready(l.recheck) => {
                r.context("waiting for events")?;
                if let Some(stop) = l.read(capture, pipeline) {
                    return Ok(stop);
                }
            }
            Some(reply) = async {
                match pipeline.scanner_replies() {
                    Some(rx) if scanner_busy => rx.recv().await,
                    _ => std::future::pending().await,
                }
            } => pipeline.on_scanner_reply(reply),
            () = Diagnostics::next(&mut diagnostics) => {}
            _ = w.sigint.recv() => return Ok(Stop::Signal),
            _ = w.sigterm.recv() => return Ok(Stop::Signal),
            // logrotate renamed the file: what is queued goes to the old
            // one, what follows to a new one.
            _ = w.sighup.recv() => {
                pipeline.reopen_output();
            }
            () = until(w.deadline) => return Ok(Stop::Done),
            _ = w.storm_check.tick(), if watch_storms => l.watch_storm(capture)?,
            Some(client) = service.scrape() => service.answer(client, capture, pipeline),
            _ = w.summary.tick(), if service.summary.is_some() => pipeline.summarize(),
            _ = w.tick.tick() => {
                if let Some(stop) = l.every_second(capture, pipeline)? {
                    return Ok(stop);
                }
            }
        }
        if pipeline.is_closed() {
            return Ok(Stop::OutputClosed);
        }
        if args.count.is_some_and(|c| pipeline.stats().resets >= c) {
            return Ok(Stop::Done);
        }
    }
}

impl<'a> Loop<'a> {
    fn new(args: &'a TraceArgs, control: &'a mut Control) -> Self {
        Loop {
            args,
            storm: StormWatch::new(args.storm_threshold),
            control,
            recheck: None,
            last_summary: Instant::now(),
            losses: Losses::default(),
            dump: RawDump::from_env(),
        }
    }

    fn read(&mut self, capture: &mut Capture, pipeline: &mut Pipeline) -> Option<Stop> {
        let n = match &mut self.dump {
            None => capture.drain(DRAIN_LIMIT, &mut |bytes| pipeline.handle(bytes)),
            Some(dump) => {
                let n = capture.drain(DRAIN_LIMIT, &mut |bytes| {
                    dump.record(bytes);
                    pipeline.handle(bytes);
                });
                dump.end_batch();
                n
            }
        };
        if let Err(OutputError::Closed) = pipeline.end_batch() {
            return Some(Stop::OutputClosed);
        }
        self.recheck = if n >= DRAIN_LIMIT {
            Some(Duration::ZERO)
        } else if n > 0 || pipeline.has_pending() {
            Some(RECHECK)
        } else {
            None
        };
        None
    }

    fn watch_storm(&mut self, capture: &mut Capture) -> Result<()> {
        let seen = capture.counters().values[COUNTER_SEEN as usize];
        match self.storm.update(seen) {
            Some(true) => {
                capture.set_firewall(false)?;
                log::warn!("reset storm: firewall-reset detection paused until it ends (its hooks run on every dropped packet)");
            }
            Some(false) => {
                capture.set_firewall(true)?;
                log::warn!("reset storm over: firewall-reset detection resumed");
            }
            None => {}
        }
        Ok(())
    }

    fn every_second(
        &mut self,
        capture: &mut Capture,
        pipeline: &mut Pipeline,
    ) -> Result<Option<Stop>> {
        pipeline.tick();
        capture.retry_waiting(&aya::Btf::new());
        pipeline.release(false);
        self.losses.report(capture, pipeline);
        let every = Duration::from_secs(self.args.summary_interval.max(1));
        if self.control.mode != MODE_EVENTS && self.last_summary.elapsed() >= every {
            self.last_summary = Instant::now();
            drain_aggregates(capture, pipeline, self.control)?;
        }
        if let Err(OutputError::Closed) = pipeline.flush() {
            return Ok(Some(Stop::OutputClosed));
        }
        Ok(None)
    }
}
