//! One owner resolver for every record kind.  The eBPF programs record
//! owners where the running task is the owner (connect, listen, accept);
//! sockets older than rsttrace are found by inode in /proc.  Both get
//! their container from the cgroup.
//!
//! Nothing here blocks: what needs /proc or the cgroup tree is asked of
//! the scanner thread, and the caller holds its record until the answer
//! arrives (`Lookup::Pending`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    bounded::Bounded,
    scanner::{ContainerKey, ProcOwner, ProcessKey, Reply, Request, Scanner},
};
use crate::{
    decode::KernelOwner,
    model::owner::{Container, Owner, OwnerSource},
};

/// An answer now, or later (ask again once the scanner replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    Ready(T),
    Pending,
}

/// Containers remembered per cgroup / per process.
const CONTAINER_CACHE: usize = 4096;
/// Socket inodes a scan did not find, remembered until the next scan.
const UNKNOWN_CACHE: usize = 65536;

pub(crate) struct OwnerResolver {
    scanner: Option<Scanner>,
    by_inode: HashMap<u64, ProcOwner>,
    unknown: Bounded<u64, ()>,
    scan_in_flight: bool,
    last_scan: Option<Instant>,
    min_rescan: Duration,
    by_cgroup: Bounded<ContainerKey, Option<Arc<Container>>>,
    asked: std::collections::HashSet<ContainerKey>,
    /// Whether processes still run, as last checked.
    alive: Bounded<ProcessKey, (bool, Instant)>,
    asked_alive: std::collections::HashSet<ProcessKey>,
    pub scans: u64,
}

/// How long an answer about a process being alive holds.
const ALIVE_FOR: Duration = Duration::from_secs(1);

impl OwnerResolver {
    /// `initial`: a socket index built at start-up.
    pub(crate) fn new(scanner: Option<Scanner>, initial: HashMap<u64, ProcOwner>) -> Self {
        OwnerResolver {
            scanner,
            by_inode: initial,
            unknown: Bounded::new(UNKNOWN_CACHE),
            scan_in_flight: false,
            last_scan: Some(Instant::now()),
            min_rescan: Duration::from_secs(1),
            by_cgroup: Bounded::new(CONTAINER_CACHE),
            asked: Default::default(),
            alive: Bounded::new(CONTAINER_CACHE),
            asked_alive: Default::default(),
            scans: 1,
        }
    }

    pub(crate) fn indexed(&self) -> usize {
        self.by_inode.len()
    }

    /// Where the scanner's replies arrive.
    pub(crate) fn replies(&mut self) -> Option<&mut tokio::sync::mpsc::UnboundedReceiver<Reply>> {
        self.scanner.as_mut().map(|s| &mut s.replies)
    }

    pub(crate) fn ingest(&mut self, reply: Reply) {
        match reply {
            Reply::Sockets(index) => {
                self.by_inode = index;
                self.unknown.clear();
                self.scan_in_flight = false;
                self.last_scan = Some(Instant::now());
                self.scans += 1;
            }
            Reply::Container(key, c) => {
                self.asked.remove(&key);
                self.by_cgroup.insert(key, c);
            }
            Reply::Alive(key, alive) => {
                self.asked_alive.remove(&key);
                self.alive.insert(key, (alive, Instant::now()));
            }
        }
    }

    /// Whether anything asked of the scanner is still unanswered.
    pub(crate) fn busy(&self) -> bool {
        self.scan_in_flight || !self.asked.is_empty() || !self.asked_alive.is_empty()
    }

    /// The owner of a socket: recorded by the programs, else by inode.
    /// `closed`: the owner had closed the connection; say whether it has
    /// exited since.
    pub(crate) fn owner(
        &mut self,
        kernel: Option<&KernelOwner>,
        sock_ino: u64,
        closed: bool,
    ) -> Lookup<Option<Owner>> {
        let Lookup::Ready(owner) = self.owner_only(kernel, sock_ino) else {
            return Lookup::Pending;
        };
        let Some(mut owner) = owner else {
            return Lookup::Ready(None);
        };
        if closed {
            let key = ProcessKey {
                pid: owner.pid,
                start_ns: kernel.map_or(0, |k| k.start_ns),
            };
            match self.exited(key) {
                Lookup::Ready(e) => owner.exited = e,
                Lookup::Pending => return Lookup::Pending,
            }
        }
        Lookup::Ready(Some(owner))
    }

    fn exited(&mut self, key: ProcessKey) -> Lookup<Option<bool>> {
        if let Some(&(alive, at)) = self.alive.get(&key) {
            if at.elapsed() < ALIVE_FOR {
                return Lookup::Ready(Some(!alive));
            }
        }
        if self.asked_alive.contains(&key) {
            return Lookup::Pending;
        }
        if self
            .scanner
            .as_ref()
            .is_some_and(|s| s.ask(Request::Alive(key)))
        {
            self.asked_alive.insert(key);
            return Lookup::Pending;
        }
        Lookup::Ready(None)
    }

    fn owner_only(&mut self, kernel: Option<&KernelOwner>, sock_ino: u64) -> Lookup<Option<Owner>> {
        if let Some(k) = kernel {
            let key = ContainerKey::Cgroup {
                id: k.cgroup_id,
                pid: k.pid,
            };
            let container = if k.cgroup_id == 0 {
                None
            } else {
                match self.container(key) {
                    Lookup::Ready(c) => c,
                    Lookup::Pending => return Lookup::Pending,
                }
            };
            return Lookup::Ready(Some(Owner {
                pid: k.pid,
                comm: k.comm,
                source: k.source(),
                container,
                exited: None,
            }));
        }
        let p = match self.by_inode_lookup(sock_ino) {
            Lookup::Ready(Some(p)) => p,
            Lookup::Ready(None) => return Lookup::Ready(None),
            Lookup::Pending => return Lookup::Pending,
        };
        let key = ContainerKey::Process {
            pid: p.pid,
            start: p.start,
        };
        match self.container(key) {
            Lookup::Ready(container) => Lookup::Ready(Some(Owner {
                pid: p.pid,
                comm: p.comm,
                source: OwnerSource::Procfs,
                container,
                exited: None,
            })),
            Lookup::Pending => Lookup::Pending,
        }
    }

    /// The owner from what is known now, without asking the scanner.
    pub(crate) fn owner_now(&self, kernel: Option<&KernelOwner>, ino: u64) -> Option<Owner> {
        if let Some(k) = kernel {
            return Some(Owner {
                pid: k.pid,
                comm: k.comm,
                source: k.source(),
                container: None,
                exited: None,
            });
        }
        self.peek(ino).map(|p| Owner {
            pid: p.pid,
            comm: p.comm,
            source: OwnerSource::Procfs,
            container: None,
            exited: None,
        })
    }

    /// The process holding socket `inode`, if the index knows it; no scan.
    pub(crate) fn peek(&self, inode: u64) -> Option<ProcOwner> {
        self.by_inode.get(&inode).copied()
    }

    fn by_inode_lookup(&mut self, inode: u64) -> Lookup<Option<ProcOwner>> {
        if inode == 0 {
            return Lookup::Ready(None);
        }
        if let Some(p) = self.by_inode.get(&inode) {
            return Lookup::Ready(Some(*p));
        }
        if self.unknown.contains(&inode) {
            return Lookup::Ready(None);
        }
        if self.scan_in_flight {
            return Lookup::Pending;
        }
        let due = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= self.min_rescan);
        if due
            && self
                .scanner
                .as_ref()
                .is_some_and(|s| s.ask(Request::Sockets))
        {
            self.scan_in_flight = true;
            return Lookup::Pending;
        }
        // Scanned moments ago (a storm of unknown inodes costs one scan).
        self.unknown.insert(inode, ());
        Lookup::Ready(None)
    }

    fn container(&mut self, key: ContainerKey) -> Lookup<Option<Arc<Container>>> {
        if let Some(c) = self.by_cgroup.get(&key) {
            return Lookup::Ready(c.clone());
        }
        if self.asked.contains(&key) {
            return Lookup::Pending;
        }
        if self
            .scanner
            .as_ref()
            .is_some_and(|s| s.ask(Request::Container(key)))
        {
            self.asked.insert(key);
            return Lookup::Pending;
        }
        Lookup::Ready(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{enrich::scanner::scan_sockets, model::conn::Comm};

    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        // SAFETY: a zeroed stat buffer and a valid fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        st.st_ino
    }

    async fn settle(r: &mut OwnerResolver) {
        while r.busy() {
            let reply = r.replies().unwrap().recv().await.unwrap();
            r.ingest(reply);
        }
    }

    #[tokio::test]
    async fn procfs_owner_with_its_container() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ino = inode_of(&listener);
        let mut r = OwnerResolver::new(Some(Scanner::start().unwrap()), scan_sockets());
        assert_eq!(
            r.owner(None, ino, false),
            Lookup::Pending,
            "the container is looked up"
        );
        settle(&mut r).await;
        let Lookup::Ready(Some(o)) = r.owner(None, ino, false) else {
            panic!("no owner");
        };
        assert_eq!((o.pid, o.source), (std::process::id(), OwnerSource::Procfs));
        assert!(o.container.is_some());
        assert_eq!(r.owner(None, 0, false), Lookup::Ready(None));
    }

    #[tokio::test]
    async fn a_socket_newer_than_the_index_triggers_one_scan() {
        let mut r = OwnerResolver::new(Some(Scanner::start().unwrap()), HashMap::new());
        r.min_rescan = Duration::ZERO;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ino = inode_of(&listener);
        assert_eq!(r.owner(None, ino, false), Lookup::Pending);
        assert_eq!(
            r.owner(None, u64::MAX - 1, false),
            Lookup::Pending,
            "one scan at a time"
        );
        settle(&mut r).await;
        assert_eq!(r.scans, 2);
        assert!(r.peek(ino).is_some());
        // Rescans are rate-limited: a miss right after a scan is remembered.
        r.min_rescan = Duration::from_secs(3600);
        assert_eq!(r.owner(None, u64::MAX - 2, false), Lookup::Ready(None));
        assert_eq!(r.scans, 2);
    }

    #[tokio::test]
    async fn kernel_owners_need_no_scan() {
        let mut r = OwnerResolver::new(Some(Scanner::start().unwrap()), HashMap::new());
        let k = KernelOwner {
            pid: 42,
            comm: Comm::from_str_lossy("nginx"),
            cgroup_id: 0,
            start_ns: 0,
            from_listener: true,
            closed: false,
        };
        let Lookup::Ready(Some(o)) = r.owner(Some(&k), 0, false) else {
            panic!()
        };
        assert_eq!(
            (o.pid, o.comm.as_str(), o.source),
            (42, "nginx", OwnerSource::Listener)
        );
        assert!(!r.busy());
    }
}
