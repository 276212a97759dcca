//! Who owns a socket, and where that process runs.

use std::sync::Arc;

use super::conn::Comm;

/// How the owner of a socket was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerSource {
    /// Recorded in process context by the eBPF programs (connect, listen,
    /// accept).
    Socket,
    /// A connection not accepted yet: its listener's owner.
    Listener,
    /// Found in `/proc/<pid>/fd` by the socket's inode.
    Procfs,
    /// The connection outlived its socket (time-wait): the process that
    /// owned it before it closed.
    Closed,
}

impl OwnerSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OwnerSource::Socket => "socket",
            OwnerSource::Listener => "listener",
            OwnerSource::Procfs => "procfs",
            OwnerSource::Closed => "closed",
        }
    }
}

/// The container a process runs in, from its cgroup path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Container {
    /// cgroup path, e.g. `/system.slice/nginx.service`.
    pub cgroup: String,
    /// `docker`, `containerd`, `cri-o`, `podman`, `kubernetes` when recognised.
    pub runtime: Option<&'static str>,
    /// Full 64-hex-digit container id.
    pub id: Option<String>,
    /// Kubernetes pod UID (dashed form).
    pub pod_uid: Option<String>,
    /// The pod's namespace and name, from the container runtime's
    /// config.json annotations (no API server involved).
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
}

/// The process that owns the local socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    pub comm: Comm,
    pub source: OwnerSource,
    pub container: Option<Arc<Container>>,
    /// For a connection its owner had closed: whether that process has
    /// exited since (None when not asked or unknown).
    pub exited: Option<bool>,
}

impl Owner {
    pub(crate) fn container(&self) -> Option<&Container> {
        self.container.as_deref()
    }
}
