//! The pod of a reset's owner, from the container runtime's config.json
//! annotations: a real podman container, started with the annotations
//! CRI-O and podman write for Kubernetes pods.

use std::{
    net::TcpStream,
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

/// A server in a real podman container accepts a connection after
/// rsttrace started; the test's client aborts it.  The reset the server
/// receives names the container podman reports and its pod, and its
/// owner comes from the accept hook (`socket`), not from a /proc scan:
/// the accepting process is not the test's.
#[test]
fn pod_namespace_and_name_from_the_runtime_config() {
    busybox_image();
    let ns = Netns::new();
    let p = port(80);
    let mut t = Tracer::start(&ns, &[]);
    // sleep feeds the server's stdin, so it keeps the connection open.
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
        &format!("sleep 60 | nc -l -p {p}"),
    ]))
    .trim()
    .to_string();
    let _container = Container(id.clone());
    assert_eq!(id.len(), 64, "{id}");
    let client = wait_for("the container's server", Duration::from_secs(30), || {
        ns.run(move || TcpStream::connect(("127.0.0.1", p)))
            .map_err(|e| e.to_string())
    });
    // The server has accepted: ss names the process holding its socket.
    wait_for("nc's accept", Duration::from_secs(10), || {
        let filter = format!("( sport = :{p} )");
        let out = run_ok(Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            "ss",
            "-Htnp",
            "state",
            "established",
            &filter,
        ]));
        if out.contains("\"nc\"") {
            Ok(())
        } else {
            Err(out)
        }
    });
    set_linger(&client, true, 0);
    drop(client);
    let got = t.expect("the reset the container's server received", |v| {
        v["direction"] == "received" && v["cause"] == "peer_reset" && v["local_port"] == p
    });
    assert_eq!(got["comm"], "nc", "{got}");
    assert_eq!(got["owner_source"], "socket", "{got}");
    assert_ne!(got["pid"], u64::from(std::process::id()), "{got}");
    assert_eq!(got["container_id"], id.as_str(), "{got}");
    assert_eq!(got["container_runtime"], "podman", "{got}");
    assert_eq!(got["pod_namespace"], "shop", "{got}");
    assert_eq!(got["pod_name"], "web-7d4b9", "{got}");
}
