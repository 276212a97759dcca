//! The owner's container, from a real cgroup laid out as container
//! runtimes lay them out.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{port, Netns, Tracer};
use crate::peer::Cmd;

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` or, on hybrid hosts,
/// `/sys/fs/cgroup/unified`).
fn cgroup2_root() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2")
                .then(|| PathBuf::from(pre.split_whitespace().nth(4).unwrap()))
        })
        .expect("a cgroup2 mount")
}

/// A cgroup subtree the test creates and removes.
struct Cgroup {
    top: PathBuf,
    leaf: PathBuf,
}

impl Cgroup {
    fn new(relative: &str) -> Self {
        let top = cgroup2_root().join(format!("rsttrace-test-{}", std::process::id()));
        let leaf = top.join(relative);
        std::fs::create_dir_all(&leaf).expect("create cgroup");
        Cgroup { top, leaf }
    }

    fn enter(&self, pid: u32) {
        std::fs::write(self.leaf.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Children first; the processes are gone by now.
        let mut dirs = vec![];
        let mut stack = vec![self.top.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn kubernetes_pod_and_container_of_the_owner() {
    const ID: &str = "5d2a3f0c9b8e7d6c5b4a39281706f5e4d3c2b1a0918273645f6e7d8c9b0a1f2e";
    const POD: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    let relative = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
        POD.replace('-', "_")
    );
    let ns = Netns::new();
    let mut t = Tracer::start(&ns, &[]);
    let mut client = ns.peer();
    let cgroup = Cgroup::new(&relative);
    cgroup.enter(client.pid());
    let p = port(30);
    assert_eq!(
        client.ask(Cmd::connect("c", "127.0.0.1", p)),
        "err ECONNREFUSED"
    );
    let ev = t.expect("the refused client", |v| v["cause"] == "connection_refused");
    assert_eq!(ev["pid"], u64::from(client.pid()));
    assert_eq!(ev["container_id"], ID);
    assert_eq!(ev["container_runtime"], "containerd");
    assert_eq!(ev["pod_uid"], POD);
    assert!(
        ev["cgroup"].as_str().unwrap().ends_with(&relative),
        "{}",
        ev["cgroup"]
    );
    // The closed port's side has no owner, hence no container.
    let sent = t.expect("no_listener", |v| v["cause"] == "no_listener");
    assert_eq!(sent["container_id"], Value::Null);
    drop(client);
    drop(cgroup);
}
