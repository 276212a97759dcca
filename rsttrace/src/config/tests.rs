use std::path::Path;

use super::*;
use crate::classify::{Cause, Direction};

fn error(text: &str) -> String {
    let (span, message) = parse(text).unwrap_err();
    at(Path::new("rsttrace.toml"), text, span, message).to_string()
}

#[test]
fn a_full_rule() {
    let rules = parse(
        r#"
[[suppress]]
name = "health"
cause = ["abort_unread_data", "abort_linger"]
direction = "sent"
local_port = [8080, "9000-9100"]
remote_cidr = ["10.0.0.0/8", "fd00::/8"]
comm = "haproxy"
container = "3F2A"

[[suppress]]
remote_port = 443
"#,
    )
    .unwrap();
    assert_eq!(rules.len(), 2);
    let r = &rules[0];
    assert_eq!(r.name, "health");
    assert_eq!(r.causes, [Cause::AbortUnreadData, Cause::AbortLinger]);
    assert_eq!(r.direction, Some(Direction::Sent));
    assert_eq!(r.local_ports.len(), 2);
    assert_eq!((r.local_ports[1].lo, r.local_ports[1].hi), (9000, 9100));
    assert_eq!(r.remote_cidrs[1].bits, 8);
    assert_eq!(r.containers, ["3f2a"]);
    assert_eq!(rules[1].name, "rule2");
}

#[test]
fn errors_name_the_line_and_column() {
    assert_eq!(
        error("[[suppress]]\ncause = \"abort_unread_data\"\nlocal_port = \"80-70\"\n"),
        "rsttrace.toml:3:14: port range \"80-70\" is empty"
    );
    assert_eq!(
        error("[[suppress]]\n  cuase = \"abort_unread_data\"\n"),
        "rsttrace.toml:2:3: unknown condition \"cuase\" (name, cause, direction, local_port, remote_port, local_cidr, remote_cidr, comm, container)"
    );
    assert_eq!(
        error("[[suppress]]\ncause = [\"abort_unread_data\", \"nope\"]\n"),
        "rsttrace.toml:2:9: unknown cause \"nope\" (see `rsttrace causes`)"
    );
    assert_eq!(
        error("[[suppress]]\nremote_cidr = \"10.0.0.0/33\"\n"),
        "rsttrace.toml:2:15: \"10.0.0.0/33\" is not an address or a CIDR prefix such as 10.0.0.0/8"
    );
    let e = error("[[suppres]]\n");
    assert!(
        e.starts_with("rsttrace.toml:1:3: unknown field `suppres`"),
        "{e}"
    );
    let e = error("[[suppress]]\ncause = \n");
    assert!(e.starts_with("rsttrace.toml:2:"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(
        error("[[suppress]]\nname = \"a\"\n[[suppress]]\nname = \"a\"\n"),
        "rsttrace.toml:3:1: rule name \"a\" is empty or used twice"
    );
}

#[test]
fn flags() {
    let r = rule::parse_flag("cause=abort_unread_data|abort_linger, local_port=8080", 0).unwrap();
    assert_eq!(r.name, "flag1");
    assert_eq!(r.causes, [Cause::AbortUnreadData, Cause::AbortLinger]);
    assert!(rule::parse_flag("", 0).is_err());
    assert_eq!(
        rule::parse_flag("port=80", 0).unwrap_err(),
        "unknown condition \"port\" (name, cause, direction, local_port, remote_port, local_cidr, remote_cidr, comm, container)"
    );
    assert!(rule::parse_flag("direction=sent|received", 0).is_err());
}

#[test]
fn cidrs_match_mapped_addresses_and_prefixes() {
    let n = rule::parse_cidr("10.1.0.0/16").unwrap();
    let rule = Rule {
        remote_cidrs: vec![n],
        ..Rule::default()
    };
    let mut r = crate::output::tests::full_reset();
    r.conn.remote = "10.1.200.3".parse().unwrap();
    assert!(rule.matches(&r));
    r.conn.remote = "::ffff:10.1.200.3".parse().unwrap();
    assert!(rule.matches(&r));
    r.conn.remote = "10.2.0.1".parse().unwrap();
    assert!(!rule.matches(&r));
    let all = Rule {
        remote_cidrs: vec![rule::parse_cidr("0.0.0.0/0").unwrap()],
        ..Rule::default()
    };
    assert!(all.matches(&r));
}
