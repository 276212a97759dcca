//! rsttrace-<version>.oci.tar: an OCI image archive holding the portable
//! binary, the C library files it loads (taken from this machine's
//! Debian packages, with their copyright files) and nothing else, made
//! offline with podman in a private store under target/dist-work (the
//! machine's image store and podman's state are left alone).  `podman load -i`, `ctr image
//! import` or `skopeo copy oci-archive:...` read it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use super::{image_name, install_copy, output, VERSION};
use crate::{root, status};

/// Where the binary is in the image (the entry point).
pub(super) const BINARY: &str = "/usr/sbin/rsttrace";

pub(super) fn build(binary: &Path, work: &Path, out: &Path) -> Result<PathBuf> {
    let rootfs = work.join("rootfs");
    let rel = |p: &Path| rootfs.join(p.strip_prefix("/").unwrap_or(p));
    install_copy(binary, &rel(Path::new(BINARY)), 0o755)?;
    let mut packages = vec![];
    for lib in libraries(binary)? {
        // The file's contents at the path the loader asks for: the image
        // has no symlinks into directories it lacks.
        install_copy(&lib, &rel(&lib), 0o755)?;
        let owner = output(Command::new("dpkg").arg("-S").arg(&lib))
            .with_context(|| format!("which package ships {}", lib.display()))?;
        let package = owner
            .split(':')
            .next()
            .context("dpkg -S printed nothing")?
            .trim()
            .to_string();
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    for p in &packages {
        let copyright = Path::new("/usr/share/doc").join(p).join("copyright");
        install_copy(&copyright, &rel(&copyright), 0o644)?;
    }
    let repo = root();
    for licence in [
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "rsttrace-ebpf/LICENSE-GPL-2.0",
    ] {
        let name = Path::new(licence).file_name().expect("a file name");
        install_copy(
            &repo.join(licence),
            &rootfs.join("usr/share/doc/rsttrace").join(name),
            0o644,
        )?;
    }

    let tar = work.join("rootfs.tar");
    status(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    let store = work.join("store");
    // podman refuses a run root path longer than 50 bytes, and the
    // checkout may be anywhere: a short one under /tmp, removed below.
    let runroot = RunRoot::new()?;
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&store)
            .arg("--runroot")
            .arg(&runroot.0)
            .arg("--tmpdir")
            .arg(runroot.0.join("libpod"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"]);
        c
    };
    let changes = [
        format!("ENTRYPOINT [\"{BINARY}\"]"),
        "LABEL org.opencontainers.image.title=rsttrace".into(),
        format!("LABEL org.opencontainers.image.version={VERSION}"),
        "LABEL org.opencontainers.image.description=\"Explain every TCP reset on this host\"".into(),
        "LABEL org.opencontainers.image.licenses=\"(MIT OR Apache-2.0) AND (MIT OR GPL-2.0-only) AND LGPL-2.1-or-later\""
            .into(),
    ];
    let mut import = podman();
    import.args(["import", "--quiet"]);
    for c in &changes {
        import.arg("--change").arg(c);
    }
    output(import.arg(&tar).arg(image_name())).context("podman import")?;
    status(
        podman()
            .args(["save", "--quiet", "--format", "oci-archive", "-o"])
            .arg(out)
            .arg(image_name()),
    )
    .context("podman save")?;
    Ok(out.to_path_buf())
}

/// podman's run root for one build, removed when dropped.
struct RunRoot(PathBuf);

impl RunRoot {
    fn new() -> Result<RunRoot> {
        let dir = PathBuf::from(format!("/tmp/rsttrace-podman-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(RunRoot(dir))
    }
}

impl Drop for RunRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shared objects the binary loads, with the loader, as ldd resolves
/// them on this machine.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let text = output(Command::new("ldd").arg(binary))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}
