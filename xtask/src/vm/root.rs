//! The guest's root: a minimal Debian bookworm (debootstrap) with what the
//! end-to-end tests run, packed once as a cpio archive.  Rebuilt only
//! when the recipe below changes.

use std::{path::Path, path::PathBuf, process::Command};

use anyhow::{Context, Result};

use super::{pack_cpio, Stamp};
use crate::status;

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// Beyond minbase: what the tests and the guest's /init run.
/// ip, ss (iproute2); nft (nftables); iptables; sysctl (procps);
/// modprobe (kmod); setpriv, unshare, dmesg (util-linux); umount
/// (mount); bpftool (optional for the tests: checks that programs are
/// detached).
const PACKAGES: [&str; 8] = [
    "iproute2",
    "nftables",
    "iptables",
    "procps",
    "kmod",
    "util-linux",
    "mount",
    "bpftool",
];

/// Directories of no use in the guest, removed to keep the initramfs small.
const TRIM: [&str; 6] = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
];

/// The root archive, built if missing or made from another recipe.
pub fn base(work: &Path) -> Result<PathBuf> {
    let dir = work.join("root");
    let archive = work.join("root.cpio");
    let stamp = Stamp::new(work.join("root.stamp"));
    let recipe = format!(
        "debootstrap --variant=minbase --include={} {SUITE} {MIRROR}\ntrim {}\n",
        PACKAGES.join(","),
        TRIM.join(" ")
    );
    if stamp.matches(&recipe) && archive.exists() {
        return Ok(archive);
    }
    stamp.clear();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    println!("vm: debootstrap {SUITE} into {} (once)", dir.display());
    status(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include"])
            .arg(PACKAGES.join(","))
            .arg(SUITE)
            .arg(&dir)
            .arg(MIRROR)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("debootstrap of the guest root")?;
    for t in TRIM {
        let p = dir.join(t);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("remove {}", p.display()))?;
        }
    }
    pack_cpio(&dir, &archive)?;
    stamp.write(&recipe)?;
    Ok(archive)
}
