//! What a tracer costs inside the kernel: the run time of its BPF programs
//! (`kernel.bpf_stats_enabled`, see `guard.rs`) and the memory of its BPF
//! maps, from `bpftool prog/map show -j`.
//!
//! Which programs and maps belong to the tracer comes from its
//! `/proc/<pid>/fdinfo` (`prog_id:` of program and link fds, `map_id:` of
//! map fds), or from bpftool's `pids` field where bpftool has one (Debian's
//! bpftool is built without it).

use std::{collections::BTreeSet, process::Command};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One program's runs and run time over a measurement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ProgCost {
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct BpfUsage {
    /// The tracer's programs that ran during the load, busiest first.
    pub programs: Vec<ProgCost>,
    /// Summed over the tracer's programs during the load.
    pub run_time_ns: u64,
    pub run_cnt: u64,
    /// The same, for the programs on the reset hooks only.
    pub reset_run_time_ns: u64,
    pub reset_run_cnt: u64,
    pub maps: usize,
    /// `bytes_memlock` summed over the tracer's maps.
    pub map_bytes: u64,
}

/// The tracer's BPF objects and their statistics at one moment.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    progs: Vec<Object>,
    maps: Vec<Object>,
}

/// The BPF objects a process holds open.
#[derive(Debug, Default, PartialEq, Eq)]
struct Held {
    progs: BTreeSet<u64>,
    maps: BTreeSet<u64>,
}

/// One entry of `bpftool prog show -j` or `bpftool map show -j`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Object {
    id: u64,
    name: String,
    run_time_ns: u64,
    run_cnt: u64,
    bytes_memlock: u64,
    pids: Vec<u64>,
}

/// The BPF programs and maps of process `pid`, read while it runs.
pub(super) fn snapshot(pid: u32) -> Result<Snapshot> {
    let held = held_by(pid)?;
    if held.progs.is_empty() && held.maps.is_empty() {
        return Ok(Snapshot::default());
    }
    let mine =
        |o: &Object, ids: &BTreeSet<u64>| ids.contains(&o.id) || o.pids.contains(&u64::from(pid));
    let progs = parse_objects(&bpftool(&["prog", "show", "-j"])?)?;
    let maps = parse_objects(&bpftool(&["map", "show", "-j"])?)?;
    Ok(Snapshot {
        progs: progs.into_iter().filter(|o| mine(o, &held.progs)).collect(),
        maps: maps.into_iter().filter(|o| mine(o, &held.maps)).collect(),
    })
}

/// What ran between two snapshots of the same tracer.
pub(super) fn usage(before: &Snapshot, after: &Snapshot) -> BpfUsage {
    let mut u = BpfUsage::default();
    for p in &after.progs {
        let (cnt0, time0) = before
            .progs
            .iter()
            .find(|b| b.id == p.id)
            .map_or((0, 0), |b| (b.run_cnt, b.run_time_ns));
        let cost = ProgCost {
            name: p.name.clone(),
            run_cnt: p.run_cnt.saturating_sub(cnt0),
            run_time_ns: p.run_time_ns.saturating_sub(time0),
        };
        u.run_time_ns += cost.run_time_ns;
        u.run_cnt += cost.run_cnt;
        if is_reset_program(&cost.name) {
            u.reset_run_time_ns += cost.run_time_ns;
            u.reset_run_cnt += cost.run_cnt;
        }
        if cost.run_cnt > 0 {
            u.programs.push(cost);
        }
    }
    u.programs
        .sort_by(|a, b| b.run_time_ns.cmp(&a.run_time_ns).then(a.name.cmp(&b.name)));
    u.maps = after.maps.len();
    u.map_bytes = after.maps.iter().map(|m| m.bytes_memlock).sum();
    u
}

/// The programs that see resets themselves (sent or received), as
/// opposed to bookkeeping on other events.
fn is_reset_program(name: &str) -> bool {
    name.contains("reset")
}

fn bpftool(args: &[&str]) -> Result<String> {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .context("running bpftool (scripts/bootstrap.sh --with-bench installs it)")?;
    if !out.status.success() {
        bail!(
            "bpftool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn held_by(pid: u32) -> Result<Held> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut held = Held::default();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // An fd closed meanwhile is simply not held any more.
        if let Ok(text) = std::fs::read_to_string(entry?.path()) {
            parse_fdinfo(&text, &mut held);
        }
    }
    Ok(held)
}

/// A BPF program fd says `prog_id:`, a BPF link fd names its program the
/// same way, a map fd says `map_id:`.
fn parse_fdinfo(text: &str, held: &mut Held) {
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(id) = value.trim().parse() else {
            continue;
        };
        match key {
            "prog_id" => held.progs.insert(id),
            "map_id" => held.maps.insert(id),
            _ => false,
        };
    }
}

fn parse_objects(json: &str) -> Result<Vec<Object>> {
    let value: Value = serde_json::from_str(json).context("bpftool's JSON")?;
    let list = value.as_array().context("bpftool's JSON is not a list")?;
    let number = |o: &Value, key: &str| o.get(key).and_then(Value::as_u64).unwrap_or(0);
    list.iter()
        .map(|o| {
            Ok(Object {
                id: o
                    .get("id")
                    .and_then(Value::as_u64)
                    .context("object without id")?,
                name: o.get("name").and_then(Value::as_str).unwrap_or("").into(),
                // bpftool leaves the run statistics out while they are zero.
                run_time_ns: number(o, "run_time_ns"),
                run_cnt: number(o, "run_cnt"),
                bytes_memlock: number(o, "bytes_memlock"),
                pids: o
                    .get("pids")
                    .and_then(Value::as_array)
                    .map(|ps| ps.iter().map(|p| number(p, "pid")).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from rsttrace on Linux 6.18 with bpf_stats_enabled=1
    // (trimmed); the last program is another process's, listed by a
    // bpftool that knows pids.
    const PROGS: &str = r#"[{"id":2733,"type":"tracing","name":"tcp_send_reset","tag":"f27b93c46a7df006","gpl_compatible":true,"run_time_ns":26720,"run_cnt":1,"loaded_at":1795918726,"uid":0,"bytes_xlated":68024,"jited":true,"bytes_jited":38912,"bytes_memlock":16384,"map_ids":[2680,2681],"btf_id":1560},
        {"id":2734,"type":"tracing","name":"tcp_receive_reset","run_time_ns":28894,"run_cnt":1,"bytes_memlock":12288},
        {"id":2735,"type":"tracing","name":"inet_sock_set_state","run_time_ns":9654,"run_cnt":2,"bytes_memlock":12288},
        {"id":2738,"type":"tracepoint","name":"sys_exit_accept4","bytes_memlock":4096},
        {"id":99,"type":"tracing","name":"tcp_send_reset","run_time_ns":5,"run_cnt":5,"bytes_memlock":4096,"pids":[{"pid":4242,"comm":"other"}]},
        {"id":100,"type":"tracing","name":"kfree_skb","run_time_ns":7,"run_cnt":1,"bytes_memlock":4096,"pids":[{"pid":17478,"comm":"rsttrace"}]}]"#;
    const MAPS: &str = r#"[{"id":2680,"type":"ringbuf","name":"EVENTS","flags":0,"bytes_key":0,"bytes_value":0,"max_entries":8388608,"bytes_memlock":8433992,"frozen":0},
        {"id":2684,"type":"lru_hash","name":"CLOSED","bytes_memlock":11010944},
        {"id":7,"type":"array","name":"elsewhere","bytes_memlock":320}]"#;
    const FDINFO_PROG: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\nprog_type:\t26\nprog_jited:\t1\nprog_tag:\tf27b93c46a7df006\nmemlock:\t16384\nprog_id:\t2733\nrun_time_ns:\t26720\nrun_cnt:\t1\nrecursion_misses:\t0\nverified_insns:\t8490\n";
    const FDINFO_LINK: &str = "pos:\t0\nflags:\t02000000\nlink_type:\traw_tracepoint\nlink_id:\t2026\nprog_tag:\t5612307ff2aa4c75\nprog_id:\t2734\ntp_name:\ttcp_receive_reset\n";
    const FDINFO_MAP: &str =
        "pos:\t0\nmap_type:\t27\nkey_size:\t0\nmemlock:\t8433992\nmap_id:\t2680\nfrozen:\t0\n";
    const FDINFO_FILE: &str = "pos:\t0\nflags:\t0100002\nmnt_id:\t25\nino:\t4\n";

    fn held() -> Held {
        let mut h = Held::default();
        for text in [FDINFO_PROG, FDINFO_LINK, FDINFO_MAP, FDINFO_FILE] {
            parse_fdinfo(text, &mut h);
        }
        h
    }

    #[test]
    fn fdinfo_names_programs_links_and_maps() {
        let h = held();
        assert_eq!(h.progs.into_iter().collect::<Vec<_>>(), [2733, 2734]);
        assert_eq!(h.maps.into_iter().collect::<Vec<_>>(), [2680]);
    }

    #[test]
    fn parses_bpftool_json() {
        let progs = parse_objects(PROGS).unwrap();
        assert_eq!(progs.len(), 6);
        assert_eq!(
            progs[0],
            Object {
                id: 2733,
                name: "tcp_send_reset".into(),
                run_time_ns: 26720,
                run_cnt: 1,
                bytes_memlock: 16384,
                pids: vec![],
            }
        );
        // Statistics left out while zero.
        assert_eq!((progs[3].run_time_ns, progs[3].run_cnt), (0, 0));
        assert_eq!(progs[5].pids, [17478]);
        assert!(parse_objects("{}").is_err());
    }

    #[test]
    fn usage_is_the_difference_per_program() {
        let progs = parse_objects(PROGS).unwrap();
        let maps = parse_objects(MAPS).unwrap();
        let h = held();
        let pick = |all: &[Object], ids: &BTreeSet<u64>| -> Vec<Object> {
            all.iter()
                .filter(|o| ids.contains(&o.id))
                .cloned()
                .collect()
        };
        let before = Snapshot {
            progs: pick(&progs, &h.progs),
            maps: pick(&maps, &h.maps),
        };
        let mut after = before.clone();
        after.progs[0].run_cnt += 10;
        after.progs[0].run_time_ns += 5000;
        after.progs[1].run_cnt += 2;
        after.progs[1].run_time_ns += 9000;
        let u = usage(&before, &after);
        assert_eq!(u.run_cnt, 12);
        assert_eq!(u.run_time_ns, 14000);
        assert_eq!((u.reset_run_cnt, u.reset_run_time_ns), (12, 14000));
        assert_eq!(
            u.programs
                .iter()
                .map(|p| (p.name.as_str(), p.run_cnt))
                .collect::<Vec<_>>(),
            [("tcp_receive_reset", 2), ("tcp_send_reset", 10)]
        );
        assert_eq!((u.maps, u.map_bytes), (1, 8433992));
        // A program that did not run is not listed.
        assert!(usage(&before, &before).programs.is_empty());
    }
}
