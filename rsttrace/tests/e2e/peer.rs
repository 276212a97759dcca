//! Peers: this test binary re-executed (see `harness::Peer`) so that the
//! two ends of a connection belong to different processes, in different
//! network namespaces.  A peer runs the commands of `cmd` over named
//! sockets, one command per stdin line, one `PEER <answer>` per stdout line.

mod cmd;

pub(crate) use cmd::{round_trip, Cmd, TcpOpt};

use std::{
    collections::HashMap,
    io::{BufRead, Write},
    mem::MaybeUninit,
    net::{Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::{
    raw::Raw,
    sockets::{errno_name, setsockopt},
};

fn say(msg: &str) {
    // libtest may have printed `test peer_entry ... ` on this line.
    println!("PEER {msg}");
    std::io::stdout().flush().unwrap();
}

/// IPPROTO_MPTCP.
const MPTCP: i32 = 262;

/// connect() as clients with a connect timeout do it (Python's
/// `settimeout`, curl, Go): non-blocking, poll for the outcome, then
/// SO_ERROR.  An error the kernel only kept as the socket's soft error
/// comes back at once this way; a blocking connect() waits for the next
/// retransmission instead.
fn connect_poll(s: &Socket, a: &SocketAddr) -> std::io::Result<()> {
    s.set_nonblocking(true)?;
    match s.connect(&(*a).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let mut pfd = libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
            if n != 1 {
                return Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
            if let Some(e) = s.take_error()? {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    s.set_nonblocking(false)
}

fn result(r: std::io::Result<String>) -> String {
    match r {
        Ok(s) => s,
        Err(e) => format!("err {}", errno_name(&e)),
    }
}

/// The answer of a command that succeeded with nothing to say.
fn ok(_: ()) -> String {
    "ok".into()
}

pub(crate) fn main() -> ! {
    if let Err(e) = cmd::check_round_trip() {
        say(&format!("broken protocol: {e}"));
        std::process::exit(1);
    }
    let mut peer = State::default();
    say("ready");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line.trim().is_empty() {
            continue;
        }
        let answer = match line.parse() {
            Ok(Cmd::Exit) => break,
            Ok(cmd) => peer.run(cmd),
            Err(e) => format!("bad command `{line}`: {e}"),
        };
        say(&answer);
    }
    std::process::exit(0)
}

/// What a peer holds between commands.
#[derive(Default)]
struct State {
    socks: HashMap<String, Socket>,
    /// Multicast groups joined: members while their socket lives.
    groups: Vec<UdpSocket>,
    /// TCP_SYNCNT for later connects.
    syncnt: Option<i32>,
    raw: Option<Raw>,
    /// MPTCP for later sockets.
    mptcp: bool,
}

impl State {
    /// Runs one command (not `Exit`: the caller stops there); the answer.
    fn run(&mut self, cmd: Cmd) -> String {
        match cmd {
            Cmd::Listen {
                name,
                addr,
                backlog,
            } => self.listen(name, addr, backlog.unwrap_or(16)),
            Cmd::Accept { listener, name } => self.accept(&listener, name),
            Cmd::Connect {
                name,
                addr,
                local_port,
            } => self.connect(name, addr, local_port),
            Cmd::ConnectPoll { name, addr } => self.connect_poll(name, addr),
            Cmd::Send { name, bytes } => send(self.sock(&name), bytes),
            Cmd::Fill { name } => fill(self.sock(&name)),
            Cmd::Recv { name } => recv(self.sock(&name)),
            Cmd::Shutdown { name, how } => result(self.sock(&name).shutdown(how).map(ok)),
            Cmd::Close { name } => self.close(&name),
            Cmd::Linger { name, secs } => {
                let linger = secs.map(Duration::from_secs);
                result(self.sock(&name).set_linger(linger).map(ok))
            }
            Cmd::Keepalive {
                name,
                idle,
                interval,
                retries,
            } => keepalive(self.sock(&name), idle, interval, retries),
            Cmd::Repair { name } => self.tcp_option(&name, libc::TCP_REPAIR, 1),
            Cmd::Unspec { name } => result(unspec(self.sock(&name)).map(ok)),
            Cmd::TcpOpt { name, opt, value } => self.tcp_option(&name, opt.number(), value),
            Cmd::SynCnt(n) => {
                self.syncnt = Some(n);
                "ok".into()
            }
            Cmd::Mjoin { group, ifname } => self.mjoin(group, &ifname),
            Cmd::Mptcp => {
                self.mptcp = true;
                "ok".into()
            }
            Cmd::Raw => {
                self.raw();
                "ok".into()
            }
            Cmd::RawSend(seg) => {
                self.raw().send(&seg);
                "ok".into()
            }
            Cmd::RawWait {
                sport,
                dport,
                flags,
            } => self.raw_wait(sport, dport, flags),
            Cmd::Pid => std::process::id().to_string(),
            Cmd::Exit => unreachable!("main stops at exit"),
        }
    }

    fn sock(&self, name: &str) -> &Socket {
        self.socks
            .get(name)
            .unwrap_or_else(|| panic!("no socket {name}"))
    }

    fn raw(&mut self) -> &Raw {
        self.raw.get_or_insert_with(Raw::new)
    }

    fn new_socket(&self, a: &SocketAddr) -> Socket {
        let proto = if self.mptcp {
            Protocol::from(MPTCP)
        } else {
            Protocol::TCP
        };
        Socket::new(Domain::for_address(*a), Type::STREAM, Some(proto)).expect("socket")
    }

    fn listen(&mut self, name: String, a: SocketAddr, backlog: i32) -> String {
        let s = self.new_socket(&a);
        s.set_reuse_address(true).unwrap();
        s.bind(&a.into()).expect("bind");
        s.listen(backlog).expect("listen");
        self.socks.insert(name, s);
        "ok".into()
    }

    /// Answers the client's port.
    fn accept(&mut self, listener: &str, name: String) -> String {
        let (s, peer) = self.sock(listener).accept().expect("accept");
        let port = peer.as_socket().map_or(0, |p| p.port());
        self.socks.insert(name, s);
        format!("ok {port}")
    }

    /// Answers the local port.
    fn connect(&mut self, name: String, a: SocketAddr, local_port: Option<u16>) -> String {
        let s = self.new_socket(&a);
        if let Some(n) = self.syncnt {
            setsockopt(&s, libc::IPPROTO_TCP, libc::TCP_SYNCNT, n).unwrap();
        }
        if let Some(port) = local_port {
            s.set_reuse_address(true).unwrap();
            let any = if a.is_ipv4() { "0.0.0.0" } else { "::" };
            let local = SocketAddr::new(any.parse().unwrap(), port);
            s.bind(&local.into()).expect("bind local port");
        }
        // A blocking connect() bounded by SO_SNDTIMEO: it returns the
        // socket's error itself (a non-blocking connect reads it back with
        // SO_ERROR after poll, which can find it gone).
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = s.connect(&a.into());
        s.set_write_timeout(None).unwrap();
        let r = r.map(|()| format!("ok {}", local_port_of(&s)));
        self.socks.insert(name, s);
        result(r)
    }

    /// Answers the local port.
    fn connect_poll(&mut self, name: String, a: SocketAddr) -> String {
        let s = self.new_socket(&a);
        // As such a client does, the socket is closed on failure: the
        // kernel's later retries, and their reports, never come.
        let r = connect_poll(&s, &a).map(|()| {
            let port = local_port_of(&s);
            self.socks.insert(name, s);
            format!("ok {port}")
        });
        result(r)
    }

    fn close(&mut self, name: &str) -> String {
        self.socks.remove(name);
        "ok".into()
    }

    /// Answers the segment seen.
    fn raw_wait(&mut self, sport: Option<u16>, dport: u16, flags: u8) -> String {
        match self.raw().wait(sport.unwrap_or(0), dport, flags) {
            Some(seen) => format!("ok {seen}"),
            None => "err timeout".into(),
        }
    }

    fn tcp_option(&self, name: &str, opt: i32, value: i32) -> String {
        result(setsockopt(self.sock(name), libc::IPPROTO_TCP, opt, value).map(ok))
    }

    /// Joins `group` on interface `ifname`: the kernel sends a multicast
    /// listener report at once.
    fn mjoin(&mut self, group: Ipv6Addr, ifname: &str) -> String {
        let ifname = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: a NUL-terminated interface name.
        let index = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        let s = UdpSocket::bind("[::]:0").expect("udp6");
        s.join_multicast_v6(&group, index).expect("join");
        self.groups.push(s);
        "ok".into()
    }
}

fn local_port_of(s: &Socket) -> u16 {
    s.local_addr().unwrap().as_socket().unwrap().port()
}

fn send(mut s: &Socket, bytes: usize) -> String {
    result(s.write(&vec![b'x'; bytes]).map(|n| format!("ok {n}")))
}

/// Writes until the peer's window and our buffer are full.
fn fill(mut s: &Socket) -> String {
    s.set_nonblocking(true).unwrap();
    let chunk = vec![b'y'; 65536];
    let mut total = 0usize;
    loop {
        match s.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    format!("ok {total}")
}

fn recv(s: &Socket) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    result(s.recv(&mut buf).map(|n| format!("read {n}")))
}

fn keepalive(s: &Socket, idle: u64, interval: u64, retries: u32) -> String {
    let ka = TcpKeepalive::new()
        .with_time(Duration::from_secs(idle))
        .with_interval(Duration::from_secs(interval))
        .with_retries(retries);
    result(s.set_tcp_keepalive(&ka).map(ok))
}

/// connect(AF_UNSPEC): disconnect without closing.
fn unspec(s: &Socket) -> std::io::Result<()> {
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: an open socket and a sockaddr of the size given.
    let rc = unsafe {
        libc::connect(
            s.as_raw_fd(),
            &sa,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
