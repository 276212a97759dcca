//! What a dynamically linked binary needs from the system: its NEEDED
//! libraries and the newest GLIBC_ symbol version it references, from
//! `objdump -p` (binutils).

use std::{fmt, path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// A glibc version, `GLIBC_2.17` = `Version(2, 17, 0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub u32, pub u32, pub u32);

impl Version {
    fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().unwrap_or(Some(0))?;
        parts
            .next()
            .is_none()
            .then_some(Version(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.2 {
            0 => write!(f, "{}.{}", self.0, self.1),
            p => write!(f, "{}.{}.{p}", self.0, self.1),
        }
    }
}

pub(super) struct Needs {
    /// NEEDED entries: `libc.so.6`, `ld-linux-x86-64.so.2`, ...
    pub libraries: Vec<String>,
    /// The newest GLIBC_ version any library is asked for.
    pub glibc: Version,
}

pub(super) fn needs(binary: &Path) -> Result<Needs> {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(binary)
        .output()
        .context("cannot run objdump (binutils; scripts/bootstrap.sh --with-dist installs it)")?;
    if !out.status.success() {
        bail!(
            "objdump -p {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("reading what {} needs", binary.display()))
}

/// `objdump -p` output: `  NEEDED  libc.so.6` lines of the dynamic
/// section, `0x09691a75 0x00 02 GLIBC_2.2.5` lines of the version
/// references.
fn parse(text: &str) -> Result<Needs> {
    let mut libraries = vec![];
    let mut glibc = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["NEEDED", lib] => libraries.push(lib.to_string()),
            [_, _, _, name] => {
                if let Some(v) = name.strip_prefix("GLIBC_").and_then(Version::parse) {
                    glibc = glibc.max(Some(v));
                }
            }
            _ => {}
        }
    }
    if libraries.is_empty() {
        bail!("no NEEDED libraries: not a dynamically linked binary");
    }
    let glibc = glibc.context("no GLIBC_ version references")?;
    Ok(Needs { libraries, glibc })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJDUMP: &str = "
Dynamic Section:
  NEEDED               libc.so.6
  NEEDED               ld-linux-x86-64.so.2
  NEEDED               libpthread.so.0
  FLAGS_1              0x0000000008000001

Version References:
  required from libc.so.6:
    0x09691a75 0x00 02 GLIBC_2.2.5
    0x06969197 0x00 05 GLIBC_2.17
    0x06969194 0x00 03 GLIBC_2.14
  required from libpthread.so.0:
    0x06969192 0x00 15 GLIBC_2.12
  required from libgcc_s.so.1:
    0x0b792650 0x00 07 GCC_3.0
";

    #[test]
    fn newest_glibc_and_libraries() {
        let n = parse(OBJDUMP).unwrap();
        assert_eq!(n.glibc, Version(2, 17, 0));
        assert_eq!(
            n.libraries,
            ["libc.so.6", "ld-linux-x86-64.so.2", "libpthread.so.0"]
        );
        // Numeric, not textual, order: 2.2.5 < 2.17 < 2.28 < 2.34.
        assert!(Version::parse("2.2.5") < Version::parse("2.17"));
        assert!(Version(2, 28, 0) < Version(2, 34, 0));
        assert_eq!(Version(2, 2, 5).to_string(), "2.2.5");
        assert_eq!(Version(2, 28, 0).to_string(), "2.28");
    }

    #[test]
    fn a_static_binary_is_refused() {
        assert!(parse("Program Header:\n").is_err());
    }
}
