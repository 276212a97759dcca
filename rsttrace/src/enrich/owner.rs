//! Socket inode -> owning process, from `/proc/<pid>/fd`.
//!
//! The eBPF side registers owners at connect/listen/accept; this index
//! covers sockets that existed before rsttrace started (and kernels where
//! the accept hook is unavailable).  It is built once at start-up and
//! rebuilt on a miss, at most once per `min_rescan`.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcOwner {
    pub pid: u32,
    pub comm: String,
}

pub struct OwnerIndex {
    proc_root: PathBuf,
    by_inode: HashMap<u64, ProcOwner>,
    /// Inodes a scan did not find, so a storm of them costs one scan.
    unknown: HashSet<u64>,
    last_scan: Option<Instant>,
    min_rescan: Duration,
    pub scans: u64,
}

impl OwnerIndex {
    pub fn new(min_rescan: Duration) -> Self {
        OwnerIndex {
            proc_root: "/proc".into(),
            by_inode: HashMap::new(),
            unknown: HashSet::new(),
            last_scan: None,
            min_rescan,
            scans: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    /// Rebuilds the index from every process's fd table.
    pub fn scan(&mut self) {
        self.scans += 1;
        self.last_scan = Some(Instant::now());
        self.unknown.clear();
        let mut by_inode = HashMap::with_capacity(self.by_inode.len());
        let Ok(procs) = fs::read_dir(&self.proc_root) else {
            return;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let mut comm: Option<String> = None;
            for fd in fds.flatten() {
                let Ok(target) = fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) else {
                    continue;
                };
                let comm = comm.get_or_insert_with(|| {
                    fs::read_to_string(entry.path().join("comm"))
                        .map(|c| c.trim_end().to_string())
                        .unwrap_or_default()
                });
                // Sockets shared across fork(): keep the first (lowest) pid,
                // usually the parent that created them.
                by_inode.entry(inode).or_insert_with(|| ProcOwner {
                    pid,
                    comm: comm.clone(),
                });
            }
        }
        self.by_inode = by_inode;
    }

    /// The owner if already indexed (no rescan).
    pub fn peek(&self, inode: u64) -> Option<&ProcOwner> {
        self.by_inode.get(&inode)
    }

    /// The owner of a socket inode, rescanning on a miss when allowed.
    pub fn lookup(&mut self, inode: u64) -> Option<&ProcOwner> {
        if inode == 0 {
            return None;
        }
        if !self.by_inode.contains_key(&inode) && !self.unknown.contains(&inode) {
            let stale = self
                .last_scan
                .is_none_or(|t| t.elapsed() >= self.min_rescan);
            if stale {
                self.scan();
            }
            if !self.by_inode.contains_key(&inode) {
                self.unknown.insert(inode);
            }
        }
        self.by_inode.get(&inode)
    }
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and stat buffer.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        st.st_ino
    }

    #[test]
    fn parses_links() {
        assert_eq!(socket_inode(b"socket:[4026531840]"), Some(4026531840));
        assert_eq!(socket_inode(b"pipe:[12]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
    }

    #[test]
    fn finds_our_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        let mut index = OwnerIndex::new(Duration::from_secs(3600));
        let owner = index.lookup(inode).cloned().expect("own socket found");
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.comm.is_empty());
        assert_eq!(index.scans, 1);
    }

    #[test]
    fn misses_are_rate_limited() {
        let mut index = OwnerIndex::new(Duration::from_secs(3600));
        index.scan();
        assert!(index.lookup(u64::MAX - 1).is_none());
        assert!(index.lookup(u64::MAX - 2).is_none());
        assert_eq!(index.scans, 1, "a miss within min_rescan does not rescan");
        // A socket created after the scan is found once rescans are allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        assert!(index.lookup(inode).is_none());
        index.min_rescan = Duration::ZERO;
        // The inode is now in the miss cache; a scan triggered by another
        // miss clears it.
        assert!(index.lookup(u64::MAX - 3).is_none());
        assert!(index.lookup(inode).is_some());
        assert_eq!(index.lookup(0), None);
    }
}
