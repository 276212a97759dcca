//! `--output FILE` under a real log pipeline: rsyslog's imfile tails the
//! file while logrotate rotates it (rsttrace reopens on SIGHUP), and
//! every record arrives exactly once, whole, as valid JSON.

use std::{
    collections::HashSet,
    net::TcpStream,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::{
    harness::{port, Netns, Tracer},
    real::{run_ok, wait_for, Daemon, TempDir},
};

const CONNECTS: u16 = 150;

fn rsyslog_conf(dir: &TempDir) -> String {
    format!(
        r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imfile" mode="inotify")
template(name="raw" type="string" string="%msg%\n")
ruleset(name="rsttrace") {{
  action(type="omfile" file="{collected}" template="raw")
}}
input(type="imfile" file="{log}" tag="rsttrace" ruleset="rsttrace")
"#,
        work = dir.join("work").display(),
        collected = dir.join("collected.log").display(),
        log = dir.join("rsttrace.json").display(),
    )
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rsyslog_gets_every_record_once_across_a_logrotate() {
    let ns = Netns::new();
    let dir = TempDir::new("rsyslog");
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let log = dir.join("rsttrace.json");
    let t = Tracer::start(&ns, &["--output", log.to_str().unwrap()]);
    let mut rsyslog = start_rsyslog(&dir);
    let rotate = logrotate_conf(&dir, &log, t.pid());
    // Resets keep coming while the file is rotated.
    let base = port(60);
    let traffic = ns.spawn(move || {
        for i in 0..CONNECTS {
            TcpStream::connect(("127.0.0.1", base + i % 50)).unwrap_err();
            thread::sleep(Duration::from_millis(10));
        }
    });
    wait_for(
        "records in the file before rotating",
        Duration::from_secs(10),
        || {
            let n = lines(&log).len();
            if n >= 40 {
                Ok(())
            } else {
                Err(format!("{n} lines"))
            }
        },
    );
    run_ok(
        Command::new("logrotate")
            .arg("-s")
            .arg(dir.join("state"))
            .arg("-f")
            .arg(&rotate),
    );
    traffic.join().unwrap();
    let (status, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    let expected = 2 * usize::from(CONNECTS);
    assert!(
        stderr.contains(&format!("{expected} resets reported")),
        "{stderr}"
    );

    // The files: every record whole, in the old file or the new one.
    let rotated = dir.join("rsttrace.json.1");
    let on_disk: Vec<String> = lines(&rotated).into_iter().chain(lines(&log)).collect();
    assert!(
        !lines(&rotated).is_empty() && !lines(&log).is_empty(),
        "no rotation happened"
    );
    assert_eq!(on_disk.len(), expected);

    let got = collected_once_each(&dir, &mut rsyslog, expected);
    let disk: HashSet<&String> = on_disk.iter().collect();
    assert!(
        got.iter().all(|l| disk.contains(l)),
        "rsyslog got a record not in the files"
    );
}

/// rsyslogd in the foreground, tailing the tracer's file (`rsyslog_conf`).
fn start_rsyslog(dir: &TempDir) -> Daemon {
    let conf = dir.write("rsyslog.conf", &rsyslog_conf(dir));
    Daemon::start(
        "rsyslogd",
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// A logrotate config for `log` whose postrotate sends SIGHUP to `pid`,
/// as the packaged one does.
fn logrotate_conf(dir: &TempDir, log: &std::path::Path, pid: u32) -> std::path::PathBuf {
    dir.write(
        "logrotate.conf",
        &format!(
            "{} {{\n  rotate 3\n  missingok\n  nocompress\n  create 0640 root root\n  postrotate\n    kill -HUP {}\n  endscript\n}}\n",
            log.display(),
            pid
        ),
    )
}

/// What rsyslog collected: `expected` records once each, valid JSON.
/// Waits for them all, then a little longer, for late duplicates.
fn collected_once_each(dir: &TempDir, rsyslog: &mut Daemon, expected: usize) -> Vec<String> {
    let collected = dir.join("collected.log");
    let got = wait_for(
        "every record through rsyslog",
        Duration::from_secs(30),
        || {
            rsyslog.assert_running();
            let got = lines(&collected);
            if got.len() >= expected {
                Ok(got)
            } else {
                Err(format!("{} of {expected}", got.len()))
            }
        },
    );
    // Late duplicates would show up now.
    thread::sleep(Duration::from_secs(2));
    let got = if lines(&collected).len() > got.len() {
        lines(&collected)
    } else {
        got
    };
    assert_eq!(got.len(), expected, "duplicates");
    let mut keys = HashSet::new();
    for line in &got {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        crate::harness::collect(&crate::harness::this_test(), &v);
        let key = (
            v["community_id"].to_string(),
            v["direction"].to_string(),
            v["time"].to_string(),
        );
        assert!(keys.insert(key), "twice: {line}");
    }
    got
}
