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
};

pub(crate) use crate::model::owner::Container;

impl Container {
    pub(crate) fn from_cgroup(path: &str) -> Self {
        let mut c = Container {
            cgroup: path.to_string(),
            runtime: None,
            id: None,
            pod_uid: None,
            pod_namespace: None,
            pod_name: None,
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

impl Container {
    /// From the lines of `/proc/<pid>/cgroup`.  On cgroup v2 hosts the
    /// `0::` line says everything; on hybrid and v1 hosts containers live
    /// in the v1 hierarchies, so every line is searched for an id.
    pub(crate) fn from_proc_cgroup(text: &str) -> Option<Container> {
        let mut v2 = None;
        let mut v1 = vec![];
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                v2 = Some(path.trim());
            } else {
                v1.push((controllers, path.trim()));
            }
        }
        let v2_says = v2.filter(|p| *p != "/").map(Container::from_cgroup);
        if let Some(c) = v2_says.filter(|c| c.id.is_some() || v1.is_empty()) {
            return Some(c);
        }
        v1.iter()
            .map(|(_, p)| Container::from_cgroup(p))
            .find(|c| c.id.is_some())
            .or_else(|| {
                v1.iter()
                    .find(|(c, _)| *c == "name=systemd")
                    .map(|(_, p)| Container::from_cgroup(p))
            })
            .or_else(|| v2.map(Container::from_cgroup))
    }
}

/// The container a live process runs in (None when it is gone).
pub(crate) fn proc_container(pid: u32) -> Option<Container> {
    let text = std::fs::read_to_string(super::procfs::path(format_args!("{pid}/cgroup"))).ok()?;
    Container::from_proc_cgroup(&text)
}

/// cgroup id (the directory's inode in the v2 hierarchy) -> path, for
/// every cgroup under `root`.  A walk of the whole tree: run it off the
/// event loop.
pub(crate) fn walk_cgroups(root: &Path) -> HashMap<u64, String> {
    let mut by_id = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let rel = Path::new("/").join(dir.strip_prefix(root).unwrap_or(Path::new("")));
        by_id.insert(meta.ino(), rel.to_string_lossy().into_owned());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    by_id
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts).
pub(crate) fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
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
    fn hybrid_hosts_keep_containers_in_v1() {
        let text = format!(
            "12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
        );
        let c = Container::from_proc_cgroup(&text).unwrap();
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(c.cgroup, format!("/docker/{ID}"));
        // A plain service on a hybrid host: the systemd path.
        let c = Container::from_proc_cgroup(
            "4:memory:/\n1:name=systemd:/system.slice/sshd.service\n0::/\n",
        )
        .unwrap();
        assert_eq!(
            (c.cgroup.as_str(), c.id),
            ("/system.slice/sshd.service", None)
        );
        // cgroup v2 only.
        let c =
            Container::from_proc_cgroup(&format!("0::/system.slice/docker-{ID}.scope\n")).unwrap();
        assert_eq!(c.runtime, Some("docker"));
        assert!(Container::from_proc_cgroup("garbage").is_none());
    }

    #[test]
    fn our_own_process() {
        let c = proc_container(std::process::id()).expect("a live process has a cgroup");
        assert!(c.cgroup.starts_with('/'));
        assert!(cgroup2_root().is_some_and(|p| p.is_dir()));
    }
}
