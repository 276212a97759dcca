//! The schema contract: every key a writer emits is documented, every
//! documented key is emitted, and values have their documented types.

use std::sync::Arc;

use super::*;
use crate::{
    classify::{Cause, CauseSource, Direction},
    kernel::names::{KernelReason, Reason, TcpState},
    model::{
        conn::{Comm, Conn, Segment, Task},
        errno::Errno,
        failure::{Failure, FailureKind},
        field::{Field, Visitor},
        lost::{Lost, LostWhy},
        owner::{Container, Owner, OwnerSource},
        reset::{Context, Delivered, ListenerNote, Origin, Paired, Reset},
        schema,
        suppressed::Suppressed,
    },
};

fn task(pid: u32, comm: &str) -> Task {
    Task {
        pid,
        comm: Comm::from_str_lossy(comm),
    }
}

fn conn(v6: bool) -> Conn {
    let (l, r) = if v6 {
        ("fd00::1", "fd00::2")
    } else {
        ("10.0.0.1", "10.0.0.2")
    };
    Conn {
        local: l.parse().unwrap(),
        local_port: 80,
        remote: r.parse().unwrap(),
        remote_port: 45678,
    }
}

/// A reset with every optional field set.
pub fn full_reset() -> Reset {
    Reset {
        unix_ns: 1_795_968_301_123_456_789,
        direction: Direction::Sent,
        cause: Cause::StaleConnection,
        cause_source: CauseSource::KernelReason,
        kernel_reason: Some(KernelReason::Known(Reason::TcpFlags)),
        state: Some(TcpState::Listen),
        conn: conn(false),
        netns: 4026531840,
        owner: Some(Owner {
            pid: 812,
            comm: Comm::from_str_lossy("nginx"),
            source: OwnerSource::Socket,
            container: Some(Arc::new(Container {
                cgroup: "/kubepods/pod1/abc".into(),
                runtime: Some("containerd"),
                id: Some("a".repeat(64)),
                pod_uid: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
                pod_namespace: Some("shop".into()),
                pod_name: Some("web-7d4b9".into()),
            })),
            exited: Some(false),
        }),
        app_errno: Some(Errno::ECONNRESET),
        listener: Some(true),
        history: Some(ListenerNote {
            listening_now: true,
            last: Some(task(812, "nginx")),
            stopped_ms: Some(4200),
        }),
        segment: Some(Segment {
            flags: 0x18,
            seq: 1,
            ack: 2,
            payload: 3,
        }),
        context: Context {
            age_ms: Some(1),
            bytes_sent: Some(2),
            bytes_acked: Some(3),
            bytes_received: Some(4),
            unread_bytes: Some(5),
            unacked_bytes: Some(6),
            idle_ms: Some(7),
            last_send_ms: Some(8),
        },
        task: task(99, "curl"),
        killer: Some(task(100, "ss")),
        delivered: Some(Delivered {
            errno: Errno::ECONNABORTED,
            to: Some(task(812, "nginx")),
        }),
        sock_cookie: Some(12345),
        sock_inode: Some(678),
        cpu: 1,
        owner_closed_ms: Some(300),
        community_id: "1:wCb3OG7yAFWelaUydu0D+125CLM=".into(),
        rst_ttl: Some(61),
        peer_ttl: Some(61),
        origin: Some(Origin::Local),
        other_end: Some(Paired {
            owner: Some(task(900, "redis-server")),
            netns: 7,
            cause: Some(Cause::AbortLinger),
        }),
    }
}

/// A reset with every optional field empty.
pub fn bare_reset() -> Reset {
    Reset {
        kernel_reason: None,
        state: None,
        owner: None,
        app_errno: None,
        listener: None,
        history: None,
        segment: None,
        context: Context::default(),
        killer: None,
        delivered: None,
        sock_cookie: None,
        sock_inode: None,
        owner_closed_ms: None,
        rst_ttl: None,
        peer_ttl: None,
        origin: None,
        other_end: None,
        conn: conn(true),
        ..full_reset()
    }
}

fn samples() -> Vec<Record> {
    let failure = Failure {
        unix_ns: 0,
        kind: FailureKind::SynTimeout,
        errno: Some(Errno::ETIMEDOUT),
        errno_for_peer: false,
        conn: conn(false),
        netns: 1,
        // A comm may hold spaces, quotes and `=`.
        owner: Some(task(7, "my \"app\" a=b")),
        icmp: Some(crate::model::failure::Icmp {
            v6: false,
            icmp_type: 3,
            code: 13,
            from: "10.0.0.254".parse().unwrap(),
        }),
        community_id: "1:x".into(),
    };
    let suppressed = Suppressed {
        count: 10,
        first_unix_ns: 0,
        last_unix_ns: 1,
        direction: Direction::Sent,
        cause: Cause::NoListener,
        cause_source: CauseSource::KernelReason,
        kernel_reason: Some(KernelReason::Known(Reason::NoSocket)),
        state: Some(TcpState::Listen),
        port: 80,
        netns: 1,
        owner: Some(task(7, "nginx")),
        example: "10.0.0.2".parse().unwrap(),
        example_port: 4000,
    };
    let received = Reset {
        direction: Direction::Received,
        cause: Cause::PeerReset,
        ..full_reset()
    };
    vec![
        Record::Reset(full_reset()),
        Record::Reset(received),
        Record::Reset(bare_reset()),
        Record::Failure(failure.clone()),
        Record::Failure(Failure {
            errno: None,
            owner: None,
            icmp: None,
            ..failure
        }),
        Record::Suppressed(suppressed.clone()),
        Record::Suppressed(Suppressed {
            kernel_reason: None,
            state: None,
            owner: None,
            ..suppressed
        }),
        Record::Lost(Lost {
            unix_ns: 0,
            count: 3,
            why: LostWhy::Nested,
        }),
        Record::Summary(crate::model::summary::Summary {
            unix_ns: 0,
            period_s: 60,
            rank: 1,
            count: 7,
            suppressed: 5,
            cause: Cause::AbortUnreadData,
            comm: Some(Comm::from_str_lossy("nginx")),
            port: 8080,
            period_count: 412,
        }),
        Record::Summary(crate::model::summary::Summary {
            unix_ns: 0,
            period_s: 60,
            rank: 2,
            count: 3,
            suppressed: 0,
            cause: Cause::NoListener,
            comm: None,
            port: 81,
            period_count: 412,
        }),
        Record::Stray(crate::model::stray::Stray {
            unix_ns: 0,
            conn: conn(false),
            netns: 1,
            rst_ttl: 63,
            seq: 5,
            community_id: "1:y".into(),
        }),
    ]
}

fn render(format: &str, r: &Record) -> String {
    let mut buf = vec![];
    (format_named(format).unwrap().make)().render(r, &mut buf);
    String::from_utf8(buf).unwrap()
}

/// Collects (key, value is null) as the writer walks a record.
struct Keys(Vec<(&'static str, bool)>);

impl Visitor<'_> for Keys {
    fn begin(&mut self, _: &'static str) {}
    fn field(&mut self, info: &crate::model::field::FieldInfo, value: Value<'_>) {
        assert!(
            info.ty.admits(&value),
            "{}: {value:?} is not {}",
            info.key,
            info.ty.name()
        );
        self.0.push((info.key, value == Value::Null));
    }
    fn end(&mut self) {}
}

#[test]
fn json_emits_exactly_the_documented_keys() {
    let documented: std::collections::HashMap<_, _> = schema().into_iter().collect();
    let mut non_null_seen: std::collections::HashSet<(&str, &str)> = Default::default();
    for r in samples() {
        let line = render("json", &r);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let obj = v.as_object().unwrap();
        let (&event, doc) = documented
            .get_key_value(obj["event"].as_str().unwrap())
            .unwrap();
        let emitted: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = doc.iter().map(|f| f.key).collect();
        let mut got = emitted.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(
            got, want,
            "{event}: emitted keys differ from the documented ones"
        );
        for f in doc {
            if !obj[f.key].is_null() {
                non_null_seen.insert((event, f.key));
            } else {
                assert!(
                    f.ty.nullable(),
                    "{event}.{} is null but documented as {}",
                    f.key,
                    f.ty.name()
                );
            }
        }
        let mut keys = Keys(vec![]);
        r.visit(&mut keys);
    }
    // Every documented key carries a value in some record.
    for (event, fields) in schema() {
        for f in fields {
            assert!(
                non_null_seen.contains(&(event, f.key)),
                "{event}.{} is documented but never has a value",
                f.key
            );
        }
    }
}

#[test]
fn keys_are_unique_and_documented() {
    for (event, fields) in schema() {
        let mut seen = std::collections::HashSet::new();
        for f in &fields {
            assert!(seen.insert(f.key), "{event}: duplicate key {}", f.key);
            assert!(
                f.meaning.ends_with('.') || f.meaning.ends_with(')'),
                "{event}.{}",
                f.key
            );
        }
        assert_eq!(fields[0].key, "time", "{event}");
        assert_eq!(fields[1].key, "event", "{event}");
    }
}

#[test]
fn text_lines() {
    let line = render("text", &Record::Reset(full_reset()));
    assert!(
        line.starts_with("2026-11-29T16:05:01.123456Z sent     stale_connection         10.0.0.1:80 -> 10.0.0.2:45678 reason=TCP_FLAGS state=LISTEN owner=812/nginx"),
        "{line}"
    );
    assert!(line.contains(" errno=ECONNRESET/peer"), "{line}");
    assert!(line.contains(" seg=ACK|PSH"), "{line}");
    assert!(line.contains(" killed_by=100/ss"), "{line}");
    assert!(
        line.trim_end()
            .ends_with(Cause::StaleConnection.explanation()),
        "{line}"
    );
    assert_eq!(line.matches('\n').count(), 1);
    let line = render("text", &Record::Reset(bare_reset()));
    assert!(line.contains("[fd00::1]:80 -> [fd00::2]:45678"), "{line}");
    assert!(!line.contains("owner="), "{line}");
    let mut received = full_reset();
    received.direction = Direction::Received;
    assert!(render("text", &Record::Reset(received)).contains(" <- 10.0.0.2:45678"));
}

#[test]
fn every_format_renders_every_record_on_one_line() {
    for f in FORMATS {
        for r in samples() {
            let line = render(f.name, &r);
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{}: {line}",
                f.name
            );
        }
    }
}

#[test]
fn tables_are_walked_in_order() {
    fn first<R>(t: &[Field<R>]) -> &'static str {
        t[0].info.key
    }
    assert_eq!(first(crate::model::reset::FIELDS), "time");
}

/// A logfmt line back into (key, value) pairs, as a collector reads it.
fn parse_logfmt(line: &str) -> Vec<(String, String)> {
    let mut pairs = vec![];
    let mut chars = line.trim_end_matches('\n').chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next().unwrap() {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'u' => {
                            let hex: String = chars.by_ref().take(4).collect();
                            value.push(
                                char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap(),
                            );
                        }
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            assert!(matches!(chars.next(), None | Some(' ')), "{line}");
        } else {
            value = chars.by_ref().take_while(|&c| c != ' ').collect();
        }
        pairs.push((key, value));
    }
    pairs
}

#[test]
fn logfmt_carries_what_the_json_carries() {
    for r in samples() {
        let json: serde_json::Value = serde_json::from_str(&render("json", &r)).unwrap();
        let want: Vec<(String, String)> = json
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect();
        let line = render("logfmt", &r);
        let mut got = parse_logfmt(&line);
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn summary_rows_line_up() {
    let rows: Vec<String> = samples()
        .iter()
        .filter(|r| matches!(r, Record::Summary(_)))
        .map(|r| render("text", r))
        .collect();
    assert_eq!(
        rows[0],
        "1970-01-01T00:00:00.000000Z summary  #1   7       abort_unread_data         comm=nginx port=8080 suppressed=5 period_s=60 of=412\n"
    );
    assert!(
        rows[1].starts_with(
            "1970-01-01T00:00:00.000000Z summary  #2   3       no_listener               port=81 "
        ),
        "{}",
        rows[1]
    );
}
