//! One kernel package → its vmlinuz and an initramfs archive with its
//! modules (cached in target/vm/<series>/, keyed by the package file).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use super::{pack_cpio, Stamp};
use crate::status;

pub(super) struct Kernel {
    pub vmlinuz: PathBuf,
    /// `usr/lib/modules/<release>/…` with modules.dep, as a cpio archive.
    pub modules: PathBuf,
}

/// Bump when what `prepare` makes changes.
const RECIPE: &str = "kernel v2";

pub(super) fn prepare(dir: &Path, deb: &Path) -> Result<Kernel> {
    let kernel = Kernel {
        vmlinuz: dir.join("vmlinuz"),
        modules: dir.join("modules.cpio"),
    };
    let stamp = Stamp::new(dir.join("kernel.stamp"));
    let recipe = format!("{RECIPE}\n{}\n", deb.display());
    if stamp.matches(&recipe) && kernel.vmlinuz.exists() && kernel.modules.exists() {
        return Ok(kernel);
    }
    stamp.clear();
    println!("vm: unpacking {}", deb.display());
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let pkg = dir.join("pkg");
    let modroot = dir.join("modroot");
    for d in [&pkg, &modroot] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("remove {}", d.display()))?;
        }
    }
    status(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&pkg))?;

    let boot = pkg.join("boot");
    let image = std::fs::read_dir(&boot)
        .with_context(|| format!("read {}", boot.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vmlinuz-"))
        .context("no boot/vmlinuz-* in the package")?;
    let release = image.trim_start_matches("vmlinuz-").to_string();
    std::fs::copy(boot.join(&image), &kernel.vmlinuz)?;
    // Neither kernel has /proc/config.gz: keep the config next to it.
    let _ = std::fs::copy(boot.join(format!("config-{release}")), dir.join("config"));

    // Modules go under usr/lib/modules: a real lib/ in a later archive
    // would replace the root's /lib -> usr/lib symlink.  depmod (kmod 30)
    // looks in <base>/lib/modules, hence the symlink while it runs.
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| pkg.join(m).join(&release))
        .find(|p| p.is_dir())
        .with_context(|| format!("no modules directory for {release} in the package"))?;
    let target = modroot.join("usr/lib/modules");
    std::fs::create_dir_all(&target)?;
    std::fs::rename(&modules, target.join(&release))?;
    std::os::unix::fs::symlink("usr/lib", modroot.join("lib"))?;
    status(Command::new("depmod").arg("-b").arg(&modroot).arg(&release))
        .with_context(|| format!("depmod for {release}"))?;
    std::fs::remove_file(modroot.join("lib"))?;
    // The guest's /boot/config-<release>: the tests read what the kernel
    // offers from its configuration, as on a distribution's host.
    let guest_boot = modroot.join("boot");
    std::fs::create_dir_all(&guest_boot)?;
    std::fs::copy(
        boot.join(format!("config-{release}")),
        guest_boot.join(format!("config-{release}")),
    )
    .with_context(|| format!("no boot/config-{release} in the package"))?;
    pack_cpio(&modroot, &kernel.modules)?;
    std::fs::remove_dir_all(&pkg)?;
    std::fs::write(dir.join("release"), &release)?;
    stamp.write(&recipe)?;
    Ok(kernel)
}
