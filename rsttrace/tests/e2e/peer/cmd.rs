//! The peers' command language, typed: `Cmd` is what a test asks of a
//! peer, its `Display` the line the harness writes, its `FromStr` what the
//! peer reads back.  One command per line, words separated by spaces:
//!
//! ```text
//! listen NAME ADDR PORT [BACKLOG]   accept LISTENER NAME    connect NAME ADDR PORT [LOCALPORT]
//! connect-poll NAME ADDR PORT (non-blocking connect, poll, SO_ERROR: a client with a timeout)
//! send NAME BYTES   fill NAME   recv NAME   shutdown NAME rd|wr|rdwr   close NAME
//! linger NAME 0|1 SECS   keepalive NAME IDLE INTVL CNT   repair NAME   unspec NAME
//! tcpopt NAME linger2|defer_accept|syncnt|fastopen VALUE   syncnt N (for later connects)
//! mjoin GROUP IFNAME (join an IPv6 multicast group)   mptcp (MPTCP for later sockets)
//! raw   raw-send SRC SPORT DST DPORT FLAGS SEQ ACK [LEN] [tfo] [ts=VAL:ECR]
//! raw-wait SPORT|* DPORT FLAGS   pid   exit
//! ```
//!
//! Answers are `ok [VALUE]`, `err ERRNO`, `read N`; raw-wait's `ok` is
//! followed by the segment seen (`Seen`'s wire form).

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr},
    str::{FromStr, SplitWhitespace},
};

use crate::raw::{self, Seen, Segment};

/// One command to a peer.  Sockets are named by the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// A listening socket (backlog 16 unless given).
    Listen {
        name: String,
        addr: SocketAddr,
        backlog: Option<i32>,
    },
    /// accept() on `listener`; answers the client's port.
    Accept {
        listener: String,
        name: String,
    },
    /// A blocking connect(), bounded by 10 s; answers the local port.
    Connect {
        name: String,
        addr: SocketAddr,
        local_port: Option<u16>,
    },
    /// A non-blocking connect(), poll, SO_ERROR: a client with a timeout.
    ConnectPoll {
        name: String,
        addr: SocketAddr,
    },
    Send {
        name: String,
        bytes: usize,
    },
    /// Writes until the peer's window and the send buffer are full.
    Fill {
        name: String,
    },
    Recv {
        name: String,
    },
    Shutdown {
        name: String,
        how: Shutdown,
    },
    Close {
        name: String,
    },
    /// SO_LINGER: on for `secs`, or off.
    Linger {
        name: String,
        secs: Option<u64>,
    },
    Keepalive {
        name: String,
        idle: u64,
        interval: u64,
        retries: u32,
    },
    /// TCP_REPAIR: the next close() sends nothing.
    Repair {
        name: String,
    },
    /// connect(AF_UNSPEC): disconnect without closing.
    Unspec {
        name: String,
    },
    TcpOpt {
        name: String,
        opt: TcpOpt,
        value: i32,
    },
    /// TCP_SYNCNT for the sockets later `Connect`s make.
    SynCnt(i32),
    /// Joins an IPv6 multicast group on an interface (the kernel sends a
    /// listener report at once).
    Mjoin {
        group: Ipv6Addr,
        ifname: String,
    },
    /// MPTCP for the sockets made later.
    Mptcp,
    /// Opens the raw sockets now (before a segment arrives to be seen).
    Raw,
    RawSend(Segment),
    /// Waits for a segment from `sport` (None: any) to `dport` carrying
    /// exactly `flags`.
    RawWait {
        sport: Option<u16>,
        dport: u16,
        flags: u8,
    },
    Pid,
    Exit,
}

/// The TCP-level options `Cmd::TcpOpt` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpOpt {
    Linger2,
    DeferAccept,
    SynCnt,
    FastOpen,
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("an IP address"), port)
}

/// Constructors for the commands tests write most.
impl Cmd {
    pub(crate) fn listen(name: &str, ip: &str, port: u16) -> Cmd {
        let (name, addr) = (name.into(), at(ip, port));
        Cmd::Listen {
            name,
            addr,
            backlog: None,
        }
    }

    pub(crate) fn listen_backlog(name: &str, ip: &str, port: u16, backlog: i32) -> Cmd {
        let (name, addr) = (name.into(), at(ip, port));
        let backlog = Some(backlog);
        Cmd::Listen {
            name,
            addr,
            backlog,
        }
    }

    pub(crate) fn accept(listener: &str, name: &str) -> Cmd {
        let (listener, name) = (listener.into(), name.into());
        Cmd::Accept { listener, name }
    }

    pub(crate) fn connect(name: &str, ip: &str, port: u16) -> Cmd {
        let (name, addr) = (name.into(), at(ip, port));
        Cmd::Connect {
            name,
            addr,
            local_port: None,
        }
    }

    /// `connect` from a given local port.
    pub(crate) fn connect_from(name: &str, ip: &str, port: u16, local_port: u16) -> Cmd {
        let (name, addr, local_port) = (name.into(), at(ip, port), Some(local_port));
        Cmd::Connect {
            name,
            addr,
            local_port,
        }
    }

    pub(crate) fn connect_poll(name: &str, ip: &str, port: u16) -> Cmd {
        let (name, addr) = (name.into(), at(ip, port));
        Cmd::ConnectPoll { name, addr }
    }

    pub(crate) fn send(name: &str, bytes: usize) -> Cmd {
        let name = name.into();
        Cmd::Send { name, bytes }
    }

    pub(crate) fn fill(name: &str) -> Cmd {
        Cmd::Fill { name: name.into() }
    }

    pub(crate) fn recv(name: &str) -> Cmd {
        Cmd::Recv { name: name.into() }
    }

    pub(crate) fn shutdown(name: &str, how: Shutdown) -> Cmd {
        let name = name.into();
        Cmd::Shutdown { name, how }
    }

    pub(crate) fn close(name: &str) -> Cmd {
        Cmd::Close { name: name.into() }
    }

    /// SO_LINGER on, for `secs` (0: close() resets).
    pub(crate) fn linger(name: &str, secs: u64) -> Cmd {
        let (name, secs) = (name.into(), Some(secs));
        Cmd::Linger { name, secs }
    }

    pub(crate) fn keepalive(name: &str, idle: u64, interval: u64, retries: u32) -> Cmd {
        let name = name.into();
        Cmd::Keepalive {
            name,
            idle,
            interval,
            retries,
        }
    }

    pub(crate) fn repair(name: &str) -> Cmd {
        Cmd::Repair { name: name.into() }
    }

    pub(crate) fn unspec(name: &str) -> Cmd {
        Cmd::Unspec { name: name.into() }
    }

    pub(crate) fn tcpopt(name: &str, opt: TcpOpt, value: i32) -> Cmd {
        let name = name.into();
        Cmd::TcpOpt { name, opt, value }
    }

    pub(crate) fn mjoin(group: &str, ifname: &str) -> Cmd {
        let group = group.parse().expect("an IPv6 group");
        let ifname = ifname.into();
        Cmd::Mjoin { group, ifname }
    }

    pub(crate) fn raw_wait(sport: Option<u16>, dport: u16, flags: u8) -> Cmd {
        Cmd::RawWait {
            sport,
            dport,
            flags,
        }
    }
}

// The wire, out: `Display` writes the line `FromStr` reads.

/// An address as two words: `IP PORT`.
struct At<'a>(&'a SocketAddr);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {}", self.0.ip(), self.0.port())
    }
}

/// An optional last word: ` VALUE` or nothing.
struct Opt<'a, T>(&'a Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, " {v}"),
            None => Ok(()),
        }
    }
}

fn shutdown_word(how: Shutdown) -> &'static str {
    match how {
        Shutdown::Read => "rd",
        Shutdown::Write => "wr",
        Shutdown::Both => "rdwr",
    }
}

impl TcpOpt {
    const ALL: [TcpOpt; 4] = [
        TcpOpt::Linger2,
        TcpOpt::DeferAccept,
        TcpOpt::SynCnt,
        TcpOpt::FastOpen,
    ];

    fn word(self) -> &'static str {
        match self {
            TcpOpt::Linger2 => "linger2",
            TcpOpt::DeferAccept => "defer_accept",
            TcpOpt::SynCnt => "syncnt",
            TcpOpt::FastOpen => "fastopen",
        }
    }

    /// The option's number at level IPPROTO_TCP.
    pub(crate) fn number(self) -> i32 {
        match self {
            TcpOpt::Linger2 => libc::TCP_LINGER2,
            TcpOpt::DeferAccept => libc::TCP_DEFER_ACCEPT,
            TcpOpt::SynCnt => libc::TCP_SYNCNT,
            TcpOpt::FastOpen => libc::TCP_FASTOPEN,
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Cmd::Listen {
                name,
                addr,
                backlog,
            } => write!(f, "listen {name} {}{}", At(addr), Opt(backlog)),
            Cmd::Accept { listener, name } => write!(f, "accept {listener} {name}"),
            Cmd::Connect {
                name,
                addr,
                local_port,
            } => write!(f, "connect {name} {}{}", At(addr), Opt(local_port)),
            Cmd::ConnectPoll { name, addr } => write!(f, "connect-poll {name} {}", At(addr)),
            Cmd::Send { name, bytes } => write!(f, "send {name} {bytes}"),
            Cmd::Fill { name } => write!(f, "fill {name}"),
            Cmd::Recv { name } => write!(f, "recv {name}"),
            Cmd::Shutdown { name, how } => write!(f, "shutdown {name} {}", shutdown_word(*how)),
            Cmd::Close { name } => write!(f, "close {name}"),
            Cmd::Linger { name, secs } => {
                let on = u8::from(secs.is_some());
                write!(f, "linger {name} {on} {}", secs.unwrap_or(0))
            }
            Cmd::Keepalive {
                name,
                idle,
                interval,
                retries,
            } => write!(f, "keepalive {name} {idle} {interval} {retries}"),
            Cmd::Repair { name } => write!(f, "repair {name}"),
            Cmd::Unspec { name } => write!(f, "unspec {name}"),
            Cmd::TcpOpt { name, opt, value } => write!(f, "tcpopt {name} {} {value}", opt.word()),
            Cmd::SynCnt(n) => write!(f, "syncnt {n}"),
            Cmd::Mjoin { group, ifname } => write!(f, "mjoin {group} {ifname}"),
            Cmd::Mptcp => write!(f, "mptcp"),
            Cmd::Raw => write!(f, "raw"),
            Cmd::RawSend(seg) => write_segment(f, seg),
            Cmd::RawWait {
                sport,
                dport,
                flags,
            } => {
                let sport = sport.map_or("*".to_string(), |p| p.to_string());
                write!(f, "raw-wait {sport} {dport} {}", raw::letters(*flags))
            }
            Cmd::Pid => write!(f, "pid"),
            Cmd::Exit => write!(f, "exit"),
        }
    }
}

fn write_segment(f: &mut fmt::Formatter, s: &Segment) -> fmt::Result {
    let flags = raw::letters(s.flags);
    write!(f, "raw-send {} {} {} {}", s.src, s.sport, s.dst, s.dport)?;
    write!(f, " {flags} {} {}", s.seq, s.ack)?;
    if s.payload != 0 {
        write!(f, " {}", s.payload)?;
    }
    if s.fastopen {
        write!(f, " tfo")?;
    }
    if let Some((val, ecr)) = s.timestamps {
        write!(f, " ts={val}:{ecr}")?;
    }
    Ok(())
}

// The wire, in: what the peer reads.

/// The words of a line, read in order.
struct Words<'a>(SplitWhitespace<'a>);

impl<'a> Words<'a> {
    fn word(&mut self, what: &str) -> Result<&'a str, String> {
        self.0.next().ok_or_else(|| format!("no {what}"))
    }

    fn parse<T: FromStr>(&mut self, what: &str) -> Result<T, String>
    where
        T::Err: fmt::Display,
    {
        let w = self.word(what)?;
        w.parse().map_err(|e| format!("{what} `{w}`: {e}"))
    }

    /// An optional last word.
    fn opt<T: FromStr>(&mut self, what: &str) -> Result<Option<T>, String>
    where
        T::Err: fmt::Display,
    {
        match self.0.clone().next() {
            Some(_) => self.parse(what).map(Some),
            None => Ok(None),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        self.word("socket name").map(String::from)
    }

    fn addr(&mut self) -> Result<SocketAddr, String> {
        let ip: IpAddr = self.parse("address")?;
        Ok(SocketAddr::new(ip, self.parse("port")?))
    }

    fn flags(&mut self) -> Result<u8, String> {
        raw::parse_flags(self.word("flags")?)
    }

    fn end(mut self) -> Result<(), String> {
        match self.0.next() {
            Some(w) => Err(format!("`{w}` left over")),
            None => Ok(()),
        }
    }
}

impl FromStr for Cmd {
    type Err = String;

    fn from_str(line: &str) -> Result<Cmd, String> {
        let mut w = Words(line.split_whitespace());
        let verb = w.word("command")?;
        let cmd = match verb {
            "listen" | "accept" | "connect" | "connect-poll" => parse_socket(verb, &mut w)?,
            "send" | "fill" | "recv" | "shutdown" | "close" => parse_data(verb, &mut w)?,
            "raw" | "raw-send" | "raw-wait" => parse_raw(verb, &mut w)?,
            _ => parse_option(verb, &mut w)?,
        };
        w.end()?;
        Ok(cmd)
    }
}

/// Sockets made: listen, accept, connect, connect-poll.
fn parse_socket(verb: &str, w: &mut Words) -> Result<Cmd, String> {
    Ok(match verb {
        "listen" => Cmd::Listen {
            name: w.name()?,
            addr: w.addr()?,
            backlog: w.opt("backlog")?,
        },
        "accept" => Cmd::Accept {
            listener: w.name()?,
            name: w.name()?,
        },
        "connect" => Cmd::Connect {
            name: w.name()?,
            addr: w.addr()?,
            local_port: w.opt("local port")?,
        },
        _ => Cmd::ConnectPoll {
            name: w.name()?,
            addr: w.addr()?,
        },
    })
}

/// Data moved and connections ended: send, fill, recv, shutdown, close.
fn parse_data(verb: &str, w: &mut Words) -> Result<Cmd, String> {
    let name = w.name()?;
    Ok(match verb {
        "send" => Cmd::Send {
            name,
            bytes: w.parse("byte count")?,
        },
        "fill" => Cmd::Fill { name },
        "recv" => Cmd::Recv { name },
        "shutdown" => {
            let word = w.word("rd|wr|rdwr")?;
            let how = [Shutdown::Read, Shutdown::Write, Shutdown::Both]
                .into_iter()
                .find(|how| shutdown_word(*how) == word)
                .ok_or_else(|| format!("shutdown `{word}`: not rd, wr or rdwr"))?;
            Cmd::Shutdown { name, how }
        }
        _ => Cmd::Close { name },
    })
}

/// Options, of a socket or of the peer, and the rest.
fn parse_option(verb: &str, w: &mut Words) -> Result<Cmd, String> {
    Ok(match verb {
        "linger" => {
            let name = w.name()?;
            let on: u8 = w.parse("0|1")?;
            let secs: u64 = w.parse("seconds")?;
            Cmd::Linger {
                name,
                secs: (on == 1).then_some(secs),
            }
        }
        "keepalive" => Cmd::Keepalive {
            name: w.name()?,
            idle: w.parse("idle seconds")?,
            interval: w.parse("interval seconds")?,
            retries: w.parse("count")?,
        },
        "repair" => Cmd::Repair { name: w.name()? },
        "unspec" => Cmd::Unspec { name: w.name()? },
        "tcpopt" => {
            let name = w.name()?;
            let word = w.word("option")?;
            let opt = TcpOpt::ALL
                .into_iter()
                .find(|o| o.word() == word)
                .ok_or_else(|| format!("unknown option {word}"))?;
            let value = w.parse("value")?;
            Cmd::TcpOpt { name, opt, value }
        }
        "syncnt" => Cmd::SynCnt(w.parse("count")?),
        "mjoin" => Cmd::Mjoin {
            group: w.parse("IPv6 group")?,
            ifname: w.word("interface")?.into(),
        },
        "mptcp" => Cmd::Mptcp,
        "pid" => Cmd::Pid,
        "exit" => Cmd::Exit,
        other => return Err(format!("unknown command {other}")),
    })
}

/// Hand-made segments: raw, raw-send, raw-wait.
fn parse_raw(verb: &str, w: &mut Words) -> Result<Cmd, String> {
    Ok(match verb {
        "raw" => Cmd::Raw,
        "raw-send" => Cmd::RawSend(parse_segment(w)?),
        _ => Cmd::RawWait {
            sport: match w.word("source port|*")? {
                "*" => None,
                p => Some(p.parse().map_err(|e| format!("source port `{p}`: {e}"))?),
            },
            dport: w.parse("destination port")?,
            flags: w.flags()?,
        },
    })
}

fn parse_segment(w: &mut Words) -> Result<Segment, String> {
    let mut seg = Segment {
        src: w.parse("source")?,
        sport: w.parse("source port")?,
        dst: w.parse("destination")?,
        dport: w.parse("destination port")?,
        flags: w.flags()?,
        seq: w.parse("seq")?,
        ack: w.parse("ack")?,
        payload: 0,
        fastopen: false,
        timestamps: None,
    };
    for extra in w.0.by_ref() {
        if extra == "tfo" {
            seg.fastopen = true;
        } else if let Some(ts) = extra.strip_prefix("ts=") {
            let bad = || format!("timestamps `{ts}`: not VAL:ECR");
            let (v, e) = ts.split_once(':').ok_or_else(bad)?;
            seg.timestamps = Some((v.parse().map_err(|_| bad())?, e.parse().map_err(|_| bad())?));
        } else {
            seg.payload = extra
                .parse()
                .map_err(|e| format!("payload length `{extra}`: {e}"))?;
        }
    }
    Ok(seg)
}

// raw-wait's answer: the segment seen, `SPORT DPORT FLAGS SEQ ACK TSVAL|-`.

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let flags = raw::letters(self.flags);
        let tsval = self.tsval.map_or("-".to_string(), |t| t.to_string());
        let (sport, dport, seq, ack) = (self.sport, self.dport, self.seq, self.ack);
        write!(f, "{sport} {dport} {flags} {seq} {ack} {tsval}")
    }
}

impl FromStr for Seen {
    type Err = String;

    fn from_str(answer: &str) -> Result<Seen, String> {
        let mut w = Words(answer.split_whitespace());
        let seen = Seen {
            sport: w.parse("source port")?,
            dport: w.parse("destination port")?,
            flags: w.flags()?,
            seq: w.parse("seq")?,
            ack: w.parse("ack")?,
            tsval: match w.word("tsval|-")? {
                "-" => None,
                t => Some(t.parse().map_err(|e| format!("tsval `{t}`: {e}"))?),
            },
        };
        w.end()?;
        Ok(seen)
    }
}

/// One command of every kind, options given and not, with the segments
/// seen: what `check_round_trip` writes and reads back.
fn samples() -> (Vec<Cmd>, Vec<Seen>) {
    let mut seg = Segment::new("10.0.0.2", 40000, "10.0.0.1", 80, raw::SYN, 1, 0);
    let bare = seg.clone();
    (seg.payload, seg.fastopen, seg.timestamps) = (10, true, Some((7, 9)));
    let name = || "c".to_string();
    let tcp_options = TcpOpt::ALL.map(|opt| Cmd::tcpopt("c", opt, -1));
    let cmds = [
        Cmd::listen("l", "10.0.0.1", 80),
        Cmd::listen_backlog("l", "fd00::1", 80, 0),
        Cmd::accept("l", "s"),
        Cmd::connect("c", "::1", 9),
        Cmd::connect_from("c", "10.0.0.1", 80, 41000),
        Cmd::connect_poll("c", "10.0.0.1", 80),
        Cmd::send("c", 10),
        Cmd::fill("c"),
        Cmd::recv("c"),
        Cmd::shutdown("c", Shutdown::Read),
        Cmd::shutdown("c", Shutdown::Write),
        Cmd::shutdown("c", Shutdown::Both),
        Cmd::close("c"),
        Cmd::linger("c", 0),
        Cmd::Linger {
            name: name(),
            secs: None,
        },
        Cmd::keepalive("c", 1, 2, 3),
        Cmd::repair("c"),
        Cmd::unspec("c"),
        Cmd::SynCnt(1),
        Cmd::mjoin("ff02::1:ff00:abcd", "veth0"),
        Cmd::Mptcp,
        Cmd::Raw,
        Cmd::RawSend(bare),
        Cmd::RawSend(seg),
        Cmd::raw_wait(None, 80, raw::SYN),
        Cmd::raw_wait(Some(80), 40000, raw::SYN | raw::ACK),
        Cmd::Pid,
        Cmd::Exit,
    ];
    let cmds = cmds.into_iter().chain(tcp_options).collect();
    let seen = Seen {
        sport: 80,
        dport: 40000,
        flags: raw::SYN | raw::ACK,
        seq: 1,
        ack: 2,
        tsval: Some(3),
    };
    (
        cmds,
        vec![
            seen,
            Seen {
                tsval: None,
                ..seen
            },
        ],
    )
}

/// Every kind of command, and raw-wait's answer, read back as written.
/// Run by each peer as it starts (the e2e suite's test names are a
/// recorded table; this needs no test of its own).
pub(crate) fn check_round_trip() -> Result<(), String> {
    let (cmds, seen) = samples();
    for c in cmds {
        round_trip(&c)?;
    }
    for s in seen {
        round_trip(&s)?;
    }
    Ok(())
}

/// `value` written and read back.
pub(crate) fn round_trip<T>(value: &T) -> Result<(), String>
where
    T: fmt::Display + FromStr<Err = String> + PartialEq + fmt::Debug,
{
    let line = value.to_string();
    match line.parse::<T>() {
        Ok(back) if back == *value => Ok(()),
        Ok(back) => Err(format!(
            "{value:?} is written `{line}`, read back as {back:?}"
        )),
        Err(e) => Err(format!("{value:?} is written `{line}`, read back: {e}")),
    }
}
