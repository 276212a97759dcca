//! Which container a socket owner runs in: its cgroup (v2) path, and the
//! container id / Kubernetes pod UID that common runtimes encode in it.
//!
//! The path comes from `/proc/<pid>/cgroup` while the process lives, or
//! from the cgroup id the eBPF side recorded (the cgroup directory's inode
//! in cgroupfs) once it has gone.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// cgroup v2 path, e.g. `/system.slice/nginx.service`.
    pub cgroup: String,
    /// `docker`, `containerd`, `cri-o`, `podman` when recognised.
    pub runtime: Option<&'static str>,
    /// Full 64-hex-digit container id.
    pub id: Option<String>,
    /// Kubernetes pod UID (dashed form).
    pub pod_uid: Option<String>,
}

impl Container {
    pub fn from_cgroup(path: &str) -> Self {
        let mut c = Container {
            cgroup: path.to_string(),
            runtime: None,
            id: None,
            pod_uid: None,
        };
        for segment in path.split('/').rev() {
            if c.id.is_none() {
                if let Some((runtime, id)) = container_segment(segment) {
                    c.runtime = runtime;
                    c.id = Some(id.to_string());
                }
            }
            if c.pod_uid.is_none() {
                c.pod_uid = pod_segment(segment);
            }
        }
        if c.pod_uid.is_some() && c.runtime.is_none() && c.id.is_some() {
            // cgroupfs driver under kubepods: a bare id.
            c.runtime = Some("kubernetes");
        }
        c
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope`, or a bare `<id>` (cgroupfs drivers).
fn container_segment(segment: &str) -> Option<(Option<&'static str>, &str)> {
    let base = segment.strip_suffix(".scope").unwrap_or(segment);
    const PREFIXES: [(&str, &str); 5] = [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
        ("containerd-", "containerd"),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = base.strip_prefix(prefix) {
            if is_container_id(id) {
                return Some((Some(runtime), id));
            }
        }
    }
    is_container_id(base).then_some((None, base))
}

/// `kubepods-burstable-pod<uid_with_underscores>.slice` or `pod<uid>`.
fn pod_segment(segment: &str) -> Option<String> {
    let base = segment.strip_suffix(".slice").unwrap_or(segment);
    let uid = base
        .rsplit_once("-pod")
        .map(|(_, u)| u)
        .or_else(|| base.strip_prefix("pod"))?;
    let uid = uid.replace('_', "-");
    let ok = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    ok.then_some(uid)
}

/// The cgroup v2 path of a live process.
pub fn proc_cgroup(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// cgroup id (the directory's inode in cgroupfs v2) -> path, built by
/// walking the hierarchy; rebuilt on a miss at most once per `min_rescan`.
pub struct CgroupIndex {
    root: PathBuf,
    by_id: HashMap<u64, String>,
    last_scan: Option<Instant>,
    min_rescan: Duration,
}

impl CgroupIndex {
    pub fn new(min_rescan: Duration) -> Self {
        CgroupIndex {
            root: "/sys/fs/cgroup".into(),
            by_id: HashMap::new(),
            last_scan: None,
            min_rescan,
        }
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.by_id.clear();
        // Only a cgroup v2 hierarchy has ids that match bpf_get_current_cgroup_id().
        if !self.root.join("cgroup.controllers").exists() {
            return;
        }
        let root = self.root.clone();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = Path::new("/").join(dir.strip_prefix(&root).unwrap_or(Path::new("")));
            self.by_id
                .insert(meta.ino(), rel.to_string_lossy().into_owned());
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }

    pub fn path(&mut self, id: u64) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.by_id.contains_key(&id)
            && self
                .last_scan
                .is_none_or(|t| t.elapsed() >= self.min_rescan)
        {
            self.scan();
        }
        self.by_id.get(&id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

    #[test]
    fn docker_systemd_and_cgroupfs() {
        let c = Container::from_cgroup(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(c.runtime, Some("docker"));
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(c.pod_uid, None);
        let c = Container::from_cgroup(&format!("/docker/{ID}"));
        assert_eq!(c.id.as_deref(), Some(ID));
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{ID}.scope"
        );
        let c = Container::from_cgroup(&path);
        assert_eq!(c.runtime, Some("containerd"));
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
        let crio = path.replace("cri-containerd-", "crio-");
        assert_eq!(Container::from_cgroup(&crio).runtime, Some("cri-o"));
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        let path = format!("/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/{ID}");
        let c = Container::from_cgroup(&path);
        assert_eq!(c.runtime, Some("kubernetes"));
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
    }

    #[test]
    fn podman_and_plain_services() {
        let c = Container::from_cgroup(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(c.runtime, Some("podman"));
        let c = Container::from_cgroup("/system.slice/nginx.service");
        assert_eq!((c.runtime, c.id, c.pod_uid), (None, None, None));
        assert_eq!(c.cgroup, "/system.slice/nginx.service");
        // Not quite an id.
        let c = Container::from_cgroup(&format!("/docker-{}.scope", &ID[1..]));
        assert_eq!(c.id, None);
    }

    #[test]
    fn our_own_cgroup() {
        // Every process has a cgroup v2 line on a unified hierarchy; on a
        // hybrid host there may be none, which is fine.
        if let Some(p) = proc_cgroup(std::process::id()) {
            assert!(p.starts_with('/'));
        }
    }
}
