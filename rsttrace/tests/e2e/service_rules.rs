//! Suppression rules (--config, --suppress) and --summary: expected
//! resets are silenced yet counted; a bad file is one line.

use std::{net::TcpStream, process::Command};

use serde_json::Value;

use crate::{
    harness::{port, Netns, Tracer},
    real::TempDir,
};

const TRACER: &str = env!("CARGO_BIN_EXE_rsttrace");

#[test]
fn a_config_file_silences_expected_resets() {
    let ns = Netns::new();
    let (quiet, loud) = (port(50), port(51));
    let dir = TempDir::new("rules");
    let config = dir.write(
        "rsttrace.toml",
        &format!("# health checks\n[[suppress]]\nname = \"health\"\ncause = \"no_listener\"\nlocal_port = [{quiet}, \"1-2\"]\n"),
    );
    let mut t = Tracer::start(
        &ns,
        &["--config", config.to_str().unwrap(), "--summary", "1"],
    );
    for p in [quiet, loud] {
        ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    }
    t.expect("the loud port's reset", |v| {
        v["cause"] == "no_listener" && v["local_port"] == loud
    });
    // The summary of the period holding the silenced reset.
    t.expect("a summary row for the silenced port", |v| {
        v["event"] == "summary" && v["port"] == quiet
    });
    let (status, stderr) = t.stop_collecting();
    assert!(status.success(), "{stderr}");
    let sent_quiet =
        |v: &&Value| v["event"] == "reset" && v["direction"] == "sent" && v["local_port"] == quiet;
    assert_eq!(
        t.seen.iter().filter(sent_quiet).count(),
        0,
        "silenced, yet written"
    );
    // Counted: in the summaries, whatever period it fell in, and in the totals.
    let rows: Vec<&Value> = t
        .seen
        .iter()
        .filter(|v| v["event"] == "summary" && v["cause"] == "no_listener" && v["port"] == quiet)
        .collect();
    let sum = |key: &str| rows.iter().map(|v| v[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("count"), sum("suppressed")), (1, 1), "{rows:?}");
    let loud_rows = t
        .seen
        .iter()
        .filter(|v| v["event"] == "summary" && v["cause"] == "no_listener" && v["port"] == loud);
    assert_eq!(
        loud_rows
            .map(|v| v["suppressed"].as_u64().unwrap())
            .sum::<u64>(),
        0
    );
    assert!(stderr.contains("1 suppressed by rules"), "{stderr}");
}

fn one_error_line(args: &[&str]) -> String {
    let out = Command::new(TRACER).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("rsttrace: error: "), "{stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn a_bad_config_is_one_line_naming_the_place() {
    let dir = TempDir::new("bad-config");
    let bad = dir.write(
        "rsttrace.toml",
        "[[suppress]]\ncause = \"no_listener\"\nlocal_port = \"80-70\"\n",
    );
    let path = bad.to_str().unwrap();
    assert_eq!(
        one_error_line(&["--config", path]),
        format!("rsttrace: error: {path}:3:14: port range \"80-70\" is empty")
    );
    let typo = dir.write("typo.toml", "[[suppress]]\ncuase = \"no_listener\"\n");
    let line = one_error_line(&["--config", typo.to_str().unwrap()]);
    assert!(
        line.contains("typo.toml:2:1: unknown condition \"cuase\""),
        "{line}"
    );
    let line = one_error_line(&["--config", "/no/such/rsttrace.toml"]);
    assert!(
        line.contains("/no/such/rsttrace.toml: No such file"),
        "{line}"
    );
    let line = one_error_line(&["--suppress", "cause=no_listener,remote_cidr=10.0.0.0/40"]);
    assert!(
        line.contains("--suppress") && line.contains("10.0.0.0/40"),
        "{line}"
    );
    let line = one_error_line(&["--metrics", "localhost"]);
    assert!(line.contains("--metrics"), "{line}");
}
