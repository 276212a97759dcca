//! What `cargo xtask dist` ships (target/dist/), installed and run as an
//! operator would: the portable binary's needs from the C library, and
//! the Debian package's whole life in a Debian 11 and a Debian 12 root
//! (`dpkg -i`, the release's own `systemd-analyze verify`, `dpkg -r`,
//! `dpkg -P`).  The image is run in the e2e suite (service_image.rs),
//! with the tests that load BPF.
//!
//! Needs root (chroot, overlay mounts), target/dist/ and the roots in
//! target/vm/roots/: `cargo xtask test` makes both first
//! (`cargo xtask test --no-lint -- --test dist` runs only these).
//! Nothing here is skipped: a missing piece fails.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The newest glibc the portable binary may need (README "Install").
const GLIBC_MAX: (u32, u32) = (2, 28);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rsttrace/ has a parent")
        .to_path_buf()
}

fn dist(name: &str) -> PathBuf {
    let p = repo().join("target/dist").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask test` (or `cargo xtask dist`)",
        p.display()
    );
    p
}

fn deb_name() -> String {
    format!("rsttrace_{VERSION}_amd64.deb")
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the package tests chroot and mount: run them as root (`cargo xtask test`)"
    );
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// --- The portable binary ------------------------------------------------

/// `GLIBC_2.17` -> (2, 17).
fn glibc_version(name: &str) -> Option<(u32, u32)> {
    let v = name.strip_prefix("GLIBC_")?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>());
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

#[test]
fn portable_binary_needs_old_glibc_only() {
    let binary = dist("rsttrace");
    let out = ok(Command::new("objdump").arg("-T").arg(&binary));
    let newest = out
        .split_whitespace()
        .filter_map(|w| glibc_version(w.trim_matches(|c| c == '(' || c == ')')))
        .max()
        .expect("GLIBC_ symbol versions");
    assert!(
        newest <= GLIBC_MAX,
        "{} needs GLIBC_{}.{}, more than {}.{}",
        binary.display(),
        newest.0,
        newest.1,
        GLIBC_MAX.0,
        GLIBC_MAX.1
    );
    // Libraries every glibc system has, and nothing else.
    let needed = ok(Command::new("objdump").arg("-p").arg(&binary));
    for lib in needed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
    {
        let lib = lib.trim();
        assert!(
            [
                "libc.so.6",
                "libm.so.6",
                "libpthread.so.0",
                "libdl.so.2",
                "librt.so.1",
                "ld-linux-x86-64.so.2"
            ]
            .contains(&lib),
            "the portable binary needs {lib}"
        );
    }
}

#[test]
fn sha256sums_cover_the_three_artifacts() {
    let sums = fs::read_to_string(dist("SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").expect("sha256sum format").1)
        .collect();
    let image = format!("rsttrace-{VERSION}.oci.tar");
    assert_eq!(names, ["rsttrace", &deb_name(), &image]);
    let check = ok(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(repo().join("target/dist")));
    assert_eq!(check.lines().filter(|l| l.ends_with(": OK")).count(), 3);
    let mut files: Vec<String> = fs::read_dir(repo().join("target/dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want = vec![
        "SHA256SUMS".to_string(),
        "rsttrace".into(),
        image,
        deb_name(),
    ];
    want.sort();
    assert_eq!(files, want, "target/dist holds the four files");
}

// --- The Debian package ---------------------------------------------------

/// A writable overlay on a cached root (target/vm/roots/<suite>), unmounted
/// and removed on drop: the cache stays as debootstrap made it.
struct Overlay {
    dir: PathBuf,
    merged: PathBuf,
}

impl Overlay {
    fn new(suite: &str) -> Overlay {
        let lower = repo().join("target/vm/roots").join(suite);
        assert!(
            lower.join("var/lib/dpkg/status").is_file(),
            "no {suite} root at {}: run `cargo xtask test`, which debootstraps it",
            lower.display()
        );
        let dir = std::env::temp_dir().join(format!("rsttrace-deb-{suite}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let merged = dir.join("merged");
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        ok(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                dir.join("upper").display(),
                dir.join("work").display()
            ))
            .arg(&merged));
        Overlay { dir, merged }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.merged.join(rel.trim_start_matches('/'))
    }

    /// `args` run chrooted into the root, with /proc, /sys and the cgroup
    /// tree mounted (systemd 247's systemd-analyze needs to know its
    /// cgroup), in a mount namespace of their own: nothing is mounted on
    /// the host.
    fn chroot(&self, args: &[&str]) -> Output {
        const MOUNTS: &str = r#"mount -t proc proc "$1/proc" &&
            mount -t sysfs sysfs "$1/sys" &&
            mount -t cgroup2 cgroup2 "$1/sys/fs/cgroup" &&
            exec chroot "$@""#;
        run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", MOUNTS, "sh"])
            .arg(&self.merged)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }

    fn chroot_ok(&self, args: &[&str]) -> String {
        let out = self.chroot(args);
        assert!(
            out.status.success(),
            "chroot {args:?}: {}\n{}",
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    /// Size and mtime of files and symlinks; directories change as their
    /// entries come and go.
    content: Option<(u64, i64)>,
}

/// Every path of the root but the pseudo file systems and /tmp.
/// Every path under a root, with what it is.
type Snapshot = BTreeMap<PathBuf, Entry>;

fn snapshot(root: &Path) -> Snapshot {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if ["proc", "sys", "dev", "run", "tmp"]
                .iter()
                .any(|s| rel == Path::new(s))
            {
                continue;
            }
            let m = fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let kind = if t.is_dir() {
                "dir"
            } else if t.is_symlink() {
                "symlink"
            } else if t.is_file() {
                "file"
            } else {
                "other"
            };
            let content = (!t.is_dir()).then(|| (m.len(), m.mtime()));
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: m.permissions().mode(),
                    content,
                },
            );
            if t.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// What a purge may leave changed: dpkg's own database and log.
fn kept_by_policy(path: &Path) -> bool {
    path.starts_with("var/lib/dpkg") || path == Path::new("var/log/dpkg.log")
}

/// What the package installs, and how.
const FILES: [(&str, u32); 9] = [
    ("usr/sbin/rsttrace", 0o755),
    ("lib/systemd/system/rsttrace.service", 0o644),
    ("etc/rsttrace/rsttrace.toml", 0o644),
    ("etc/logrotate.d/rsttrace", 0o644),
    ("usr/share/man/man8/rsttrace.8.gz", 0o644),
    ("usr/share/bash-completion/completions/rsttrace", 0o644),
    ("usr/share/zsh/vendor-completions/_rsttrace", 0o644),
    ("usr/share/fish/vendor_completions.d/rsttrace.fish", 0o644),
    ("usr/share/doc/rsttrace/copyright", 0o644),
];
const CONFFILES: [&str; 2] = ["/etc/rsttrace/rsttrace.toml", "/etc/logrotate.d/rsttrace"];

fn status_of(root: &Overlay) -> String {
    let out = root.chroot(&["dpkg-query", "-W", "-f", "${Status} ${Version}", "rsttrace"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs, checks, removes and purges the package in the `suite` root.
fn package_life(suite: &str, release: &str) {
    require_root();
    let root = debian_root(suite, release);
    let before = snapshot(&root.merged);
    assert_installed(&root, release);
    assert_runs_and_its_unit_verifies(&root, release);
    assert_documented(&root);
    let (config, edited) = used_as_an_operator_does(&root);
    assert_removed_keeping_config_and_logs(&root, &config, &edited);
    assert_purged_leaving_nothing(&root, &before, release);
}

/// A copy-on-write root of Debian `release`, as systemd leaves it for a
/// DynamicUser= service's logs.
fn debian_root(suite: &str, release: &str) -> Overlay {
    let root = Overlay::new(suite);
    assert!(
        fs::read_to_string(root.path("etc/debian_version"))
            .unwrap()
            .starts_with(release),
        "the {suite} root is not Debian {release}"
    );
    // systemd makes this (0700) for the logs of every DynamicUser= service.
    fs::create_dir_all(root.path("var/log/private")).unwrap();
    fs::set_permissions(
        root.path("var/log/private"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    root
}

/// dpkg -i: no warning, every file with its mode, the conffiles, the
/// md5sums.
fn assert_installed(root: &Overlay, release: &str) {
    fs::copy(dist(&deb_name()), root.path("tmp/rsttrace.deb")).unwrap();
    let out = root.chroot(&["dpkg", "-i", "/tmp/rsttrace.deb"]);
    let all = text(&out);
    println!("dpkg -i on Debian {release}:\n{all}");
    assert!(out.status.success(), "dpkg -i: {}\n{all}", out.status);
    assert!(!all.contains("warning") && !all.contains("error"), "{all}");
    assert_eq!(status_of(root), format!("install ok installed {VERSION}"));

    for (file, mode) in FILES {
        let m = fs::metadata(root.path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{file}");
        assert!(m.len() > 0, "{file} is empty");
    }
    let conffiles = root.chroot_ok(&["dpkg-query", "-W", "-f", "${Conffiles}", "rsttrace"]);
    let listed: Vec<&str> = conffiles
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, CONFFILES);
    // Every installed file matches the package's md5sums.
    assert_eq!(root.chroot_ok(&["dpkg", "--verify", "rsttrace"]), "");
}

/// The release's own glibc runs the binary, and the unit's command line
/// (with the installed configuration) is valid.
fn assert_runs_and_its_unit_verifies(root: &Overlay, release: &str) {
    assert_eq!(
        root.chroot_ok(&["/usr/sbin/rsttrace", "--version"]),
        format!("rsttrace {VERSION}\n")
    );
    let unit = fs::read_to_string(root.path("lib/systemd/system/rsttrace.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[0], "/usr/sbin/rsttrace");
    words.push("--check");
    // systemd makes LogsDirectory= before ExecStart= runs (with
    // DynamicUser=, in /var/log/private behind a link); --check wants the
    // output's directory to be there.
    fs::create_dir_all(root.path("var/log/private/rsttrace")).unwrap();
    std::os::unix::fs::symlink("private/rsttrace", root.path("var/log/rsttrace")).unwrap();
    let check = root.chroot(&words);
    assert!(
        check.status.success() && text(&check).contains("the options are valid"),
        "{words:?}: {}",
        text(&check)
    );
    // The release's own systemd knows every directive (warnings go to
    // stderr with exit status 0, so stderr must be empty).
    let verify = root.chroot(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/rsttrace.service",
    ]);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify on Debian {release}: {}\n{}",
        verify.status,
        text(&verify)
    );
    let version = root.chroot_ok(&["systemctl", "--version"]);
    println!("verified with {}", version.lines().next().unwrap_or(""));
}

/// man(8), and a completion bash loads.
fn assert_documented(root: &Overlay) {
    let man = ok(Command::new("zcat").arg(root.path("usr/share/man/man8/rsttrace.8.gz")));
    assert!(
        man.lines().any(|l| l.starts_with(".TH rsttrace 8 ")),
        "{man:.300}"
    );
    let complete = root.chroot_ok(&[
        "bash",
        "-c",
        ". /usr/share/bash-completion/completions/rsttrace && complete -p rsttrace",
    ]);
    assert!(complete.contains(" rsttrace"), "{complete}");
}

/// What an operator does next: enable the unit, edit the configuration;
/// what the service leaves: its log, where DynamicUser= puts it.  Returns
/// the configuration's path and its edited text.
fn used_as_an_operator_does(root: &Overlay) -> (std::path::PathBuf, String) {
    root.chroot_ok(&["systemctl", "enable", "rsttrace.service"]);
    let wants = root.path("etc/systemd/system/multi-user.target.wants/rsttrace.service");
    assert!(
        fs::symlink_metadata(&wants).is_ok(),
        "systemctl enable made no link"
    );
    let config = root.path("etc/rsttrace/rsttrace.toml");
    let edited = format!(
        "{}\n# edited by the operator\n",
        fs::read_to_string(&config).unwrap()
    );
    fs::write(&config, &edited).unwrap();
    fs::write(root.path("var/log/private/rsttrace/rsttrace.json"), "{}\n").unwrap();
    (config, edited)
}

/// Remove: the program goes, configuration and logs stay.
fn assert_removed_keeping_config_and_logs(root: &Overlay, config: &std::path::Path, edited: &str) {
    let out = root.chroot(&["dpkg", "-r", "rsttrace"]);
    assert!(out.status.success(), "dpkg -r: {}", text(&out));
    assert!(!root.path("usr/sbin/rsttrace").exists());
    assert!(!root.path("lib/systemd/system/rsttrace.service").exists());
    assert_eq!(fs::read_to_string(config).unwrap(), edited);
    assert!(root.path("var/log/rsttrace/rsttrace.json").exists());
    assert_eq!(
        status_of(root),
        format!("deinstall ok config-files {VERSION}")
    );
}

/// Purge: nothing of rsttrace is left, only dpkg's records of it.
fn assert_purged_leaving_nothing(root: &Overlay, before: &Snapshot, release: &str) {
    let out = root.chroot(&["dpkg", "-P", "rsttrace"]);
    println!("dpkg -P on Debian {release}:\n{}", text(&out));
    assert!(out.status.success(), "dpkg -P: {}", text(&out));
    assert_eq!(status_of(root), "");
    let after = snapshot(&root.merged);
    let mut left = vec![];
    for (path, entry) in &after {
        if before.get(path) != Some(entry) && !kept_by_policy(path) {
            left.push(format!("{} {entry:?}", path.display()));
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) && !kept_by_policy(path) {
            left.push(format!("{} removed", path.display()));
        }
    }
    assert!(
        left.is_empty(),
        "after dpkg -P on Debian {release}, changed:\n{}",
        left.join("\n")
    );
}

#[test]
fn package_installs_and_purges_on_debian_11() {
    package_life("bullseye", "11");
}

#[test]
fn package_installs_and_purges_on_debian_12() {
    package_life("bookworm", "12");
}
