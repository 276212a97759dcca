//! What a guest's console says: the kernel, the userspace, the checks of
//! the shipped binary (`check NAME ok|failed: ...`), each test's outcome
//! (libtest lines, `SKIP <test>: <reason>` lines, the first panic line of
//! a failure), and the notes /init printed.  Printed as a table and, with
//! `--record`, written to docs/kernels.md.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, Result};

use super::{
    apt::Package,
    boot::Boot,
    layer::{NOTE, TESTS_BEGIN, TESTS_END},
    SERIES,
};

/// The checks of the shipped binary /init runs before the suite, as they
/// appear among the results; the last is made here, from the tracer's
/// checksum the guest printed.
pub(super) const CHECKS: [&str; 4] = [
    "dist::version",
    "dist::causes",
    "dist::refused_connect",
    "dist::tracer_is_the_dist_binary",
];

pub(super) enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
    Ignored,
    /// The guest never reported it (the run crashed or timed out).
    NoResult,
}

pub(super) struct Run {
    pub series: &'static str,
    pub package: String,
    /// `uname -r` and /proc/version, as the guest reported them.
    pub release: Option<String>,
    pub version: Option<String>,
    /// The guest root's os-release name and glibc.
    pub userspace: Option<String>,
    /// The tracer's SHA-256, as the guest computed it.
    pub tracer_sha256: Option<String>,
    pub tests: BTreeMap<String, Outcome>,
    /// The test binary's exit status; None if the run did not finish.
    pub exit: Option<i32>,
    /// Module load failures, missing commands, crashes.
    pub notes: Vec<String>,
    pub wall: Duration,
}

impl Run {
    fn count(&self, f: fn(&Outcome) -> bool) -> usize {
        self.tests.values().filter(|o| f(o)).count()
    }
    pub(super) fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }
    pub(super) fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_) | Outcome::NoResult))
    }
    pub(super) fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_) | Outcome::Ignored))
    }
    pub(super) fn ok(&self) -> bool {
        self.exit == Some(0) && self.failed() == 0
    }
    pub(super) fn summary_line(&self) -> String {
        format!(
            "vm: {}: {}: {} passed, {} failed, {} skipped; boot to power-off {}",
            self.series,
            self.release.as_deref().unwrap_or("kernel unknown"),
            self.passed(),
            self.failed(),
            self.skipped(),
            duration(self.wall)
        )
    }
}

pub(super) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The first panic message line in a test's captured output.
fn first_panic(lines: &[&str]) -> Option<String> {
    let i = lines.iter().position(|l| l.contains("panicked at "))?;
    let (_, after) = lines[i].split_once("panicked at ")?;
    // Since Rust 1.73: "panicked at FILE:LINE:COL:" and the message below.
    if !after.ends_with(':') {
        return Some(after.to_string());
    }
    let first = lines.get(i + 1)?.to_string();
    // A bare assert_eq!/assert_ne! says nothing on its first line: add
    // the values from the two lines below.
    if first.starts_with("assertion `left ") && first.ends_with("` failed") {
        let values: Vec<&str> = lines[i + 2..]
            .iter()
            .take(2)
            .map(|l| l.trim())
            .filter(|l| l.starts_with("left:") || l.starts_with("right:"))
            .collect();
        if !values.is_empty() {
            return Some(format!("{first} ({})", values.join(", ")));
        }
    }
    Some(first)
}

/// `NAME ok: DETAIL` or `NAME failed: DETAIL`.  `--version` must print
/// this workspace's version.
fn check_outcome(line: &str) -> Option<(&str, Outcome)> {
    let (name, rest) = line.split_once(' ')?;
    let outcome = if let Some(detail) = rest.strip_prefix("ok: ") {
        let want = format!("rsttrace {}", crate::dist::VERSION);
        if name == "version" && detail.trim() != want {
            Outcome::Failed(format!("printed {:?}, not {want:?}", detail.trim()))
        } else {
            Outcome::Passed
        }
    } else {
        Outcome::Failed(rest.strip_prefix("failed: ").unwrap_or(rest).trim().into())
    };
    Some((name, outcome))
}

/// The guest ran target/dist/rsttrace, byte for byte.
pub(super) fn check_tracer(run: &mut Run, sha256: &str) {
    let outcome = match &run.tracer_sha256 {
        Some(s) if s == sha256 => Outcome::Passed,
        Some(s) => Outcome::Failed(format!(
            "the guest's tracer has SHA-256 {s}, target/dist/rsttrace {sha256}"
        )),
        None => Outcome::Failed("the guest printed no checksum of its tracer".into()),
    };
    run.tests.insert(CHECKS[3].to_string(), outcome);
}

/// `SKIP <name>: <reason>` anywhere in a line.
fn skip_line(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once("SKIP ")?;
    let (name, reason) = rest.split_once(": ")?;
    (!name.contains(' ')).then_some((name, reason.trim()))
}

pub(super) fn parse(
    series: &'static str,
    package: &Package,
    boot: &Boot,
    expected: Option<&[String]>,
) -> Run {
    let lines: Vec<&str> = boot.console.lines().collect();
    let note = |what: &str| {
        lines
            .iter()
            .find_map(|l| l.split_once(NOTE).and_then(|(_, r)| r.strip_prefix(what)))
            .map(|s| s.trim().to_string())
    };
    let mut run = Run {
        series,
        package: format!("{} {}", package.name, package.version),
        release: note("kernel "),
        version: note("version "),
        userspace: note("userspace "),
        tracer_sha256: note("tracer sha256 "),
        tests: BTreeMap::new(),
        exit: None,
        notes: vec![],
        wall: boot.wall,
    };
    for l in &lines {
        if let Some((_, n)) = l.split_once(NOTE) {
            if n.starts_with("modprobe ") || n.starts_with("missing command ") {
                run.notes.push(n.trim().to_string());
            }
            if let Some((name, outcome)) = n.strip_prefix("check ").and_then(check_outcome) {
                run.tests.insert(format!("dist::{name}"), outcome);
            }
        }
    }
    if let (Some(a), Some(b)) = (note("tests start at uptime "), note("tests end at uptime ")) {
        if let (Ok(a), Ok(b)) = (a.parse::<f64>(), b.parse::<f64>()) {
            run.notes.push(format!(
                "tests took {} (guest clock), from {a:.0}s after boot",
                duration(Duration::from_secs_f64(b - a))
            ));
        }
    }
    let begin = lines.iter().position(|l| l.contains(TESTS_BEGIN));
    let end = lines.iter().position(|l| l.contains(TESTS_END));
    if let Some(e) = end {
        run.exit = lines[e]
            .split_once(TESTS_END)
            .and_then(|(_, r)| r.trim_end_matches('=').trim().parse().ok());
    }
    let section = match (begin, end) {
        (Some(b), Some(e)) => &lines[b + 1..e],
        (Some(b), None) => &lines[b + 1..],
        _ => &lines[0..0],
    };
    if begin.is_none() {
        run.notes.push("the guest never started the tests".into());
    } else if end.is_none() {
        run.notes.push(if boot.timed_out {
            "the test run timed out".into()
        } else {
            "the test run did not finish (guest crashed?)".into()
        });
    }
    if lines.iter().any(|l| l.contains("Kernel panic")) {
        run.notes.push("kernel panic (see console.log)".into());
    }

    // Captured output: "---- NAME stdout ----" up to the next block or list.
    let mut blocks: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut current: Option<&str> = None;
    let mut results: Vec<(&str, &str)> = vec![];
    for l in section {
        if let Some(name) = l
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        {
            current = Some(name);
            continue;
        }
        if matches!(*l, "failures:" | "successes:") || l.starts_with("test result:") {
            current = None;
        }
        if let Some(name) = current {
            blocks.entry(name).or_default().push(l);
        } else if let Some((name, result)) =
            l.strip_prefix("test ").and_then(|r| r.rsplit_once(" ... "))
        {
            results.push((name, result.trim()));
        }
    }
    // SKIP lines: inside a test's block they are that test's; elsewhere
    // (uncaptured output) the name says which test.
    let mut skips: BTreeMap<String, String> = BTreeMap::new();
    for (name, block) in &blocks {
        if let Some((_, reason)) = block.iter().find_map(|l| skip_line(l)) {
            skips.insert(name.to_string(), reason.to_string());
        }
    }
    let all_names: Vec<&str> = results.iter().map(|(n, _)| *n).collect();
    for l in section {
        if let Some((name, reason)) = skip_line(l) {
            if let Some(full) = all_names
                .iter()
                .find(|f| **f == name || f.ends_with(&format!("::{name}")))
            {
                skips
                    .entry(full.to_string())
                    .or_insert_with(|| reason.to_string());
            }
        }
    }
    for (name, result) in results {
        let outcome = if result == "ok" {
            match skips.get(name) {
                Some(reason) => Outcome::Skipped(reason.clone()),
                None => Outcome::Passed,
            }
        } else if result.starts_with("ignored") {
            Outcome::Ignored
        } else {
            let panic = blocks
                .get(name)
                .and_then(|b| first_panic(b))
                .unwrap_or_else(|| format!("{result} (no panic message; see console.log)"));
            Outcome::Failed(panic)
        };
        run.tests.insert(name.to_string(), outcome);
    }
    for name in expected.unwrap_or_default() {
        run.tests.entry(name.clone()).or_insert(Outcome::NoResult);
    }
    run
}

pub(super) fn print(runs: &[Run], setup: Duration) {
    println!();
    println!(
        "{:<7} {:<26} {:>6} {:>6} {:>7}  boot to power-off",
        "kernel", "guest kernel", "passed", "failed", "skipped"
    );
    for r in runs {
        println!(
            "{:<7} {:<26} {:>6} {:>6} {:>7}  {}",
            r.series,
            r.release.as_deref().unwrap_or("?"),
            r.passed(),
            r.failed(),
            r.skipped(),
            duration(r.wall)
        );
    }
    println!("(setup before the first boot: {})", duration(setup));
    for r in runs {
        println!(
            "\n{} ({}; console in target/vm/{}/console.log)",
            r.series, r.package, r.series
        );
        for n in &r.notes {
            println!("  note: {n}");
        }
        for (name, o) in &r.tests {
            match o {
                Outcome::Failed(p) => println!("  FAIL  {name}: {p}"),
                Outcome::NoResult => println!("  FAIL  {name}: no result"),
                Outcome::Skipped(why) => println!("  SKIP  {name}: {why}"),
                Outcome::Ignored => println!("  SKIP  {name}: ignored"),
                Outcome::Passed => {}
            }
        }
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn section(r: &Run, filter: &[String], commit: &str) -> String {
    let mut s = format!("<!-- kernel {} -->\n", r.series);
    s += &format!(
        "## {}\n\nGuest: `{}`\n\nUserspace: {}; rsttrace: `target/dist/rsttrace` from `cargo xtask dist`.\n\n\
         Package `{}`, rsttrace {commit}. {} passed, {} failed, {} skipped{}.\n\n",
        r.series,
        r.version.as_deref().unwrap_or("(the guest did not report its kernel)"),
        r.userspace.as_deref().unwrap_or("(the guest did not report it)"),
        r.package,
        r.passed(),
        r.failed(),
        r.skipped(),
        if filter.is_empty() {
            String::new()
        } else {
            format!(" (test arguments: `{}`)", filter.join(" "))
        }
    );
    for n in r.notes.iter().filter(|n| !n.starts_with("tests took")) {
        s += &format!("- {}\n", cell(n));
    }
    if !r.notes.is_empty() {
        s += "\n";
    }
    s += &table(r);
    s += &format!("<!-- end {} -->\n", r.series);
    s
}

const TABLE_HEAD: &str = "| test | result | reason / first panic line |\n|---|---|---|\n";

/// The results, test by test: what `--check` compares.
fn table(r: &Run) -> String {
    let mut s = String::from(TABLE_HEAD);
    for (name, o) in &r.tests {
        let (result, detail) = match o {
            Outcome::Passed => ("pass", String::new()),
            Outcome::Failed(p) => ("**fail**", p.clone()),
            Outcome::NoResult => ("**fail**", "no result".into()),
            Outcome::Skipped(why) => ("skip", why.clone()),
            Outcome::Ignored => ("skip", "ignored".into()),
        };
        s += &format!("| `{name}` | {result} | {} |\n", cell(&detail));
    }
    s
}

/// The results table recorded for `series` in `doc`.
fn recorded_table<'a>(doc: &'a str, series: &str) -> Option<&'a str> {
    let start = doc.find(&format!("<!-- kernel {series} -->\n"))?;
    let section = &doc[start..];
    let end = section.find(&format!("<!-- end {series} -->\n"))?;
    let table = section[..end].find(TABLE_HEAD)?;
    Some(&section[table..end])
}

/// Fails unless docs/kernels.md records, for every kernel just run, the
/// results this run had (test by test; versions and times may differ).
pub(super) fn check(path: &Path, runs: &[Run]) -> Result<()> {
    let doc = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut stale = vec![];
    for r in runs {
        let now = table(r);
        match recorded_table(&doc, r.series) {
            Some(then) if then == now => {}
            Some(then) => {
                let was: Vec<&str> = then.lines().collect();
                let rows: Vec<String> = now
                    .lines()
                    .filter(|l| !was.contains(l))
                    .map(|l| format!("  now: {l}"))
                    .chain(
                        was.iter()
                            .filter(|l| !now.lines().any(|n| n == **l))
                            .map(|l| format!("  was: {l}")),
                    )
                    .collect();
                stale.push(format!("{}:\n{}", r.series, rows.join("\n")));
            }
            None => stale.push(format!("{}: no results recorded", r.series)),
        }
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "{} does not record what this run gave (run `cargo xtask vm --record` and commit it):\n{}",
            path.display(),
            stale.join("\n")
        );
    }
    Ok(())
}

/// `commit abc1234` (`+ uncommitted changes`) of the workspace.
fn commit() -> String {
    let out = |args: &[&str]| {
        crate::cmd("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (
        out(&["rev-parse", "--short", "HEAD"]),
        out(&["status", "--porcelain"]),
    ) {
        (Some(c), Some(d)) if !c.is_empty() => {
            format!(
                "commit {c}{}",
                if d.is_empty() {
                    ""
                } else {
                    " + uncommitted changes"
                }
            )
        }
        _ => "(commit unknown)".into(),
    }
}

/// Replaces the sections of the kernels run in docs/kernels.md, keeping
/// the others.
pub(super) fn record(path: &Path, runs: &[Run], filter: &[String]) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut text = String::from(
        "# Kernels\n\n<!-- Generated by `cargo xtask vm --record`; do not edit. -->\n\n\
         The privileged end-to-end suite (`rsttrace/tests/e2e`) run by `cargo xtask vm` inside \
         Debian's cloud kernels, booted under qemu with software emulation (TCG), on the \
         userspace of a Debian release (Debian 11 for 5.10, Debian 12 for the others), with the \
         binary `cargo xtask dist` ships and the tests built for the same glibc. The `dist::` \
         rows check that binary by itself first: `--version`, `causes`, a refused connect \
         traced with the client's pid, and that it is byte for byte target/dist/rsttrace. A skipped \
         test printed `SKIP <test>: <reason>`: the kernel cannot give what it checks. Each \
         kernel's section is rewritten when that kernel is run again with `--record`. The \
         `service_` tests are left out: they drive Prometheus, rsyslog, logrotate and podman, \
         which the guest lacks, and what they check does not depend on the kernel (the host \
         suite runs them).\n",
    );
    let commit = commit();
    for s in &SERIES {
        let fresh = runs
            .iter()
            .find(|r| r.series == s.name)
            .map(|r| section(r, filter, &commit));
        let kept = || {
            let start = old.find(&format!("<!-- kernel {} -->\n", s.name))?;
            let end_marker = format!("<!-- end {} -->\n", s.name);
            let end = start + old[start..].find(&end_marker)? + end_marker.len();
            Some(old[start..end].to_string())
        };
        if let Some(sec) = fresh.or_else(kept) {
            text += "\n";
            text += &sec;
        }
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
rsttrace-vm: kernel 6.1.0-50-cloud-amd64
rsttrace-vm: version Linux version 6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org)
rsttrace-vm: modprobe nft_foo failed: modprobe: FATAL: Module nft_foo not found
rsttrace-vm: userspace Debian GNU/Linux 11 (bullseye), ldd (Debian GLIBC 2.31-13+deb11u11) 2.31
rsttrace-vm: tracer sha256 abc123
rsttrace-vm: check version ok: rsttrace 0.0.9
rsttrace-vm: check causes ok: 40 causes
rsttrace-vm: check refused_connect failed: no connection_refused record with pid 77:
===rsttrace-vm: tests begin===
running 5 tests
test a::skipped_inline ... ok
SKIP not_captured: no reason field before 6.10
test a::not_captured ... ok
test a::fails ... FAILED
test a::bare_assert ... FAILED
[   12.3] some kernel line
test a::passes ... ok

successes:

---- a::skipped_inline stdout ----
SKIP a::skipped_inline: 5.10 has no inet_sk_error_report

successes:
    a::skipped_inline

failures:

---- a::fails stdout ----
SKIP a::fails: should not hide the failure
thread 'a::fails' (12) panicked at tests/e2e/x.rs:1:2:
no record for x; seen:
{}

---- a::bare_assert stdout ----
thread 'a::bare_assert' (13) panicked at tests/e2e/x.rs:3:4:
assertion `left == right` failed
  left: Null
 right: \"TCP_STATE\"

failures:
    a::fails
    a::bare_assert

test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out
===rsttrace-vm: tests end, exit 101===
";

    fn detail_of(r: &Run, n: &str) -> String {
        match &r.tests[n] {
            Outcome::Skipped(s) | Outcome::Failed(s) => s.clone(),
            Outcome::Passed => "pass".into(),
            Outcome::NoResult => "none".into(),
            Outcome::Ignored => "ignored".into(),
        }
    }

    #[test]
    fn parses_a_console() {
        let boot = Boot {
            wall: Duration::from_secs(100),
            timed_out: false,
            console: CONSOLE.into(),
        };
        let package = Package {
            name: "linux-image-6.1.0-50-cloud-amd64".into(),
            version: "6.1.176-1".into(),
        };
        let expected: Vec<String> = ["a::passes", "a::never_ran"].map(String::from).into();
        let r = parse("6.1", &package, &boot, Some(&expected));
        assert_eq!(r.release.as_deref(), Some("6.1.0-50-cloud-amd64"));
        assert_eq!(
            r.userspace.as_deref(),
            Some("Debian GNU/Linux 11 (bullseye), ldd (Debian GLIBC 2.31-13+deb11u11) 2.31")
        );
        assert_eq!(r.exit, Some(101));
        assert!(!r.ok());
        // dist::causes passes; dist::version (another version) and
        // dist::refused_connect fail.
        assert_eq!((r.passed(), r.failed(), r.skipped()), (2, 5, 2));
        let detail = |n: &str| detail_of(&r, n);
        assert_eq!(
            detail("a::skipped_inline"),
            "5.10 has no inet_sk_error_report"
        );
        assert_eq!(detail("a::not_captured"), "no reason field before 6.10");
        assert_eq!(detail("a::fails"), "no record for x; seen:");
        assert_eq!(
            detail("a::bare_assert"),
            "assertion `left == right` failed (left: Null, right: \"TCP_STATE\")"
        );
        assert_eq!(detail("a::never_ran"), "none");
        assert_eq!(
            detail("dist::version"),
            format!(
                "printed \"rsttrace 0.0.9\", not \"rsttrace {}\"",
                crate::dist::VERSION
            )
        );
        assert_eq!(
            detail("dist::refused_connect"),
            "no connection_refused record with pid 77:"
        );
        let mut r = r;
        check_tracer(&mut r, "abc123");
        assert_eq!(detail_of(&r, CHECKS[3]), "pass");
        check_tracer(&mut r, "def456");
        assert!(detail_of(&r, CHECKS[3]).contains("def456"));
        assert!(r.notes.iter().any(|n| n.contains("nft_foo")));
    }

    #[test]
    fn check_compares_the_results_only() {
        let boot = Boot {
            wall: Duration::from_secs(100),
            timed_out: false,
            console: CONSOLE.into(),
        };
        let package = Package {
            name: "linux-image-6.1.0-50-cloud-amd64".into(),
            version: "6.1.176-1".into(),
        };
        let r = parse("6.1", &package, &boot, None);
        let path = std::env::temp_dir().join(format!("kernels-{}.md", std::process::id()));
        record(&path, std::slice::from_ref(&r), &[]).unwrap();
        check(&path, std::slice::from_ref(&r)).unwrap();
        // Another package version: the same results.
        let doc = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, doc.replace("6.1.176-1", "6.1.177-1")).unwrap();
        check(&path, std::slice::from_ref(&r)).unwrap();
        // A test that passed there and skips now: stale.
        let doc = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            doc.replace("| `a::passes` | pass |", "| `a::passes` | skip |"),
        )
        .unwrap();
        let e = check(&path, std::slice::from_ref(&r))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a::passes"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
