//! Suppression rules: which expected resets to silence.  A rule matches a
//! reset when every condition it names matches (AND); a condition's
//! values are alternatives (OR).  Silenced resets are still counted (the
//! metrics, `--summary`, the totals), never written one by one.

use std::net::IpAddr;

use crate::{
    classify::{Cause, Direction},
    model::reset::Reset,
};

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// An address prefix (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    fn contains(self, ip: IpAddr) -> bool {
        // An IPv4 peer over an IPv6 socket is written ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.bits,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.bits)
            }
            _ => false,
        }
    }
}

fn prefix_eq(net: u128, ip: u128, width: u8, bits: u8) -> bool {
    let shift = u32::from(width - bits);
    bits == 0 || (net >> shift) == (ip >> shift)
}

/// One suppression rule.  Empty lists match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Shown in the metrics (label `rule`) and the summaries.
    pub name: String,
    pub causes: Vec<Cause>,
    pub direction: Option<Direction>,
    pub local_ports: Vec<PortRange>,
    pub remote_ports: Vec<PortRange>,
    pub local_cidrs: Vec<Cidr>,
    pub remote_cidrs: Vec<Cidr>,
    /// The owner's process name.
    pub comms: Vec<String>,
    /// Container id prefixes (lower-case hex).
    pub containers: Vec<String>,
}

fn any_or<T>(list: &[T], f: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(f)
}

impl Rule {
    pub(crate) fn matches(&self, r: &Reset) -> bool {
        let c = &r.conn;
        let owner = r.owner.as_ref();
        any_or(&self.causes, |&x| x == r.cause)
            && self.direction.is_none_or(|d| d == r.direction)
            && any_or(&self.local_ports, |p| p.contains(c.local_port))
            && any_or(&self.remote_ports, |p| p.contains(c.remote_port))
            && any_or(&self.local_cidrs, |n| n.contains(c.local))
            && any_or(&self.remote_cidrs, |n| n.contains(c.remote))
            && any_or(&self.comms, |want| {
                owner.is_some_and(|o| o.comm.as_str() == want)
            })
            && any_or(&self.containers, |prefix| {
                owner
                    .and_then(|o| o.container())
                    .and_then(|k| k.id.as_deref())
                    .is_some_and(|id| id.starts_with(prefix.as_str()))
            })
    }
}

/// The rules in force, in order: the first that matches names the
/// suppression.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub rules: Vec<Rule>,
}

impl Rules {
    /// The index of the first rule that silences `r`.
    pub(crate) fn silencing(&self, r: &Reset) -> Option<usize> {
        self.rules.iter().position(|rule| rule.matches(r))
    }
}

// The value syntax, shared by the TOML file and `--suppress`.

pub(crate) fn parse_cause(s: &str) -> Result<Cause, String> {
    Cause::from_id(s).ok_or_else(|| format!("unknown cause {s:?} (see `rsttrace causes`)"))
}

pub(crate) fn parse_direction(s: &str) -> Result<Direction, String> {
    match s {
        "sent" => Ok(Direction::Sent),
        "received" => Ok(Direction::Received),
        _ => Err(format!("direction {s:?}: \"sent\" or \"received\"")),
    }
}

pub(crate) fn parse_port(s: &str) -> Result<PortRange, String> {
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("port {s:?}: a number from 0 to 65535, or a range lo-hi"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(s)?, port(s)?),
    };
    if lo > hi {
        return Err(format!("port range {s:?} is empty"));
    }
    Ok(PortRange { lo, hi })
}

pub(crate) fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let bad = || format!("{s:?} is not an address or a CIDR prefix such as 10.0.0.0/8");
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&b| b <= width)
            .ok_or_else(bad)?,
        None => width,
    };
    Ok(Cidr { addr, bits })
}

pub(crate) fn parse_comm(s: &str) -> Result<String, String> {
    // The kernel keeps 15 bytes of a process name.
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "comm {s:?}: a process name of 1 to 15 bytes, as in /proc/<pid>/comm"
        ));
    }
    Ok(s.to_string())
}

pub(crate) fn parse_container(s: &str) -> Result<String, String> {
    let id = s.to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "container {s:?}: a container id or a prefix of one (hex digits)"
        ));
    }
    Ok(id)
}

/// `--suppress 'cause=abort_unread_data|abort_linger,local_port=8080'`: the
/// conditions of one rule, comma-separated, alternatives split by `|`.
pub(crate) fn parse_flag(spec: &str, index: usize) -> Result<Rule, String> {
    let mut rule = Rule {
        name: format!("flag{}", index + 1),
        ..Rule::default()
    };
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, values) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected key=value"))?;
        let values = values.split('|').map(str::trim);
        set(&mut rule, key.trim(), values)?;
    }
    if rule
        == (Rule {
            name: rule.name.clone(),
            ..Rule::default()
        })
    {
        return Err("a rule needs at least one condition".into());
    }
    Ok(rule)
}

/// Sets condition `key` of `rule` from its values.
pub(crate) fn set<'a>(
    rule: &mut Rule,
    key: &str,
    values: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    fn all<T>(
        values: impl Iterator<Item = impl AsRef<str>>,
        f: fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        values.map(|v| f(v.as_ref())).collect()
    }
    match key {
        "name" => rule.name = values.collect::<Vec<_>>().join("|"),
        "cause" => rule.causes = all(values, parse_cause)?,
        "direction" => {
            let mut d = all(values, parse_direction)?;
            if d.len() != 1 {
                return Err("direction: one of \"sent\" or \"received\"".into());
            }
            rule.direction = d.pop();
        }
        "local_port" => rule.local_ports = all(values, parse_port)?,
        "remote_port" => rule.remote_ports = all(values, parse_port)?,
        "local_cidr" => rule.local_cidrs = all(values, parse_cidr)?,
        "remote_cidr" => rule.remote_cidrs = all(values, parse_cidr)?,
        "comm" => rule.comms = all(values, parse_comm)?,
        "container" => rule.containers = all(values, parse_container)?,
        other => {
            return Err(format!(
                "unknown condition {other:?} (name, cause, direction, local_port, remote_port, local_cidr, remote_cidr, comm, container)"
            ))
        }
    }
    Ok(())
}
