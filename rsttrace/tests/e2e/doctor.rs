//! `rsttrace doctor`: what this kernel lets rsttrace see, on the host and
//! in each VM kernel, and what an unprivileged user lacks.

use std::process::Command;

use serde_json::Value;

use crate::harness::{as_nobody, doctor, kernel, require_root};

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
    // What the harness knows of this kernel, not what doctor says of it.
    let k = kernel();
    let sent = d["sent_resets"].as_str().unwrap();
    assert_eq!(sent, k.sent_path(), "{d:#}");
    if k.reset_reasons() {
        assert_eq!(check(d, "tp_btf tcp_send_reset")["status"], "ok");
    } else {
        assert!(notes(d).any(|n| n.contains("Linux < 6.10")), "{d:#}");
    }
    let attached = |item: &str| attached(d, item);
    // Per event where trampolines work, per packet where they do not.
    let per_event = [
        "fentry tcp_reset",
        "fentry tcp_finish_connect",
        "fexit tcp_v4_syn_recv_sock",
        "fexit inet_csk_accept",
        "fentry tcp_v4_err",
    ];
    for hook in per_event {
        assert_eq!(attached(hook), k.trampolines(), "{hook}: {d:#}");
    }
    // Before 6.1 tcp_reset(sk) is not handed the reset segment: the
    // receive path's functions keep its TTL.
    for hook in [
        "fentry tcp_rcv_state_process",
        "fentry tcp_validate_incoming",
    ] {
        let wanted = k.trampolines() && k.version < (6, 1);
        assert_eq!(attached(hook), wanted, "{hook}: {d:#}");
    }
    assert_eq!(
        attached("tp_btf netif_receive_skb"),
        k.per_packet_hooks(),
        "{d:#}"
    );
    assert_eq!(
        notes(d).any(|n| n.contains("BPF trampolines (fentry/fexit) do not work")),
        !k.trampolines(),
        "{d:#}"
    );
    // Delivered errnos: the tracepoint (5.14+), else the function under it.
    let reports =
        attached("tp_btf inet_sk_error_report") || attached("fentry sock_def_error_report");
    assert_eq!(reports, k.error_reports(), "{d:#}");
}

fn notes(d: &Value) -> impl Iterator<Item = &str> {
    d["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
}

/// Whether doctor lists hook `item` as attached.
fn attached(d: &Value, item: &str) -> bool {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["item"] == item && c["area"] == "hooks" && c["status"] == "ok")
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
