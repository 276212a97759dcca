//! A container's Kubernetes pod, from the OCI runtime config the node's
//! container runtime wrote for it: no API server needed.  CRI-O and
//! podman keep `io.kubernetes.pod.namespace` / `io.kubernetes.pod.name`
//! in `overlay-containers/<id>/userdata/config.json`; containerd keeps
//! `io.kubernetes.cri.sandbox-namespace` / `-name` in its task bundle.

use std::path::PathBuf;

use super::container::Container;

/// Where runtimes keep a container's config.json, by container id.
fn candidates(id: &str) -> Vec<PathBuf> {
    let mut paths = vec![
        // podman and CRI-O (graph root), then CRI-O's run root.
        PathBuf::from(format!(
            "/var/lib/containers/storage/overlay-containers/{id}/userdata/config.json"
        )),
        PathBuf::from(format!(
            "/run/containers/storage/overlay-containers/{id}/userdata/config.json"
        )),
    ];
    // containerd: one directory per namespace (k8s.io, moby, ...).
    if let Ok(namespaces) = std::fs::read_dir("/run/containerd/io.containerd.runtime.v2.task") {
        for ns in namespaces.flatten() {
            paths.push(ns.path().join(id).join("config.json"));
        }
    }
    paths
}

const NAMESPACE_KEYS: [&str; 2] = [
    "io.kubernetes.pod.namespace",
    "io.kubernetes.cri.sandbox-namespace",
];
const NAME_KEYS: [&str; 2] = ["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"];

/// Fills in the pod's namespace and name when the runtime recorded them.
pub(crate) fn annotate(c: &mut Container) {
    let Some(id) = c.id.as_deref() else {
        return;
    };
    let Some(text) = candidates(id)
        .into_iter()
        .find_map(|p| std::fs::read(p).ok())
    else {
        return;
    };
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return;
    };
    let annotations = &config["annotations"];
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| annotations[*k].as_str())
            .map(str::to_string)
    };
    c.pod_namespace = first(&NAMESPACE_KEYS);
    c.pod_name = first(&NAME_KEYS);
}
