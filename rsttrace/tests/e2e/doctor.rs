//! `rsttrace doctor`: what this kernel lets rsttrace see, on the host and
//! in each VM kernel, and what an unprivileged user lacks.

use std::process::Command;

use serde_json::Value;

use crate::harness::{as_nobody, doctor, require_root};

const TRACER: &str = env!("CARGO_BIN_EXE_rsttrace");

fn check<'a>(d: &'a Value, item: &str) -> &'a Value {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == item)
        .unwrap_or_else(|| panic!("no check {item} in {d:#}"))
}

#[test]
fn doctor_says_what_this_kernel_offers() {
    let d = doctor();
    assert_eq!(d["runnable"], true, "{d:#}");
    for c in d["checks"].as_array().unwrap() {
        let status = c["status"].as_str().unwrap();
        assert!(["ok", "missing", "unused", "info"].contains(&status), "{c}");
        if status == "missing" {
            assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
        }
    }
    for tp in [
        "tcp:tcp_send_reset",
        "tcp:tcp_receive_reset",
        "sock:inet_sock_set_state",
    ] {
        assert_eq!(check(d, tp)["status"], "ok", "{tp}");
    }
    assert_eq!(check(d, "BTF")["status"], "ok");
    assert_eq!(check(d, "CAP_BPF")["status"], "ok");
    // The reset path follows from the reason field and the program types.
    let reasons = check(d, "reset reason")["status"] == "ok";
    let sent = d["sent_resets"].as_str().unwrap();
    if reasons {
        assert_eq!(sent, "tracepoint");
        assert_eq!(check(d, "tp_btf tcp_send_reset")["status"], "ok");
    } else {
        let fentry = check(d, "fentry")["status"] == "ok";
        let kprobe = check(d, "kprobe")["status"] == "ok";
        let want = if fentry {
            "fentry"
        } else if kprobe {
            "kprobe"
        } else {
            "partial_tracepoint"
        };
        assert_eq!(sent, want, "{d:#}");
        assert!(d["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("Linux < 6.10")));
    }
    // Delivered errnos need inet_sk_error_report (Linux 5.14).
    let reports = check(d, "sock:inet_sk_error_report")["status"] == "ok";
    let btf_hook = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "tp_btf inet_sk_error_report");
    // Without the tracepoint there is nothing to hook, so no line for it.
    assert_eq!(
        btf_hook.is_some_and(|c| c["status"] == "ok"),
        reports,
        "{d:#}"
    );
}

#[test]
fn doctor_text_has_a_fix_for_what_is_missing() {
    require_root();
    let out = Command::new(TRACER).arg("doctor").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("rsttrace doctor: Linux "), "{text}");
    assert!(text.contains("resets sent: "), "{text}");
    assert!(text.contains("rsttrace can trace on this host."), "{text}");
    let d = doctor();
    for c in d["checks"].as_array().unwrap() {
        if let Some(fix) = c["fix"].as_str() {
            assert!(
                text.contains(&format!("fix: {fix}")),
                "{fix} missing from\n{text}"
            );
        }
    }
}

/// A user without capabilities: told which ones are missing, and that
/// rsttrace cannot run as it is.
#[test]
fn doctor_names_missing_capabilities() {
    require_root();
    let out = as_nobody(&[], &["doctor", "--format", "json"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["runnable"], false);
    let bpf = check(&d, "CAP_BPF");
    assert_eq!(bpf["status"], "missing");
    assert!(bpf["fix"].as_str().unwrap().contains("root"), "{bpf}");
    assert_eq!(check(&d, "programs")["status"], "missing");
}
