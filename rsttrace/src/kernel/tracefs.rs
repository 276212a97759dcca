//! tracefs: where it is (mounting it when needed), which events exist, and
//! the layout of an event's record (`events/<system>/<event>/format`).

use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use thiserror::Error;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub(crate) enum TracefsError {
    #[error("tracefs is not mounted and mounting it on /sys/kernel/tracing failed: {0} (mount it with: mount -t tracefs nodev /sys/kernel/tracing)")]
    NotMounted(std::io::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracepoint {0} not found in tracefs; this kernel does not provide it")]
    MissingEvent(String),
}

pub(crate) struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// A mounted tracefs, if there is one.
    pub(crate) fn locate() -> Option<Self> {
        CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.join("events").is_dir())
            .map(|root| Tracefs {
                root: root.to_path_buf(),
            })
    }

    /// Finds a mounted tracefs, mounting one on /sys/kernel/tracing if none.
    pub(crate) fn locate_or_mount() -> Result<Self, TracefsError> {
        if let Some(t) = Self::locate() {
            return Ok(t);
        }
        let target = CANDIDATES[0];
        let c_target = CString::new(target).expect("no NUL");
        let fstype = CString::new("tracefs").expect("no NUL");
        let source = CString::new("nodev").expect("no NUL");
        // SAFETY: valid NUL-terminated strings, no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                c_target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(TracefsError::NotMounted(std::io::Error::last_os_error()));
        }
        log::info!("mounted tracefs on {target}");
        Ok(Tracefs {
            root: target.into(),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn event_dir(&self, system: &str, event: &str) -> PathBuf {
        self.root.join("events").join(system).join(event)
    }

    pub(crate) fn has_event(&self, system: &str, event: &str) -> bool {
        self.event_dir(system, event).join("format").exists()
    }

    pub(crate) fn format(&self, system: &str, event: &str) -> Result<EventFormat, TracefsError> {
        let path = self.event_dir(system, event).join("format");
        if !path.exists() {
            return Err(TracefsError::MissingEvent(format!("{system}:{event}")));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| TracefsError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(EventFormat::parse(&text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub offset: u32,
    pub size: u32,
}

/// A parsed `format` file.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventFormat {
    pub fields: HashMap<String, Field>,
    pub print_fmt: String,
}

impl EventFormat {
    pub(crate) fn parse(text: &str) -> Self {
        let mut out = EventFormat::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("print fmt:") {
                out.print_fmt = rest.trim().to_string();
                continue;
            }
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for (i, part) in rest.split(';').enumerate() {
                let part = part.trim();
                if i == 0 {
                    decl = Some(part);
                } else if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse().ok();
                }
            }
            if let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) {
                if let Some(name) = field_name(decl) {
                    out.fields.insert(name.to_string(), Field { offset, size });
                }
            }
        }
        out
    }

    /// The `{ value, "NAME" }` pairs of `__print_symbolic(REC-><field>, ...)`.
    pub(crate) fn symbols(&self, field: &str) -> Vec<(i64, String)> {
        let needle = format!("__print_symbolic(REC->{field},");
        let Some(start) = self.print_fmt.find(&needle) else {
            return vec![];
        };
        let mut out = vec![];
        let mut rest = &self.print_fmt[start + needle.len()..];
        // Pairs look like `{ 1, "NO_SOCKET" }`; the list ends at `)`.
        while let Some(open) = rest.find('{') {
            if rest[..open].contains(')') {
                break;
            }
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let pair = &rest[open + 1..open + close];
            if let Some((value, name)) = pair.split_once(',') {
                let name = name.trim().trim_matches('"');
                if let Ok(v) = value.trim().parse::<i64>() {
                    out.push((v, name.to_string()));
                }
            }
            rest = &rest[open + close + 1..];
        }
        out
    }
}

/// The identifier in a field declaration such as `const void * skbaddr`
/// or `__u8 saddr[28]`.
fn field_name(decl: &str) -> Option<&str> {
    let decl = decl.split('[').next()?.trim_end();
    decl.rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_RESET_618: &str = r#"name: tcp_send_reset
ID: 2280
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skbaddr;	offset:8;	size:8;	signed:0;
	field:const void * skaddr;	offset:16;	size:8;	signed:0;
	field:int state;	offset:24;	size:4;	signed:1;
	field:enum sk_rst_reason reason;	offset:28;	size:4;	signed:0;
	field:__u8 saddr[28];	offset:32;	size:28;	signed:0;
	field:__u8 daddr[28];	offset:60;	size:28;	signed:0;

print fmt: "skbaddr=%p skaddr=%p src=%pISpc dest=%pISpc state=%s reason=%s", REC->skbaddr, REC->skaddr, REC->saddr, REC->daddr, REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, "TCP_ESTABLISHED" }, { TCP_SYN_SENT, "TCP_SYN_SENT" }) : "UNKNOWN", __print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 1, "NO_SOCKET" }, { 2, "TCP_INVALID_ACK_SEQUENCE" }, { 25, "MAX" })
"#;

    #[test]
    fn parses_fields() {
        let f = EventFormat::parse(SEND_RESET_618);
        assert_eq!(f.fields["skbaddr"], Field { offset: 8, size: 8 });
        assert_eq!(
            f.fields["reason"],
            Field {
                offset: 28,
                size: 4
            }
        );
        assert_eq!(
            f.fields["saddr"],
            Field {
                offset: 32,
                size: 28
            }
        );
        assert_eq!(f.fields["common_pid"], Field { offset: 4, size: 4 });
        assert!(!f.fields.contains_key("sport"));
    }

    #[test]
    fn parses_symbolic_values() {
        let f = EventFormat::parse(SEND_RESET_618);
        let reasons = f.symbols("reason");
        assert_eq!(reasons.len(), 4);
        assert_eq!(reasons[1], (1, "NO_SOCKET".to_string()));
        assert_eq!(reasons[3], (25, "MAX".to_string()));
        // Symbolic keys that are not numbers (TCP_ESTABLISHED) are skipped.
        assert!(f.symbols("state").is_empty());
        assert!(f.symbols("nope").is_empty());
    }

    #[test]
    fn accept_exit_format() {
        let text = "format:\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n\nprint fmt: \"0x%lx\", REC->ret\n";
        let f = EventFormat::parse(text);
        assert_eq!(
            f.fields["ret"],
            Field {
                offset: 16,
                size: 8
            }
        );
    }

    #[test]
    fn field_names() {
        assert_eq!(field_name("const void * skbaddr"), Some("skbaddr"));
        assert_eq!(field_name("__u8 saddr[28]"), Some("saddr"));
        assert_eq!(field_name("long ret"), Some("ret"));
        assert_eq!(field_name("const void *skaddr"), Some("skaddr"));
    }
}
