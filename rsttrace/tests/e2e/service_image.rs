//! The OCI image `cargo xtask dist` builds (target/dist/), loaded by podman
//! and run the way deploy/daemonset.yaml runs it: its capability set, the
//! host's PID and network namespaces, its security settings, mounts and
//! arguments, each translated from the manifest to podman's flag (a
//! setting this file cannot translate fails the test).

use std::{
    collections::BTreeSet,
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use serde::Deserialize;
use serde_yaml::Value;

use crate::{
    harness::{pid, port, Netns, Tracer},
    real::{free_port, http_get, repo, run_ok, wait_for, TempDir},
};

/// podman as this machine runs it (REAL-PEERS.md: runc, cgroupfs, limits
/// within the hard ones).
fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(args);
    c
}

fn daemonset_container() -> (Value, Value) {
    let text = std::fs::read_to_string(repo().join("deploy/daemonset.yaml")).unwrap();
    let ds = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("YAML document"))
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    let pod = ds["spec"]["template"]["spec"].clone();
    let container = pod["containers"][0].clone();
    (pod, container)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str().map(String::from))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// `podman run` flags for the pod's and container's settings.  Host paths
/// that do not exist here are replaced by empty directories under
/// `empty`, as the runtime creates them for hostPath type "".
fn podman_flags(pod: &Value, c: &Value, empty: &TempDir) -> Vec<String> {
    let mut f: Vec<String> = vec![];
    let mut add = |a: &[&str]| f.extend(a.iter().map(|s| s.to_string()));
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    add(&["--pid", "host"]);
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    add(&["--network", "host"]);

    let sc = &c["securityContext"];
    let known: BTreeSet<String> = [
        "privileged",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "runAsUser",
        "runAsNonRoot",
        "capabilities",
        "seccompProfile",
        "appArmorProfile",
        "seLinuxOptions",
    ]
    .map(String::from)
    .into();
    let unknown: Vec<_> = keys(sc).difference(&known).cloned().collect();
    assert!(unknown.is_empty(), "translate {unknown:?} to podman here");
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    if sc["allowPrivilegeEscalation"].as_bool() == Some(false) {
        add(&["--security-opt", "no-new-privileges"]);
    }
    if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
        add(&["--read-only"]);
    }
    let user = sc["runAsUser"].as_u64().expect("runAsUser").to_string();
    add(&["--user", &user]);
    for cap in strings(&sc["capabilities"]["drop"]) {
        add(&["--cap-drop", &cap]);
    }
    for cap in strings(&sc["capabilities"]["add"]) {
        add(&["--cap-add", &cap]);
    }
    assert_eq!(sc["seccompProfile"]["type"].as_str(), Some("Unconfined"));
    add(&["--security-opt", "seccomp=unconfined"]);
    assert_eq!(sc["appArmorProfile"]["type"].as_str(), Some("Unconfined"));
    add(&["--security-opt", "apparmor=unconfined"]);
    // Without SELinux on this machine, podman accepts the label and it
    // has no effect, as on such a node.
    let selinux = sc["seLinuxOptions"]["type"]
        .as_str()
        .expect("an SELinux type");
    add(&["--security-opt", &format!("label=type:{selinux}")]);

    let memory = c["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit");
    let mib = memory.strip_suffix("Mi").expect("a limit in Mi");
    add(&["--memory", &format!("{mib}m")]);

    let volumes = pod["volumes"].as_sequence().expect("volumes");
    for m in c["volumeMounts"].as_sequence().expect("volumeMounts") {
        let name = m["name"].as_str().unwrap();
        let v = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"));
        let host = PathBuf::from(v["hostPath"]["path"].as_str().expect("a hostPath"));
        let source = if host.exists() {
            host
        } else {
            let dir = empty.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        assert_eq!(m["readOnly"].as_bool(), Some(true), "{name}");
        let target = m["mountPath"].as_str().unwrap();
        add(&["-v", &format!("{}:{target}:ro", source.display())]);
    }
    f
}

/// Removes the container and the loaded image however the test ends.
struct Loaded {
    container: String,
    image: String,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        for args in [
            vec!["rm", "-f", "-t", "0", self.container.as_str()],
            vec!["rmi", "-f", self.image.as_str()],
        ] {
            let _ = podman(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn image_archive() -> PathBuf {
    let archive = repo().join(format!(
        "target/dist/rsttrace-{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        archive.is_file(),
        "{} is missing: `cargo xtask test` builds it (or `cargo xtask dist`)",
        archive.display()
    );
    archive
}

/// The DaemonSet's image reports a refused connect with the client's pid
/// (host PID namespace, the host's /proc under /host/proc), and the
/// client, which is in no pod, gets no pod fields.  Its metrics answer,
/// and SIGTERM (what the kubelet sends) ends it cleanly.
#[test]
fn service_image_traces_as_the_daemonset_runs_it() {
    let (pod, c) = daemonset_container();
    let image = c["image"].as_str().expect("an image").to_string();
    let loaded = run_ok(podman(&["load", "-i"]).arg(image_archive()));
    assert!(
        loaded
            .lines()
            .any(|l| l == format!("Loaded image: {image}")),
        "podman load did not give the DaemonSet's image {image}: {loaded}"
    );
    let name = format!("rsttrace-image-test-{}", std::process::id());
    let _cleanup = Loaded {
        container: name.clone(),
        image: image.clone(),
    };

    // The manifest's arguments, with the metrics on a free loopback port
    // instead of every address's 9474.
    let metrics = free_port();
    let mut args = strings(&c["args"]);
    let i = args
        .iter()
        .position(|a| a == "--metrics")
        .expect("--metrics");
    args[i + 1] = format!("127.0.0.1:{metrics}");
    assert!(
        c["command"].is_null(),
        "the image's entry point runs rsttrace"
    );

    let empty = TempDir::new("image-hostpaths");
    let mut run = podman(&["run", "--rm", "--name", &name]);
    run.args([
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ])
    .args(podman_flags(&pod, &c, &empty))
    .arg(&image)
    .args(&args);
    let mut t = Tracer::start_cmd(run);

    let ns = Netns::new();
    let p = port(81);
    let refused = ns.run(move || TcpStream::connect(("127.0.0.1", p)));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    let got = t.expect("the refused connect, from the container", |v| {
        v["direction"] == "received"
            && v["cause"] == "connection_refused"
            && v["remote_port"] == p
            && v["netns"] == ns.inode()
    });
    assert_eq!(got["pid"], pid(), "{got}");
    for key in ["pod_namespace", "pod_name", "pod_uid", "container_id"] {
        assert!(got[key].is_null(), "{key}: {got}");
    }

    let body = wait_for(
        "the container's metrics",
        Duration::from_secs(10),
        || match http_get(metrics, "/metrics") {
            Ok((200, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(
        body.lines().any(|l| l.starts_with("rsttrace_resets_total{")
            && l.contains("cause=\"connection_refused\"")),
        "{body}"
    );

    run_ok(&mut podman(&["stop", "-t", "10", &name]));
    let (status, stderr) = t.stop_collecting_exited(Duration::from_secs(20));
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("resets reported"), "{stderr}");
}
