//! The schema contract: every key a writer emits is documented, every
//! documented key is emitted, and values have their documented types.
//! The sample records are in `samples`.

use super::*;
use crate::{
    classify::{Cause, Direction},
    model::{
        field::{Field, Visitor},
        schema,
    },
};

mod samples;

use self::samples::samples;
pub(crate) use self::samples::{bare_reset, full_reset};

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
