//! The pod of a reset's owner, from the container runtime's config.json
//! annotations: a real podman container, started with the annotations
//! CRI-O and podman write for Kubernetes pods.

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    harness::{port, Netns, Tracer},
    real::{run_ok, wait_for, TempDir},
    sockets::set_linger,
};

const IMAGE: &str = "localhost/rsttrace-busybox:test";

/// podman as this machine runs it (see REAL-PEERS.md: runc, cgroupfs,
/// limits within the hard ones).
fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(args);
    c
}

/// An image of busybox-static and its applets, imported offline (images
/// cannot be pulled here).
fn busybox_image() {
    let exists = podman(&["image", "exists", IMAGE])
        .status()
        .expect("podman (run `cargo xtask bootstrap --with-tests`)");
    if exists.success() {
        return;
    }
    let root = TempDir::new("busybox-root");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static");
    let applets = run_ok(Command::new("/bin/busybox").arg("--list"));
    for applet in applets.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = root.join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root.0)
            .arg("--exclude=rootfs.tar")
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    run_ok(podman(&["import"]).arg(&tar).arg(IMAGE));
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn pod_namespace_and_name_from_the_runtime_config() {
    busybox_image();
    let ns = Netns::new();
    let p = port(80);
    let listener = ns.run(move || TcpListener::bind(("127.0.0.1", p)).unwrap());
    let mut t = Tracer::start(&ns, &[]);
    // The container's client holds its connection open (sleep feeds its
    // stdin) until this test resets it.
    let network = format!("ns:{}", ns.path());
    let id = run_ok(&mut podman(&[
        "run",
        "-d",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--network",
        &network,
        "--annotation",
        "io.kubernetes.pod.namespace=shop",
        "--annotation",
        "io.kubernetes.pod.name=web-7d4b9",
        IMAGE,
        "sh",
        "-c",
        &format!("sleep 60 | nc 127.0.0.1 {p}"),
    ]))
    .trim()
    .to_string();
    let _container = Container(id.clone());
    assert_eq!(id.len(), 64, "{id}");
    listener.set_nonblocking(true).unwrap();
    let server = wait_for(
        "the container's connection",
        Duration::from_secs(30),
        || listener.accept().map(|(s, _)| s).map_err(|e| e.to_string()),
    );
    server.set_nonblocking(false).unwrap();
    set_linger(&server, true, 0);
    drop(server);
    let got = t.expect("the reset the container received", |v| {
        v["direction"] == "received" && v["cause"] == "peer_reset"
    });
    assert_eq!(got["comm"], "nc", "{got}");
    assert_eq!(got["container_id"], id.as_str(), "{got}");
    assert_eq!(got["container_runtime"], "podman", "{got}");
    assert_eq!(got["pod_namespace"], "shop", "{got}");
    assert_eq!(got["pod_name"], "web-7d4b9", "{got}");
    drop(t);
}
