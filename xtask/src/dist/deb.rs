//! rsttrace_<version>_amd64.deb, built with dpkg-deb from a tree laid out
//! here: the binary in /usr/sbin, the systemd unit running it, the
//! example configuration and the logrotate file as conffiles, the man page
//! (section 8), bash, zsh and fish completions, the copyright file, and
//! the maintainer scripts of packaging/deb/.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{elf::Needs, install, install_copy, output, VERSION};
use crate::{root, status};

/// Where the package puts the binary; the unit's ExecStart says the same.
pub(super) const BINARY: &str = "usr/sbin/rsttrace";
/// /lib, not /usr/lib: Debian 11's systemd looks there and Debian 12's
/// (merged /usr) finds the same directory.
const UNIT: &str = "lib/systemd/system/rsttrace.service";
const CONFFILES: [&str; 2] = ["etc/rsttrace/rsttrace.toml", "etc/logrotate.d/rsttrace"];
/// packaging/rsttrace.service starts a copied binary here.
const COPIED_BINARY: &str = "/usr/local/bin/rsttrace";

pub(super) fn build(binary: &Path, needs: &Needs, tree: &Path, out: &Path) -> Result<PathBuf> {
    let repo = root();
    let read =
        |rel: &str| std::fs::read_to_string(repo.join(rel)).with_context(|| format!("read {rel}"));
    install_copy(binary, &tree.join(BINARY), 0o755)?;

    let unit = read("packaging/rsttrace.service")?;
    let exec = format!("ExecStart={COPIED_BINARY} ");
    if unit.matches(&exec).count() != 1 {
        bail!("packaging/rsttrace.service has no single `{exec}` line to point at /{BINARY}");
    }
    let unit = unit.replace(&exec, &format!("ExecStart=/{BINARY} "));
    install(&tree.join(UNIT), unit, 0o644)?;
    install(
        &tree.join(CONFFILES[0]),
        read("packaging/rsttrace.toml")?,
        0o644,
    )?;
    install(
        &tree.join(CONFFILES[1]),
        read("packaging/rsttrace.logrotate")?,
        0o644,
    )?;

    // Documentation from the binary itself.
    let run = |args: &[&str]| output(Command::new(binary).args(args));
    let man = tree.join("usr/share/man/man8/rsttrace.8");
    install(&man, run(&["man"])?, 0o644)?;
    status(Command::new("gzip").args(["-9", "-n"]).arg(&man))?;
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/rsttrace"),
        ("zsh", "usr/share/zsh/vendor-completions/_rsttrace"),
        ("fish", "usr/share/fish/vendor_completions.d/rsttrace.fish"),
    ] {
        install(&tree.join(path), run(&["completions", shell])?, 0o644)?;
    }
    install_copy(
        &repo.join("packaging/deb/copyright"),
        &tree.join("usr/share/doc/rsttrace/copyright"),
        0o644,
    )?;

    let control = tree.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install_copy(
            &repo.join("packaging/deb").join(script),
            &control.join(script),
            0o755,
        )?;
    }
    let conffiles: String = CONFFILES.iter().map(|c| format!("/{c}\n")).collect();
    install(&control.join("conffiles"), conffiles, 0o644)?;
    install(&control.join("md5sums"), md5sums(tree)?, 0o644)?;
    let fields = format!(
        "Package: rsttrace\n\
         Version: {VERSION}\n\
         Architecture: amd64\n\
         Maintainer: The rsttrace authors <rsttrace@example.invalid>\n\
         Installed-Size: {}\n\
         Depends: {}\n\
         Suggests: logrotate\n\
         Section: net\n\
         Priority: optional\n\
         Description: explain every TCP reset on this host\n \
         rsttrace attaches eBPF programs to the kernel and reports every TCP reset\n \
         the host sends or receives: which connection, which direction, why, which\n \
         process owns the socket and who really sent it, as text, JSON or logfmt,\n \
         with Prometheus metrics.\n \
         .\n \
         The package installs a systemd unit, not enabled: start it with\n \
         `systemctl enable --now rsttrace`.  Needs Linux 5.8 or newer with BTF.\n",
        installed_size_kib(tree)?,
        depends(needs)?
    );
    install(&control.join("control"), fields, 0o644)?;

    status(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(tree)
            .arg(out),
    )
    .context("dpkg-deb --build")?;
    Ok(out.to_path_buf())
}

/// Depends: the packages holding the libraries the binary needs, no newer
/// than the symbol versions it uses (what dpkg-shlibdeps would say).
fn depends(needs: &Needs) -> Result<String> {
    let mut libc = false;
    for lib in &needs.libraries {
        match lib.as_str() {
            "libc.so.6"
            | "libm.so.6"
            | "libpthread.so.0"
            | "libdl.so.2"
            | "librt.so.1"
            | "libutil.so.1"
            | "ld-linux-x86-64.so.2" => libc = true,
            other => bail!("the binary needs {other}: add its package to the .deb's Depends"),
        }
    }
    if !libc {
        bail!("the binary links no glibc library");
    }
    Ok(format!("libc6 (>= {})", needs.glibc))
}

/// Every regular file but DEBIAN/, relative to `tree`, sorted.
fn payload(tree: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let rel = p.strip_prefix(base).expect("under the tree").to_path_buf();
            if rel == Path::new("DEBIAN") {
                continue;
            }
            if e.file_type()?.is_dir() {
                walk(&p, base, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut files = vec![];
    walk(tree, tree, &mut files)?;
    files.sort();
    Ok(files)
}

/// DEBIAN/md5sums, which `dpkg --verify` checks installed files against.
fn md5sums(tree: &Path) -> Result<String> {
    output(
        Command::new("md5sum")
            .current_dir(tree)
            .arg("--")
            .args(payload(tree)?),
    )
}

/// Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up.
fn installed_size_kib(tree: &Path) -> Result<u64> {
    let mut kib = 0;
    for f in payload(tree)? {
        let len = std::fs::metadata(tree.join(&f))?.len();
        kib += len.div_ceil(1024).max(1);
    }
    Ok(kib)
}
