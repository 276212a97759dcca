//! Time: eBPF timestamps are CLOCK_BOOTTIME; output wants wall-clock RFC
//! 3339.  Kernel jiffies need HZ, which the kernel does not export directly.

use std::io::Read;

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static BOOT_CLOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Which clock the programs stamp records with: boot time (Linux >= 5.8,
/// the default) or monotonic.
pub(crate) fn set_boot_clock(boot: bool) {
    BOOT_CLOCK.store(boot, std::sync::atomic::Ordering::Relaxed);
}

/// Now, on the clock records carry.
pub(crate) fn boottime_ns() -> u64 {
    if BOOT_CLOCK.load(std::sync::atomic::Ordering::Relaxed) {
        clock_ns(libc::CLOCK_BOOTTIME)
    } else {
        clock_ns(libc::CLOCK_MONOTONIC)
    }
}

/// Converts CLOCK_BOOTTIME to wall-clock time.  Re-synced periodically so
/// that NTP steps show up in the output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    /// realtime - boottime, in ns.
    offset_ns: i128,
}

impl WallClock {
    pub(crate) fn now() -> Self {
        let boot = boottime_ns();
        let real = clock_ns(libc::CLOCK_REALTIME);
        WallClock {
            offset_ns: i128::from(real) - i128::from(boot),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_offset(offset_ns: i128) -> Self {
        WallClock { offset_ns }
    }

    /// Unix time in ns of a CLOCK_BOOTTIME timestamp.
    pub(crate) fn unix_ns(&self, boot_ns: u64) -> i128 {
        i128::from(boot_ns) + self.offset_ns
    }
}

/// Formats Unix time in ns as RFC 3339 UTC with microseconds,
/// `2026-11-24T14:05:01.123456Z`, into a fixed buffer.
pub(crate) fn rfc3339(unix_ns: i128, out: &mut [u8; 27]) -> &str {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let micros = (unix_ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y.clamp(0, 9999) as u32, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, hh, 2);
    put(14, mm, 2);
    put(17, ss, 2);
    put(20, micros, 6);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out[26] = b'Z';
    std::str::from_utf8(out).expect("ASCII")
}

/// [`rfc3339`] for records in time order: the date and time of day are
/// formatted once per second and kept, only the microseconds per record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rfc3339Cache {
    /// The second `head` was formatted for.
    second: Option<i64>,
    /// `2026-11-24T14:05:01.` of that second.
    head: [u8; 20],
}

impl Rfc3339Cache {
    /// Exactly what [`rfc3339`] writes.
    pub(crate) fn format(&mut self, unix_ns: i128) -> [u8; 27] {
        let second = unix_ns.div_euclid(1_000_000_000) as i64;
        let mut out = [0u8; 27];
        if self.second == Some(second) {
            out[..20].copy_from_slice(&self.head);
            let mut micros = (unix_ns.rem_euclid(1_000_000_000) / 1000) as u32;
            for digit in out[20..26].iter_mut().rev() {
                *digit = b'0' + (micros % 10) as u8;
                micros /= 10;
            }
            out[26] = b'Z';
        } else {
            rfc3339(unix_ns, &mut out);
            self.head.copy_from_slice(&out[..20]);
            self.second = Some(second);
        }
        out
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The kernel's HZ: from the kernel config if the host exposes it, else
/// measured from /proc/timer_list, else the common default 250.
pub(crate) fn kernel_hz() -> (u32, &'static str) {
    if let Some(hz) = read_config_gz().as_deref().and_then(config_hz) {
        return (hz, "/proc/config.gz");
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boot_config = format!("/boot/config-{}", release.trim());
    if let Some(hz) = std::fs::read_to_string(boot_config)
        .ok()
        .as_deref()
        .and_then(config_hz)
    {
        return (hz, "/boot/config");
    }
    if let Some(hz) = measure_hz() {
        return (hz, "/proc/timer_list");
    }
    (250, "assumed")
}

fn read_config_gz() -> Option<String> {
    let file = std::fs::File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn config_hz(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
}

/// Maps kernel jiffies to CLOCK_BOOTTIME (storm summaries count in
/// jiffies: the eBPF counting path reads no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JiffiesAnchor {
    jiffies: u64,
    boot_ns: u64,
    hz: u32,
}

impl JiffiesAnchor {
    /// From /proc/timer_list (root only); None when unreadable.
    pub(crate) fn now(hz: u32) -> Option<Self> {
        let jiffies = timer_list_jiffies()?;
        Some(JiffiesAnchor {
            jiffies,
            boot_ns: boottime_ns(),
            hz,
        })
    }

    #[cfg(test)]
    pub(crate) fn at(jiffies: u64, boot_ns: u64, hz: u32) -> Self {
        JiffiesAnchor {
            jiffies,
            boot_ns,
            hz,
        }
    }

    pub(crate) fn boot_ns(&self, jiffies: u64) -> u64 {
        let delta = jiffies as i128 - self.jiffies as i128;
        let ns = delta * 1_000_000_000 / i128::from(self.hz.max(1));
        (i128::from(self.boot_ns) + ns).max(0) as u64
    }
}

fn timer_list_jiffies() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/timer_list").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("jiffies: "))
        .and_then(|v| v.trim().parse().ok())
}

fn measure_hz() -> Option<u32> {
    let (j0, t0) = (timer_list_jiffies()?, boottime_ns());
    std::thread::sleep(std::time::Duration::from_millis(60));
    let (j1, t1) = (timer_list_jiffies()?, boottime_ns());
    let measured = (j1 - j0) as f64 * 1e9 / (t1 - t0) as f64;
    snap_hz(measured)
}

/// Rounds a measured tick rate to the nearest HZ a kernel can be built with.
fn snap_hz(measured: f64) -> Option<u32> {
    [100u32, 250, 300, 1000]
        .into_iter()
        .min_by(|a, b| {
            (f64::from(*a) - measured)
                .abs()
                .total_cmp(&(f64::from(*b) - measured).abs())
        })
        .filter(|_| measured > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ns: i128) -> String {
        let mut buf = [0u8; 27];
        rfc3339(ns, &mut buf).to_string()
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            fmt(1_795_968_301_123_456_789),
            "2026-11-29T16:05:01.123456Z"
        );
        // Leap day and end of year.
        assert_eq!(
            fmt(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            fmt(1_703_980_799 * 1_000_000_000 + 999_999_999),
            "2023-12-30T23:59:59.999999Z"
        );
        assert_eq!(fmt(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn the_cache_formats_as_rfc3339_does() {
        let mut cache = Rfc3339Cache::default();
        let base = 1_795_968_301_123_456_789i128;
        // Within a second, across seconds, days and years, backwards, and
        // before 1970.
        let steps = [
            0,
            1,
            999,
            1_000,
            876_543_210,
            1_000_000_000,
            86_400_000_000_000,
        ];
        for start in [base, 1_703_980_799 * 1_000_000_000, -1_000, 0] {
            for (i, step) in steps.iter().enumerate() {
                for ns in [start + step, start - step, start + step * i as i128] {
                    let mut want = [0u8; 27];
                    rfc3339(ns, &mut want);
                    assert_eq!(cache.format(ns), want, "{ns}");
                }
            }
        }
    }

    #[test]
    fn converts_boottime() {
        let c = WallClock::with_offset(1_000);
        assert_eq!(c.unix_ns(5), 1_005);
    }

    #[test]
    fn jiffies_to_boottime() {
        let a = JiffiesAnchor::at(1_000, 50_000_000_000, 250);
        assert_eq!(a.boot_ns(1_250), 51_000_000_000);
        assert_eq!(a.boot_ns(750), 49_000_000_000);
        assert_eq!(a.boot_ns(0), 46_000_000_000);
    }

    #[test]
    fn parses_config_hz() {
        assert_eq!(
            config_hz("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(config_hz("CONFIG_X=y\n"), None);
    }

    #[test]
    fn snaps_measured_hz() {
        assert_eq!(snap_hz(248.3), Some(250));
        assert_eq!(snap_hz(990.0), Some(1000));
        assert_eq!(snap_hz(290.0), Some(300));
        assert_eq!(snap_hz(0.0), None);
    }
}
