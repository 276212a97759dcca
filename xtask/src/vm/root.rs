//! The guests' roots: minimal Debian 11 (bullseye) and 12 (bookworm)
//! trees (debootstrap) with what the end-to-end tests run, each packed
//! once as a cpio archive.  The package tests (rsttrace/tests/dist.rs)
//! install the .deb into overlays of the same trees.  Rebuilt only when
//! the recipe below changes.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use super::{pack_cpio, Stamp};
use crate::status;

const MIRROR: &str = "http://deb.debian.org/debian";

/// A Debian release the guests or the package tests run.
pub(crate) struct Suite {
    /// The codename debootstrap takes.
    pub name: &'static str,
}

/// Debian 11: glibc 2.31, systemd 247; the userspace of the 5.10 kernel.
pub(crate) const BULLSEYE: Suite = Suite { name: "bullseye" };
/// Debian 12: glibc 2.36, systemd 252.
pub(crate) const BOOKWORM: Suite = Suite { name: "bookworm" };
pub(crate) const SUITES: [Suite; 2] = [BULLSEYE, BOOKWORM];

/// Beyond minbase: what the tests and the guest's /init run.
/// ip, ss (iproute2); nft (nftables); iptables; sysctl (procps);
/// modprobe (kmod); setpriv, unshare, dmesg (util-linux); umount
/// (mount); bpftool (optional for the tests: checks that programs are
/// detached); systemd and init-system-helpers, which every Debian host
/// has: the package tests verify the installed unit with the release's
/// own systemd-analyze, and the maintainer scripts call
/// deb-systemd-helper.  nginx-light, apache2-utils (ab) and wrk: the
/// benchmark's ordinary traffic (`cargo xtask vm --bench`).
const PACKAGES: [&str; 13] = [
    "iproute2",
    "nftables",
    "iptables",
    "procps",
    "kmod",
    "util-linux",
    "mount",
    "bpftool",
    "systemd",
    "init-system-helpers",
    "nginx-light",
    "apache2-utils",
    "wrk",
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

pub(crate) struct Root {
    /// The tree.
    pub dir: PathBuf,
    /// The tree as an initramfs archive.
    pub archive: PathBuf,
}

/// target/vm/roots/<suite>/ and its archive.
pub(crate) fn paths(suite: &Suite) -> Root {
    let roots = crate::root().join("target/vm/roots");
    Root {
        dir: roots.join(suite.name),
        archive: roots.join(format!("{}.cpio", suite.name)),
    }
}

/// The root of `suite`, built if missing or made from another recipe.
pub(crate) fn prepare(suite: &Suite) -> Result<Root> {
    let root = paths(suite);
    let parent = root.dir.parent().expect("under target/vm/roots");
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let stamp = Stamp::new(parent.join(format!("{}.stamp", suite.name)));
    let recipe = format!(
        "debootstrap --variant=minbase --include={} {} {MIRROR}\ntrim {}\n",
        PACKAGES.join(","),
        suite.name,
        TRIM.join(" ")
    );
    if stamp.matches(&recipe) && root.archive.exists() && root.dir.is_dir() {
        return Ok(root);
    }
    stamp.clear();
    if root.dir.exists() {
        std::fs::remove_dir_all(&root.dir)
            .with_context(|| format!("remove {}", root.dir.display()))?;
    }
    println!(
        "vm: debootstrap {} into {} (once)",
        suite.name,
        root.dir.display()
    );
    status(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include"])
            .arg(PACKAGES.join(","))
            .arg(suite.name)
            .arg(&root.dir)
            .arg(MIRROR)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("debootstrap of the {} root", suite.name))?;
    for t in TRIM {
        let p = root.dir.join(t);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("remove {}", p.display()))?;
        }
    }
    pack_cpio(&root.dir, &root.archive)?;
    stamp.write(&recipe)?;
    Ok(root)
}
