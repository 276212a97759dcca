//! Peers: this test binary re-executed (see `harness::Peer`) so that the
//! two ends of a connection belong to different processes, in different
//! network namespaces.  A peer runs a tiny command language over named
//! sockets, one command per stdin line, one `PEER <answer>` per stdout line:
//!
//! ```text
//! listen NAME ADDR PORT [BACKLOG]   accept LISTENER NAME    connect NAME ADDR PORT [LOCALPORT]
//! connect-poll NAME ADDR PORT (non-blocking connect, poll, SO_ERROR: a client with a timeout)
//! send NAME BYTES   fill NAME   recv NAME   shutdown NAME rd|wr|rdwr   close NAME
//! linger NAME ON SECS   keepalive NAME IDLE INTVL CNT   repair NAME   unspec NAME
//! tcpopt NAME linger2|defer_accept|syncnt|fastopen VALUE   syncnt N (for later connects)
//! raw   raw-send SRC SPORT DST DPORT FLAGS SEQ ACK [LEN] [tfo] [ts=VAL:ECR]
//! raw-wait SPORT|* DPORT FLAGS   mptcp (MPTCP for later sockets)   pid   exit
//! ```

use std::{
    collections::HashMap,
    io::{BufRead, Read, Write},
    mem::MaybeUninit,
    net::SocketAddr,
    os::fd::AsRawFd,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::{
    raw::{flags, Raw, Segment},
    sockets::{errno_name, setsockopt},
};

fn say(msg: &str) {
    // libtest may have printed `test peer_entry ... ` on this line.
    println!("PEER {msg}");
    std::io::stdout().flush().unwrap();
}

fn addr(ip: &str, port: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("address"), port.parse().expect("port"))
}

/// IPPROTO_MPTCP.
const MPTCP: i32 = 262;

fn new_socket(a: &SocketAddr, mptcp: bool) -> Socket {
    let proto = if mptcp {
        Protocol::from(MPTCP)
    } else {
        Protocol::TCP
    };
    Socket::new(Domain::for_address(*a), Type::STREAM, Some(proto)).expect("socket")
}

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

pub(crate) fn main() -> ! {
    let mut socks: HashMap<String, Socket> = HashMap::new();
    // Multicast groups joined: members while their socket lives.
    let mut groups: Vec<std::net::UdpSocket> = vec![];
    let mut syncnt: Option<i32> = None;
    let mut raw: Option<Raw> = None;
    let mut mptcp = false;
    say("ready");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(&cmd) = w.first() else { continue };
        let answer = match cmd {
            "pid" => std::process::id().to_string(),
            "mptcp" => {
                mptcp = true;
                "ok".into()
            }
            "syncnt" => {
                syncnt = Some(w[1].parse().unwrap());
                "ok".into()
            }
            "exit" => break,
            "listen" => {
                let a = addr(w[2], w[3]);
                let s = new_socket(&a, mptcp);
                s.set_reuse_address(true).unwrap();
                s.bind(&a.into()).expect("bind");
                s.listen(w.get(4).map_or(16, |b| b.parse().unwrap()))
                    .expect("listen");
                socks.insert(w[1].into(), s);
                "ok".into()
            }
            "accept" => {
                let (s, peer) = socks[w[1]].accept().expect("accept");
                let port = peer.as_socket().map_or(0, |p| p.port());
                socks.insert(w[2].into(), s);
                format!("ok {port}")
            }
            "connect" => {
                let a = addr(w[2], w[3]);
                let s = new_socket(&a, mptcp);
                if let Some(n) = syncnt {
                    setsockopt(&s, libc::IPPROTO_TCP, libc::TCP_SYNCNT, n).unwrap();
                }
                if let Some(local) = w.get(4) {
                    s.set_reuse_address(true).unwrap();
                    let any = if a.is_ipv4() { "0.0.0.0" } else { "::" };
                    s.bind(&addr(any, local).into()).expect("bind local port");
                }
                // A blocking connect() bounded by SO_SNDTIMEO: it returns
                // the socket's error itself (a non-blocking connect reads it
                // back with SO_ERROR after poll, which can find it gone).
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let r = s.connect(&a.into());
                s.set_write_timeout(None).unwrap();
                let r = r.map(|()| {
                    let port = s.local_addr().unwrap().as_socket().unwrap().port();
                    format!("ok {port}")
                });
                socks.insert(w[1].into(), s);
                result(r)
            }
            "connect-poll" => {
                let a = addr(w[2], w[3]);
                let s = new_socket(&a, mptcp);
                // As such a client does, the socket is closed on failure:
                // the kernel's later retries, and their reports, never come.
                let r = connect_poll(&s, &a).map(|()| {
                    let port = s.local_addr().unwrap().as_socket().unwrap().port();
                    socks.insert(w[1].into(), s);
                    format!("ok {port}")
                });
                result(r)
            }
            "send" => {
                let data = vec![b'x'; w[2].parse().unwrap()];
                result((&socks[w[1]]).write(&data).map(|n| format!("ok {n}")))
            }
            "fill" => {
                // Write until the peer's window and our buffer are full.
                let s = &socks[w[1]];
                s.set_nonblocking(true).unwrap();
                let chunk = vec![b'y'; 65536];
                let mut total = 0usize;
                loop {
                    match (&*s).write(&chunk) {
                        Ok(n) => total += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("fill: {e}"),
                    }
                }
                s.set_nonblocking(false).unwrap();
                format!("ok {total}")
            }
            "recv" => {
                let s = &socks[w[1]];
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
                result(s.recv(&mut buf).map(|n| format!("read {n}")))
            }
            "drain" => {
                let mut s = &socks[w[1]];
                let mut buf = vec![0u8; 1 << 20];
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut total = 0;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                format!("ok {total}")
            }
            "shutdown" => {
                let how = match w[2] {
                    "rd" => std::net::Shutdown::Read,
                    "wr" => std::net::Shutdown::Write,
                    _ => std::net::Shutdown::Both,
                };
                result(socks[w[1]].shutdown(how).map(|()| "ok".into()))
            }
            "close" => {
                socks.remove(w[1]);
                "ok".into()
            }
            "linger" => {
                let on = w[2] == "1";
                let secs = w[3].parse().unwrap();
                socks[w[1]]
                    .set_linger(on.then(|| Duration::from_secs(secs)))
                    .unwrap();
                "ok".into()
            }
            "keepalive" => {
                let s = &socks[w[1]];
                let secs = |i: usize| Duration::from_secs(w[i].parse().unwrap());
                let ka = TcpKeepalive::new()
                    .with_time(secs(2))
                    .with_interval(secs(3))
                    .with_retries(w[4].parse().unwrap());
                s.set_tcp_keepalive(&ka).unwrap();
                "ok".into()
            }
            "repair" => result(
                setsockopt(&socks[w[1]], libc::IPPROTO_TCP, libc::TCP_REPAIR, 1i32)
                    .map(|()| "ok".into()),
            ),
            "tcpopt" => {
                let opt = match w[2] {
                    "linger2" => libc::TCP_LINGER2,
                    "defer_accept" => libc::TCP_DEFER_ACCEPT,
                    "syncnt" => libc::TCP_SYNCNT,
                    "fastopen" => libc::TCP_FASTOPEN,
                    other => panic!("unknown option {other}"),
                };
                result(
                    setsockopt(
                        &socks[w[1]],
                        libc::IPPROTO_TCP,
                        opt,
                        w[3].parse::<i32>().unwrap(),
                    )
                    .map(|()| "ok".into()),
                )
            }
            "raw" => {
                raw.get_or_insert_with(Raw::new);
                "ok".into()
            }
            "raw-send" => {
                let r = raw.get_or_insert_with(Raw::new);
                let mut seg = Segment {
                    src: w[1].parse().unwrap(),
                    sport: w[2].parse().unwrap(),
                    dst: w[3].parse().unwrap(),
                    dport: w[4].parse().unwrap(),
                    flags: flags(w[5]),
                    seq: w[6].parse().unwrap(),
                    ack: w[7].parse().unwrap(),
                    payload: 0,
                    fastopen: false,
                    timestamps: None,
                };
                for extra in &w[8..] {
                    if *extra == "tfo" {
                        seg.fastopen = true;
                    } else if let Some(ts) = extra.strip_prefix("ts=") {
                        let (v, e) = ts.split_once(':').unwrap();
                        seg.timestamps = Some((v.parse().unwrap(), e.parse().unwrap()));
                    } else {
                        seg.payload = extra.parse().unwrap();
                    }
                }
                r.send(&seg);
                "ok".into()
            }
            "raw-wait" => {
                let r = raw.get_or_insert_with(Raw::new);
                let sport = if w[1] == "*" {
                    0
                } else {
                    w[1].parse().unwrap()
                };
                match r.wait(sport, w[2].parse().unwrap(), flags(w[3])) {
                    Some(s) => format!(
                        "ok {} {} {} {}",
                        s.sport,
                        s.seq,
                        s.ack,
                        s.tsval.map_or("-".to_string(), |t| t.to_string())
                    ),
                    None => "err timeout".into(),
                }
            }
            "mjoin" => {
                // Joins IPv6 multicast group w[1] on interface w[2]: the
                // kernel sends a multicast listener report at once.
                let ifname = std::ffi::CString::new(w[2]).unwrap();
                // SAFETY: a NUL-terminated interface name.
                let index = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
                let group: std::net::Ipv6Addr = w[1].parse().unwrap();
                let s = std::net::UdpSocket::bind("[::]:0").expect("udp6");
                s.join_multicast_v6(&group, index).expect("join");
                groups.push(s);
                "ok".into()
            }
            "unspec" => {
                // connect(AF_UNSPEC): disconnect without closing.
                // SAFETY: a zeroed sockaddr with family AF_UNSPEC.
                let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
                sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
                // SAFETY: an open socket and a sockaddr of the size given.
                let rc = unsafe {
                    libc::connect(
                        socks[w[1]].as_raw_fd(),
                        &sa,
                        std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                    )
                };
                if rc == 0 {
                    "ok".into()
                } else {
                    result(Err(std::io::Error::last_os_error()))
                }
            }
            other => format!("unknown {other}"),
        };
        say(&answer);
    }
    std::process::exit(0)
}
