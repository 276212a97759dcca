//! One qemu run: the console streamed to a log file (raw) and, filtered,
//! to our stdout; returned with terminal escapes stripped.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::layer::{NOTE, TESTS_BEGIN, TESTS_END};

pub(super) struct Vm<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub log: &'a Path,
    pub timeout: Duration,
    /// Print every console line, not only the interesting ones.
    pub verbose: bool,
}

pub(super) struct Boot {
    /// Boot to power-off, wall clock.
    pub wall: Duration,
    pub timed_out: bool,
    /// The console, escape codes and carriage returns removed.
    pub console: String,
}

pub(super) fn run(vm: &Vm) -> Result<Boot> {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max,cx16=off",
            "-m",
            "2048",
            "-smp",
            "2",
        ])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(vm.kernel)
        .arg("-initrd")
        .arg(vm.initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut log =
        std::fs::File::create(vm.log).with_context(|| format!("create {}", vm.log.display()))?;
    let verbose = vm.verbose;
    let reader = std::thread::spawn(move || {
        let mut console = String::new();
        let mut r = BufReader::new(stdout);
        let mut raw = vec![];
        let mut in_tests = false;
        while r.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
            let _ = log.write_all(&raw);
            let text = strip_escapes(&String::from_utf8_lossy(&raw));
            let line = text.trim_end_matches('\n');
            raw.clear();
            in_tests = (in_tests || line.contains(TESTS_BEGIN)) && !line.contains(TESTS_END);
            let result_line = in_tests && line.starts_with("test ") && line.contains(" ... ");
            if verbose || result_line || line.contains(NOTE) || line.contains("Kernel panic") {
                println!("  | {line}");
            }
            console.push_str(line);
            console.push('\n');
        }
        console
    });
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > vm.timeout {
            eprintln!("vm: qemu still running after {:?}: stopping it", vm.timeout);
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed();
    let console = reader.join().unwrap_or_default();
    Ok(Boot {
        wall,
        timed_out,
        console,
    })
}

/// Removes terminal escape sequences (CSI, OSC, two-byte), carriage
/// returns and other control characters but tabs and newlines.
pub(super) fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                // Charset selection takes one more character.
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_escapes;

    #[test]
    fn strips_terminal_escapes() {
        assert_eq!(
            strip_escapes("\x1b[2J\x1b[01;01Htest a ... \x1b[32mok\x1b[0m\r\n"),
            "test a ... ok\n"
        );
        assert_eq!(strip_escapes("\x1b]0;title\x07x\x1b(By"), "xy");
    }
}
