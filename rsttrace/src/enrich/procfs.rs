//! Where the host's /proc is: `/proc`, or where a container mounted it
//! (`--proc /host/proc`).  With the host's PID namespace shared, the
//! pids the kernel reports are valid there.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Sets the root once, at start-up, before the scanner starts.
pub(crate) fn set_root(root: &Path) {
    let _ = ROOT.set(root.to_path_buf());
}

pub(crate) fn root() -> &'static Path {
    ROOT.get().map_or(Path::new("/proc"), PathBuf::as_path)
}

/// `<root>/<rel>`, e.g. `path(format_args!("{pid}/cgroup"))`.
pub(crate) fn path(rel: impl std::fmt::Display) -> PathBuf {
    root().join(rel.to_string())
}
