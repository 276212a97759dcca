//! Correlation: a reset with the errno the kernel delivers for it, and
//! the two ends of a reset when both are on this host.
//!
//! The kernel reports the errno a local socket gets
//! (`sock:inet_sk_error_report`) right after a received reset or a
//! keepalive timeout, in the same call chain, and on some kernels right
//! *before* the reset of a destroyed socket.  Such resets wait here up to
//! `hold` for their report; reports wait in a short history for the reset
//! that follows them.
//!
//! A reset sent and received on this host (loopback, namespaces,
//! containers) shows up twice: sent by one socket, received by the other,
//! with the addresses reversed.  Each waits up to `hold` for the other,
//! and both records then name the other end.

use std::{
    collections::{hash_map::Entry, HashMap, VecDeque},
    ops::Deref,
    time::{Duration, Instant},
};

use crate::{
    classify::{Cause, Classification, Direction},
    decode::{CapturedReset, ErrorReport, KernelOwner},
    hash::BuildSeededHasher,
    kernel::names::TcpState,
    model::conn::Conn,
    vocab::errno::Errno,
};

/// The other end of a reset, when it is on this host too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OtherEnd {
    pub owner: Option<KernelOwner>,
    pub netns: u32,
    /// The sender's cause (for a received reset).
    pub cause: Option<Cause>,
    /// Paired through address translation: the received side's
    /// connection, which both records' community_id is computed on.
    pub nat_conn: Option<Conn>,
}

/// A reset on its way to output.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub ev: CapturedReset,
    pub class: Classification,
    /// The errno the kernel reported on the socket, and to whom.
    pub delivered: Option<(Errno, Option<KernelOwner>)>,
    pub other_end: Option<OtherEnd>,
}

/// A draft ready for output.  Boxed: a draft is half a kilobyte and
/// passes from the correlator to the pipeline, most of them after being
/// held (a storm holds thousands); a box moves as a pointer.  The boxes
/// come back (`Correlator::recycle`) and are reused, so this is no
/// allocation per reset.
pub(crate) struct Ready(Box<Held>);

impl Deref for Ready {
    type Target = Draft;

    fn deref(&self) -> &Draft {
        &self.0.draft
    }
}

/// Boxes kept for reuse, at most (a storm's 50 ms of resets; more are
/// freed).
const SPARE_BOXES: usize = 16384;

struct Held {
    draft: Draft,
    since: Instant,
    wait_report: bool,
    wait_pair: bool,
    /// A received reset in FIN_WAIT after shutdown(SHUT_RD) may be the
    /// kernel resetting its own socket (TCP_ABORT_ON_DATA follows).
    may_be_local_abort: bool,
}

impl Held {
    fn ready(&self) -> bool {
        !self.wait_report && !self.wait_pair && !self.may_be_local_abort
    }
}

/// One socket: its kernel address and its ports.  The address alone is
/// not enough: a freed socket's slab slot is soon reused by the next
/// connection (a client retrying is the usual case), which has other
/// ports.  Ports rather than addresses, because the socket's own view of
/// an IPv4 peer may be IPv4-mapped where a segment's is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SockKey {
    sk: u64,
    ports: (u16, u16),
}

impl SockKey {
    fn new(sk: u64, conn: &Conn) -> Option<SockKey> {
        (sk != 0).then_some(SockKey {
            sk,
            ports: (conn.local_port, conn.remote_port),
        })
    }

    fn of(d: &Draft) -> Option<SockKey> {
        SockKey::new(d.ev.sk, &d.ev.conn)
    }
}

struct RecentReport {
    sock: SockKey,
    errno: Errno,
    owner: Option<KernelOwner>,
    at: Instant,
}

/// Bound on remembered reports and reset sockets.
const RECENT: usize = 1024;

pub(crate) struct Correlator {
    hold: Duration,
    /// Whether this kernel reports errnos at all (Linux >= 5.14).
    reports: bool,
    /// Held drafts by arrival (id).
    held: HeldQueue,
    /// Held sent resets by the receiver's view of the connection, and
    /// held received resets by their own: the other end looks here.
    sent: EndIndex,
    recv: EndIndex,
    recent: VecDeque<RecentReport>,
    /// Sockets that had a reset recently (a report for them is not a
    /// failure of its own).
    reset_socks: VecDeque<(SockKey, Instant)>,
    /// Boxes for `Ready` and held drafts: the allocations themselves are
    /// what is kept for reuse.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Held>>,
}

impl Correlator {
    pub(crate) fn new(hold: Duration, reports: bool) -> Self {
        Correlator {
            hold,
            reports,
            held: HeldQueue::default(),
            sent: EndIndex::default(),
            recv: EndIndex::default(),
            recent: VecDeque::new(),
            reset_socks: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Takes back the boxes of drafts the pipeline is done with.
    pub(crate) fn recycle(&mut self, ready: &mut Vec<Ready>) {
        let room = SPARE_BOXES.saturating_sub(self.spare.len());
        self.spare.extend(ready.drain(..).take(room).map(|r| r.0));
        ready.clear();
    }

    fn boxed(&mut self, h: Held) -> Box<Held> {
        match self.spare.pop() {
            Some(mut b) => {
                *b = h;
                b
            }
            None => Box::new(h),
        }
    }

    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// A new reset: drafts ready for output go to `out` (this one unless
    /// it waits, and any it completes).
    pub(crate) fn on_reset(&mut self, mut draft: Draft, now: Instant, out: &mut Vec<Ready>) {
        let sock = SockKey::of(&draft);
        if let Some(sock) = sock {
            push_bounded(&mut self.reset_socks, (sock, now));
        }
        let f = draft.ev.facts;
        let (wait_report, may_be_local_abort) = if f.direction == Direction::Received {
            let abort = f.sock.is_some_and(|s| s.rcv_shutdown)
                && matches!(f.state, Some(TcpState::FinWait1 | TcpState::FinWait2));
            (self.reports && !f.dead() && !f.is(TcpState::Close), abort)
        } else {
            // TCP_ABORT_ON_DATA (inferred as data_after_close where the
            // kernel gives no reason).
            if draft.class.cause == Cause::DataAfterClose {
                self.release_local_abort(sock, out);
            }
            draft.delivered = sock.and_then(|s| self.recent_report(s, now));
            let follows = self.reports
                && draft.delivered.is_none()
                && !f.dead()
                && draft.class.cause.errno_follows();
            (follows, false)
        };
        let paired = self.pair(&mut draft, out);
        let held = Held {
            draft,
            since: now,
            wait_report,
            wait_pair: !paired,
            may_be_local_abort,
        };
        self.hold(held, out);
    }

    /// Finds the other end among the held drafts; if found, both learn of
    /// each other.
    fn pair(&mut self, draft: &mut Draft, out: &mut Vec<Ready>) -> bool {
        let received = draft.ev.facts.direction == Direction::Received;
        let (other, conn) = if received {
            (Direction::Sent, draft.ev.conn)
        } else {
            (Direction::Received, draft.ev.conn.reversed())
        };
        let nat = nat_key(draft);
        let index = self.index(other);
        let (id, via_nat) = match take(index, &EndKey::Tuple(conn)) {
            Some(id) => (Some(id), false),
            None => (nat.and_then(|k| take(index, &k)), true),
        };
        let Some(id) = id else {
            return false;
        };
        // Taken by one key, the partner leaves the index by its others.
        let Some(keys) = self.held.get_mut(id).map(|h| end_keys(&h.draft)) else {
            return false;
        };
        self.forget_keys(other, keys, id);
        let h = self.held.get_mut(id).expect("found above");
        let received_conn = if received {
            draft.ev.conn
        } else {
            h.draft.ev.conn
        };
        let nat_conn = via_nat.then_some(received_conn);
        draft.other_end = Some(end_of(&h.draft, received, nat_conn));
        h.draft.other_end = Some(end_of(draft, !received, nat_conn));
        h.wait_pair = false;
        if h.ready() {
            let h = self.held.remove(id).expect("found above");
            out.push(Ready(h));
        }
        true
    }

    /// The held resets of `direction` waiting for their other end, by
    /// the connection as the other end sees it, brought up to date first.
    /// Only a reset of the other direction asks, so in a storm of one
    /// direction (SYNs from a raw socket to a closed port: resets sent,
    /// none received) no reset is ever entered: each would be hashed in
    /// and out again for nothing.
    fn index(&mut self, direction: Direction) -> &mut ByConn {
        let index = match direction {
            Direction::Sent => &mut self.sent,
            Direction::Received => &mut self.recv,
        };
        for (id, h) in self.held.iter_from(index.upto) {
            if h.wait_pair && h.draft.ev.facts.direction == direction {
                for key in end_keys(&h.draft).into_iter().flatten() {
                    index.by_conn.insert(key, id);
                }
            }
        }
        index.upto = self.held.next_id();
        &mut index.by_conn
    }

    fn hold(&mut self, h: Held, out: &mut Vec<Ready>) {
        let ready = h.ready() && !h.wait_pair;
        let b = self.boxed(h);
        if ready {
            out.push(Ready(b));
        } else {
            self.held.push(b);
        }
    }

    /// The received "reset" just before a TCP_ABORT_ON_DATA was the kernel
    /// resetting this same socket: released, marked as such.
    fn release_local_abort(&mut self, sock: Option<SockKey>, out: &mut Vec<Ready>) {
        let Some(sock) = sock else {
            return;
        };
        let found = self
            .held
            .iter()
            .find(|(_, h)| h.may_be_local_abort && SockKey::of(&h.draft) == Some(sock))
            .map(|(id, _)| id);
        if let Some(id) = found {
            let mut h = self.held.remove(id).expect("found above");
            self.forget_conn(&h.draft, id);
            h.draft.class.local_abort();
            out.push(Ready(h));
        }
    }

    fn forget_conn(&mut self, d: &Draft, id: u64) {
        self.forget_keys(d.ev.facts.direction, end_keys(d), id);
    }

    /// Takes `keys` out of the index of `direction` where they still
    /// name the held draft `id`.
    fn forget_keys(&mut self, direction: Direction, keys: [Option<EndKey>; 2], id: u64) {
        let index = match direction {
            Direction::Sent => &mut self.sent,
            Direction::Received => &mut self.recv,
        };
        if id >= index.upto {
            // Never entered.
            return;
        }
        for key in keys.into_iter().flatten() {
            if let Entry::Occupied(e) = index.by_conn.entry(key) {
                if *e.get() == id {
                    e.remove();
                }
            }
        }
    }

    fn recent_report(&self, sock: SockKey, now: Instant) -> Option<(Errno, Option<KernelOwner>)> {
        self.recent
            .iter()
            .rev()
            .find(|r| r.sock == sock && now.duration_since(r.at) < self.hold)
            .map(|r| (r.errno, r.owner))
    }

    /// An errno report.  Returns true when it belongs to no reset (a
    /// connection failure of its own, when it has an errno).
    pub(crate) fn on_report(
        &mut self,
        er: &ErrorReport,
        now: Instant,
        out: &mut Vec<Ready>,
    ) -> bool {
        let Some(errno) = er.errno else {
            // tcp_disconnect() reports with no error.
            return false;
        };
        let Some(sock) = SockKey::new(er.sk, &er.conn) else {
            return true;
        };
        let found = self
            .held
            .iter_mut()
            .find(|(_, h)| SockKey::of(&h.draft) == Some(sock) && h.draft.delivered.is_none());
        if let Some((id, h)) = found {
            h.draft.delivered = Some((errno, er.owner));
            h.wait_report = false;
            if h.ready() {
                let h = self.held.remove(id).expect("found above");
                self.forget_conn(&h.draft, id);
                out.push(Ready(h));
            }
            return false;
        }
        push_bounded(
            &mut self.recent,
            RecentReport {
                sock,
                errno,
                owner: er.owner,
                at: now,
            },
        );
        !self
            .reset_socks
            .iter()
            .rev()
            .take_while(|(_, at)| now.duration_since(*at) < Duration::from_secs(1))
            .any(|(s, _)| *s == sock)
    }

    /// Releases held resets that are complete or waited `hold` (all of
    /// them with `all`), oldest first.
    pub(crate) fn release_due(&mut self, now: Instant, all: bool, out: &mut Vec<Ready>) {
        while let Some((id, h)) = self.held.first() {
            if !all && !h.ready() && now.duration_since(h.since) < self.hold {
                break;
            }
            let h = self.held.remove(id).expect("first exists");
            self.forget_conn(&h.draft, id);
            out.push(Ready(h));
        }
    }
}

/// The connection as the other end of `d` sees it: the key its held
/// draft is found by.
fn other_view(d: &Draft) -> Conn {
    match d.ev.facts.direction {
        Direction::Sent => d.ev.conn.reversed(),
        Direction::Received => d.ev.conn,
    }
}

/// How a reset's other end is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EndKey {
    /// The connection as the other end sees it.
    Tuple(Conn),
    /// Through address translation on this host (a published port DNATed
    /// to a backend namespace) the tuples differ; what survives is the
    /// end that was reset (the client's address and port) and the
    /// sequence number its kernel accepts the reset by.
    Nat {
        addr: std::net::IpAddr,
        port: u16,
        seq: u32,
    },
}

/// Every key a held draft is entered by: the connection as its other
/// end sees it, and its NAT key where it has one.
fn end_keys(d: &Draft) -> [Option<EndKey>; 2] {
    [Some(EndKey::Tuple(other_view(d))), nat_key(d)]
}

/// The `EndKey::Nat` of a draft: for a sent reset, from the segment it
/// answers (a reset to a SYN acks its sequence number plus one, one to
/// an ACK carries that ACK as its own sequence number); for a received
/// one, what its socket accepts a reset by (snd_nxt in SYN_SENT, rcv_nxt
/// otherwise).
fn nat_key(d: &Draft) -> Option<EndKey> {
    use crate::model::conn::tcp_flags::{ACK, SYN};
    let (c, f) = (&d.ev.conn, &d.ev.facts);
    let (addr, port, seq) = match f.direction {
        Direction::Sent => {
            let s = f.segment?;
            let seq = if s.has(ACK) {
                s.ack
            } else if s.has(SYN) {
                s.seq.wrapping_add(1)
            } else {
                return None;
            };
            (c.remote, c.remote_port, seq)
        }
        Direction::Received => {
            let sock = f.sock.as_ref()?;
            let seq = if f.is(TcpState::SynSent) {
                sock.snd_nxt?
            } else {
                sock.rcv_nxt?
            };
            (c.local, c.local_port, seq)
        }
    };
    Some(EndKey::Nat { addr, port, seq })
}

/// Held drafts' ids by the keys they are entered by (seeded: peers
/// choose the keys).
type ByConn = HashMap<EndKey, u64, BuildSeededHasher>;

/// Held drafts of one direction that wait for their other end, by
/// `EndKey`.
#[derive(Default)]
struct EndIndex {
    by_conn: ByConn,
    /// Held drafts with smaller ids have been entered (if they wait).
    upto: u64,
}

/// Held drafts in arrival order, each with an id that is never reused:
/// a deque of slots, the oldest first, emptied at the front as drafts
/// leave.  In a storm every sent reset waits here for a partner that never
/// comes; a map of ids moved whole drafts around on each removal.
#[derive(Default)]
struct HeldQueue {
    /// The id of `slots[0]`.
    first_id: u64,
    /// None: left already (out of order).
    slots: VecDeque<Option<Box<Held>>>,
    live: usize,
}

impl HeldQueue {
    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn push(&mut self, h: Box<Held>) {
        self.slots.push_back(Some(h));
        self.live += 1;
    }

    /// The id the next draft will get.
    fn next_id(&self) -> u64 {
        self.first_id + self.slots.len() as u64
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Held> {
        let at = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        self.slots.get_mut(at)?.as_deref_mut()
    }

    fn remove(&mut self, id: u64) -> Option<Box<Held>> {
        let at = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        let h = self.slots.get_mut(at)?.take()?;
        self.live -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first_id += 1;
        }
        Some(h)
    }

    /// The oldest held draft (the front slot is never empty).
    fn first(&self) -> Option<(u64, &Held)> {
        Some((self.first_id, self.slots.front()?.as_deref()?))
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Held)> {
        (self.first_id..)
            .zip(&self.slots)
            .filter_map(|(id, h)| Some((id, h.as_deref()?)))
    }

    /// From id `from` on.
    fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, &Held)> {
        let from = from.max(self.first_id);
        let at = usize::try_from(from - self.first_id)
            .map_or(self.slots.len(), |at| at.min(self.slots.len()));
        (from..)
            .zip(self.slots.range(at..))
            .filter_map(|(id, h)| Some((id, h.as_deref()?)))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Held)> {
        (self.first_id..)
            .zip(&mut self.slots)
            .filter_map(|(id, h)| Some((id, h.as_deref_mut()?)))
    }
}

/// What `d` tells the other end about itself.
fn end_of(d: &Draft, sender: bool, nat_conn: Option<Conn>) -> OtherEnd {
    OtherEnd {
        owner: d.ev.owner,
        netns: d.ev.netns,
        cause: sender.then_some(d.class.cause),
        nat_conn,
    }
}

/// `map.remove(conn)`, without hashing `conn` when there is nothing.
fn take(map: &mut ByConn, conn: &EndKey) -> Option<u64> {
    if map.is_empty() {
        None
    } else {
        map.remove(conn)
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() >= RECENT {
        q.pop_front();
    }
    q.push_back(v);
}

#[cfg(test)]
#[path = "correlate_tests.rs"]
mod tests;
