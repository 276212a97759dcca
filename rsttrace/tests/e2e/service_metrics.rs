//! `--metrics`: a real Prometheus scrapes rsttrace, and the counts come
//! back through Prometheus's HTTP API; promtool lints the exposition.

use std::{
    io::Write,
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{
    harness::{port, Netns, Tracer},
    real::{free_port, http_get, wait_for, Daemon, TempDir},
};

/// One instant-vector value from Prometheus's query API, if any.
fn query(prom: u16, promql: &str) -> Result<f64, String> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) =
        http_get(prom, &format!("/api/v1/query?query={q}")).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{promql}: {body}"))
}

#[test]
fn prometheus_scrapes_the_counts() {
    let ns = Netns::new();
    let metrics = free_port();
    let (p1, p2, p3) = (port(40), port(41), port(42));
    let silenced = format!("cause=no_listener,local_port={p1}");
    let mut t = Tracer::start(
        &ns,
        &["--metrics", &metrics.to_string(), "--suppress", &silenced],
    );
    for p in [p1, p2, p3] {
        ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    }
    t.expect("the last refused client", |v| {
        v["cause"] == "connection_refused" && v["remote_port"] == p3
    });

    let dir = TempDir::new("prometheus");
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: rsttrace\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        ),
    );
    let web = free_port();
    let mut prom = Daemon::start(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let limit = Duration::from_secs(60);
    let no_listener = wait_for("no_listener resets through Prometheus", limit, || {
        prom.assert_running();
        query(
            web,
            r#"sum(rsttrace_resets_total{direction="sent",cause="no_listener"})"#,
        )
    });
    // All three, the silenced one included.
    assert_eq!(no_listener, 3.0);
    let refused = query(
        web,
        r#"sum(rsttrace_resets_total{cause="connection_refused"})"#,
    )
    .unwrap();
    assert_eq!(refused, 3.0);
    let by_rule = query(web, r#"rsttrace_suppressed_total{rule="flag1"}"#).unwrap();
    assert_eq!(by_rule, 1.0);
    let attached = query(
        web,
        r#"rsttrace_hook_state{hook="tcp_send_reset",state="attached"}"#,
    );
    assert_eq!(attached, Ok(1.0));
    let (status, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn promtool_accepts_the_exposition() {
    let ns = Netns::new();
    let metrics = free_port();
    let t = Tracer::start(
        &ns,
        &["--metrics", &format!("127.0.0.1:{metrics}"), "--failures"],
    );
    let p = port(43);
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    let body = wait_for(
        "a counted reset on /metrics",
        Duration::from_secs(10),
        || {
            let (status, body) = http_get(metrics, "/metrics").map_err(|e| e.to_string())?;
            if status == 200 && body.contains("cause=\"no_listener\"") {
                Ok(body)
            } else {
                Err(format!("{status}: {body}"))
            }
        },
    );
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; run `cargo xtask bootstrap --with-tests`)");
    lint.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
    // Never addresses, ports or pids in labels.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        for banned in ["127.0.0.1", &p.to_string(), "pid="] {
            assert!(!line.contains(banned), "{line}");
        }
    }
    let (status, _) = http_get(metrics, "/nope").unwrap();
    assert_eq!(status, 404);
    drop(t);
}
