//! `cargo xtask dist`: what an operator installs, in target/dist/:
//!
//! - `rsttrace`: the tracer for any x86_64 Linux with glibc 2.17 or newer
//!   (Debian 9+, Ubuntu 18.04+, RHEL 8+, Amazon Linux 2), built with
//!   cargo-zigbuild against glibc 2.17's symbol versions;
//! - `rsttrace_<version>_amd64.deb` (deb.rs);
//! - `rsttrace-<version>.oci.tar`, the image deploy/daemonset.yaml names
//!   (image.rs);
//! - `SHA256SUMS` of the three.
//!
//! Every run rebuilds the four from the current tree (cargo makes the
//! compile incremental; packing takes seconds).  elf.rs reads what the
//! binary needs from the C library.

mod deb;
mod elf;
mod image;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{cargo_json, root};

/// The version everything is named after: the workspace's.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// cargo-zigbuild's target: x86_64 glibc, symbol versions of glibc 2.17.
pub(crate) const TARGET: &str = "x86_64-unknown-linux-gnu";
const GLIBC_TARGET: &str = "2.17";
/// The newest glibc the binary may need (Debian 10, RHEL 8): the promise
/// the README makes.  `dist` fails rather than ship a binary needing more.
pub(crate) const GLIBC_MAX: elf::Version = elf::Version(2, 28, 0);

pub(crate) fn dir() -> PathBuf {
    root().join("target/dist")
}

pub(crate) fn deb_name() -> String {
    format!("rsttrace_{VERSION}_amd64.deb")
}

pub(crate) fn image_archive_name() -> String {
    format!("rsttrace-{VERSION}.oci.tar")
}

/// The image's name; deploy/daemonset.yaml must say the same.
pub(crate) fn image_name() -> String {
    format!("localhost/rsttrace:{VERSION}")
}

/// zig and cargo-zigbuild, where `scripts/bootstrap.sh --with-dist` puts
/// them (the same formula as DIST_TOOLS there).
struct Tools {
    zig: PathBuf,
    zigbuild: PathBuf,
}

fn tools() -> Result<Tools> {
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".local/share")
        }
    };
    let dir = data.join("rsttrace/dist-tools");
    let t = Tools {
        zig: dir.join("ziglang/zig"),
        zigbuild: dir.join("bin/cargo-zigbuild"),
    };
    for p in [&t.zig, &t.zigbuild] {
        if !p.is_file() {
            bail!(
                "{} is missing: run scripts/bootstrap.sh --with-dist",
                p.display()
            );
        }
    }
    Ok(t)
}

/// `cargo zigbuild <args> --target x86_64-unknown-linux-gnu.2.17`, with
/// the pinned zig.  Builds land in target/x86_64-unknown-linux-gnu/.
pub(crate) fn zigbuild(args: &[&str]) -> Result<Command> {
    let t = tools()?;
    let mut c = Command::new(&t.zigbuild);
    c.current_dir(root())
        .arg("zigbuild")
        .args(args)
        .arg("--target")
        .arg(format!("{TARGET}.{GLIBC_TARGET}"))
        .env("CARGO_ZIGBUILD_ZIG_PATH", &t.zig);
    Ok(c)
}

/// Two of the four files of target/dist/: what the VMs run, and its
/// checksum.
pub(crate) struct Artifacts {
    pub binary: PathBuf,
    pub sums: PathBuf,
}

/// Builds target/dist/ afresh.  Needs `bootstrap --with-dist` first.
pub(crate) fn run() -> Result<Artifacts> {
    let built = cargo_json::executable(
        zigbuild(&["--release", "--package", "rsttrace"])?,
        "bin",
        "rsttrace",
    )
    .context("building the portable binary with cargo-zigbuild")?;
    let needs = elf::needs(&built)?;
    if needs.glibc > GLIBC_MAX {
        bail!(
            "{} needs GLIBC_{}, newer than the {} promised: a dependency calls a newer glibc function",
            built.display(),
            needs.glibc,
            GLIBC_MAX
        );
    }
    check_daemonset_image()?;

    let out = dir();
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("remove {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    let work = root().join("target/dist-work");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;

    let binary = out.join("rsttrace");
    std::fs::copy(&built, &binary)
        .with_context(|| format!("copy {} to {}", built.display(), binary.display()))?;
    let deb = deb::build(&binary, &needs, &work.join("deb"), &out.join(deb_name()))?;
    let image = image::build(
        &binary,
        &work.join("image"),
        &out.join(image_archive_name()),
    )?;
    let sums = out.join("SHA256SUMS");
    write_sums(&out, &[&binary, &deb, &image], &sums)?;
    std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    println!(
        "dist: in {}: rsttrace (needs GLIBC_{} at most), {}, {}, SHA256SUMS",
        out.display(),
        needs.glibc,
        name(&deb),
        name(&image),
    );
    Ok(Artifacts { binary, sums })
}

fn name(p: &Path) -> std::borrow::Cow<'_, str> {
    p.file_name().unwrap_or_default().to_string_lossy()
}

/// deploy/daemonset.yaml runs the image this task builds: the same name
/// and version.
fn check_daemonset_image() -> Result<()> {
    let path = root().join("deploy/daemonset.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let images: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(str::trim)
        .collect();
    if images != [image_name().as_str()] {
        bail!(
            "{} names image {images:?}; dist builds {}: update the manifest",
            path.display(),
            image_name()
        );
    }
    Ok(())
}

/// `sha256sum`'s format, names relative to `dir`, so `sha256sum -c`
/// checks a downloaded copy.
fn write_sums(dir: &Path, files: &[&Path], out: &Path) -> Result<()> {
    let names: Vec<&std::ffi::OsStr> = files.iter().filter_map(|f| f.file_name()).collect();
    let o = Command::new("sha256sum")
        .current_dir(dir)
        .arg("--")
        .args(&names)
        .output()
        .context("cannot run sha256sum")?;
    if !o.status.success() {
        bail!("sha256sum: {}", String::from_utf8_lossy(&o.stderr));
    }
    std::fs::write(out, &o.stdout).with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

/// The SHA-256 of `file`, from SHA256SUMS (as `sha256sum` wrote it).
pub(crate) fn recorded_sum(sums: &Path, file: &str) -> Result<String> {
    let text = std::fs::read_to_string(sums).with_context(|| format!("read {}", sums.display()))?;
    text.lines()
        .find_map(|l| {
            let (sum, name) = l.split_once("  ")?;
            (name == file).then(|| sum.to_string())
        })
        .with_context(|| format!("{file} is not in {}", sums.display()))
}

/// Runs `c`, returning its stdout; its stderr goes into the error.
pub(crate) fn output(c: &mut Command) -> Result<String> {
    let o = c.output().with_context(|| format!("cannot run {c:?}"))?;
    if !o.status.success() {
        bail!(
            "{c:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Writes `text` to `path`, creating its directory, with `mode`.
fn install(path: &Path, text: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `path` copied to `to` (contents, not a symlink), with `mode`.
fn install_copy(path: &Path, to: &Path, mode: u32) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    install(to, data, mode)
}
