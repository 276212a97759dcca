//! Errors applications see, by name.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    ECONNREFUSED,
    ECONNRESET,
    EPIPE,
    ETIMEDOUT,
    ECONNABORTED,
    EHOSTUNREACH,
    ENETUNREACH,
    EPROTO,
    Other(i32),
}

impl Errno {
    /// From a kernel `sk_err` value (positive errno).
    pub fn from_raw(raw: i32) -> Option<Errno> {
        Some(match raw.abs() {
            0 => return None,
            libc::ECONNREFUSED => Errno::ECONNREFUSED,
            libc::ECONNRESET => Errno::ECONNRESET,
            libc::EPIPE => Errno::EPIPE,
            libc::ETIMEDOUT => Errno::ETIMEDOUT,
            libc::ECONNABORTED => Errno::ECONNABORTED,
            libc::EHOSTUNREACH => Errno::EHOSTUNREACH,
            libc::ENETUNREACH => Errno::ENETUNREACH,
            libc::EPROTO => Errno::EPROTO,
            other => Errno::Other(other),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Errno::ECONNREFUSED => "ECONNREFUSED",
            Errno::ECONNRESET => "ECONNRESET",
            Errno::EPIPE => "EPIPE",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ECONNABORTED => "ECONNABORTED",
            Errno::EHOSTUNREACH => "EHOSTUNREACH",
            Errno::ENETUNREACH => "ENETUNREACH",
            Errno::EPROTO => "EPROTO",
            Errno::Other(_) => "EOTHER",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Errno::Other(n) => write!(f, "errno {n}"),
            e => f.write_str(e.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(Errno::from_raw(libc::ECONNRESET), Some(Errno::ECONNRESET));
        assert_eq!(Errno::from_raw(-libc::EPIPE), Some(Errno::EPIPE));
        assert_eq!(Errno::from_raw(0), None);
        assert_eq!(
            Errno::from_raw(71).map(|e| e.to_string()),
            Some("EPROTO".into())
        );
        assert_eq!(Errno::Other(200).to_string(), "errno 200");
    }
}
