//! Debian packages: the host's tools through the machine's apt, the
//! kernels through an apt configuration private to the project (its own
//! sources.list, lists and cache under target/vm/apt; the machine's
//! /etc/apt is never written).

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context, Result};

use super::Series;
use crate::status;

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The private package lists are refreshed when older than this.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Removes the policy-rc.d it wrote (none existed before) when dropped.
struct NoServiceStarts(Option<PathBuf>);

impl NoServiceStarts {
    /// While installing, services must not start: a policy-rc.d that
    /// answers 101 ("action forbidden").
    fn new() -> Result<Self> {
        let path = Path::new("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(NoServiceStarts(None));
        }
        std::fs::write(path, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("write {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoServiceStarts(Some(path.to_path_buf())))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Archive {
    /// Installs the host packages that are missing, through the private
    /// configuration.  `name/suite` picks a suite: qemu comes from
    /// bookworm-backports, because these machines carry its qemu-utils
    /// (qemu-img) from there, which bookworm's qemu would have to remove.
    pub(super) fn install(&self, packages: &[&str]) -> Result<()> {
        let missing: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| !installed(p.split('/').next().unwrap_or(p)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        println!("vm: installing {}", missing.join(" "));
        let _guard = NoServiceStarts::new()?;
        // --no-remove: never take packages away from the machine to make room.
        // -t: a package taken from backports needs its dependencies from
        // there too (qemu-system-x86 wants backports' qemu-system-common).
        status(
            self.apt("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "--no-remove",
                    "-t",
                    "bookworm-backports",
                ])
                .args(&missing),
        )
        .with_context(|| {
            format!(
                "installing {} (apt-get refuses if that would remove installed packages: \
                 resolve that by hand, then run again)",
                missing.join(" ")
            )
        })
    }
}

/// A package name and version.
pub(super) struct Package {
    pub name: String,
    pub version: String,
}

/// The project's own view of Debian's archive.
pub(super) struct Archive {
    dir: PathBuf,
}

impl Archive {
    /// Writes the private sources.list and creates the directories apt
    /// needs, owned by `_apt` where apt's sandboxed downloader writes.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(d))
                .with_context(|| format!("create {}", dir.join(d).display()))?;
        }
        let sources = format!(
            "deb [signed-by={KEYRING}] {MIRROR} bullseye main\n\
             deb [signed-by={KEYRING}] {SECURITY} bullseye-security main\n\
             deb [signed-by={KEYRING}] {MIRROR} bookworm main\n\
             deb [signed-by={KEYRING}] {MIRROR} bookworm-backports main\n"
        );
        let list = dir.join("sources.list");
        if std::fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str()) {
            std::fs::write(&list, sources).with_context(|| format!("write {}", list.display()))?;
            // New sources: the lists must be fetched again.
            let _ = std::fs::remove_file(dir.join("updated"));
        }
        chown_apt(&dir.join("lists/partial"))?;
        chown_apt(&dir.join("cache/archives/partial"))?;
        let archive = Archive {
            dir: dir.to_path_buf(),
        };
        archive.update_if_stale()?;
        Ok(archive)
    }

    /// apt-get / apt-cache with the private configuration.
    fn apt(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut c = Command::new(program);
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                d.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null", "-o"])
            .arg(format!("Dir::State::Lists={}", d.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", d.join("cache").display()));
        c
    }

    fn update_if_stale(&self) -> Result<()> {
        let stamp = self.dir.join("updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            return Ok(());
        }
        println!("vm: fetching the package lists of bullseye, bookworm and bookworm-backports");
        status(self.apt("apt-get").args(["-qq", "update"]))
            .context("apt-get update with the private sources.list (target/vm/apt)")?;
        std::fs::write(&stamp, "")?;
        Ok(())
    }

    /// The newest package of a kernel series in its suites.
    pub(super) fn newest(&self, series: &Series) -> Result<Package> {
        let out = self
            .apt("apt-cache")
            .args(["pkgnames", series.prefix])
            .output()
            .context("apt-cache pkgnames")?;
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| n.ends_with(series.suffix))
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            bail!(
                "no package {}*{} in the private package lists (target/vm/apt)",
                series.prefix,
                series.suffix
            );
        }
        // ` name | version | URI suite/component arch Packages`
        let out = self
            .apt("apt-cache")
            .arg("madison")
            .args(&names)
            .output()
            .context("apt-cache madison")?;
        let mut best: Option<Package> = None;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let [name, version, source] = cols[..] else {
                continue;
            };
            let suite = source
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.split('/').next())
                .unwrap_or("");
            if !series.suites.contains(&suite) {
                continue;
            }
            if best.as_ref().is_none_or(|b| newer(version, &b.version)) {
                best = Some(Package {
                    name: name.to_string(),
                    version: version.to_string(),
                });
            }
        }
        best.with_context(|| {
            format!(
                "no {}*{} in {}",
                series.prefix,
                series.suffix,
                series.suites.join(" or ")
            )
        })
    }

    /// Downloads a package into `into` unless it is there already.
    pub(super) fn download(&self, package: &Package, into: &Path) -> Result<PathBuf> {
        let file = into.join(format!(
            "{}_{}_amd64.deb",
            package.name,
            package.version.replace(':', "%3a")
        ));
        if file.exists() {
            return Ok(file);
        }
        std::fs::create_dir_all(into).with_context(|| format!("create {}", into.display()))?;
        chown_apt(into)?;
        println!("vm: downloading {} {}", package.name, package.version);
        status(
            self.apt("apt-get")
                .current_dir(into)
                .args(["-qq", "download"])
                .arg(format!("{}={}", package.name, package.version)),
        )
        .with_context(|| format!("apt-get download {}", package.name))?;
        if !file.exists() {
            bail!("apt-get download left no {}", file.display());
        }
        Ok(file)
    }
}

/// `apt-get download` and `update` write as the `_apt` user.
fn chown_apt(dir: &Path) -> Result<()> {
    status(Command::new("chown").arg("_apt").arg(dir))
        .with_context(|| format!("make {} writable by _apt", dir.display()))
}

/// Is Debian version `a` newer than `b`?
fn newer(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}
