//! The service packaging (packaging/, deploy/) checked with the tools that
//! will consume it: systemd-analyze, promtool, logrotate, a YAML parser.
//! None needs root.  A missing tool is a failure, not a skip:
//! `scripts/bootstrap.sh --with-tests` installs them all.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde::Deserialize;
use serde_yaml::Value;

/// The capabilities rsttrace runs with, everywhere.  Least privilege:
/// adding one must be a deliberate change here as well.
const CAPABILITIES: [&str; 5] = [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
    "CAP_SYSLOG",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rsttrace/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh directory for one test (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("rsttrace-packaging-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A program the tests need, from PATH or the sbin directories (logrotate
/// lives in /usr/sbin, which a non-root PATH may lack).
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: install Debian's {package} package \
                 (scripts/bootstrap.sh --with-tests does)"
            )
        })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// --- The systemd unit -------------------------------------------------

/// `(key, value)` of every directive in `section`, in order.
fn directives(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        } else if current == section {
            let (k, v) = line.split_once('=').expect("key=value");
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn service() -> Vec<(String, String)> {
    directives(&read("packaging/rsttrace.service"), "Service")
}

/// The words of every `key=` line (repeated keys add up, as in systemd).
fn words(service: &[(String, String)], key: &str) -> BTreeSet<String> {
    service
        .iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split_whitespace().map(String::from))
        .collect()
}

fn one(service: &[(String, String)], key: &str) -> Option<String> {
    service
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The unit with its ExecStart pointed at the binary under test, written
/// where systemd-analyze can read it.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = read("packaging/rsttrace.service");
    let installed = "ExecStart=/usr/local/bin/rsttrace ";
    assert!(
        unit.contains(installed),
        "ExecStart no longer starts with {installed:?}: update this test"
    );
    let unit = unit.replace(
        installed,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_rsttrace")),
    );
    let path = dir.join("rsttrace.service");
    fs::write(&path, unit).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = scratch("verify");
    let unit = unit_for_this_build(&dir);
    // Works without systemd as PID 1: verify only loads unit files.
    // Warnings (unknown keys, unknown system call groups, missing
    // binaries) go to stderr with exit status 0, so stderr must be empty.
    let out = run(Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0"));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stderr.is_empty(),
        "systemd-analyze verify: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn unit_exposure_stays_low() {
    let dir = scratch("security");
    let unit = unit_for_this_build(&dir);
    // systemd's own exposure score, 0 (locked down) to 100 (shown as
    // 0.0-10.0).  This unit scores 28 with systemd 252: any setting lost
    // raises it, while the checks above name only the essential ones.
    let out = run(Command::new(tool("systemd-analyze", "systemd"))
        .args(["security", "--offline=true", "--threshold=28", "--no-pager"])
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0"));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.8 (or error):\n{stdout}\n{stderr}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn unit_is_least_privilege() {
    let s = service();
    let expected: BTreeSet<String> = CAPABILITIES.iter().map(|c| c.to_string()).collect();
    assert_eq!(words(&s, "CapabilityBoundingSet"), expected);
    assert_eq!(words(&s, "AmbientCapabilities"), expected);

    // systemd ignores capability names it does not know without a word,
    // even in verify: check them against its list.
    let out = run(Command::new(tool("systemd-analyze", "systemd")).arg("capability"));
    let (known, _) = text(&out);
    assert!(out.status.success(), "systemd-analyze capability failed");
    let known: BTreeSet<String> = known
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect();
    for cap in &expected {
        assert!(known.contains(cap), "systemd does not know {cap}");
    }

    let must = [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("LimitMEMLOCK", "infinity"),
        ("Restart", "on-failure"),
        ("LogsDirectory", "rsttrace"),
        ("ConfigurationDirectory", "rsttrace"),
        ("UMask", "0027"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ];
    for (key, value) in must {
        assert_eq!(one(&s, key).as_deref(), Some(value), "{key}=");
    }
    assert!(
        one(&s, "ProtectHome").is_some_and(|v| v == "yes" || v == "read-only"),
        "ProtectHome="
    );
    assert_eq!(
        words(&s, "RestrictAddressFamilies"),
        ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
            .map(String::from)
            .into()
    );
    let filter = words(&s, "SystemCallFilter");
    for call in ["@system-service", "bpf", "perf_event_open"] {
        assert!(filter.contains(call), "SystemCallFilter lacks {call}");
    }
    assert!(!filter.iter().any(|w| w.starts_with('~')), "{filter:?}");

    // Settings that would break rsttrace, and why.
    let never = [
        (
            "ProtectProc",
            "invisible",
            "hides other processes' /proc/<pid>",
        ),
        (
            "ProcSubset",
            "pid",
            "hides /proc/net/tcp and /proc/kallsyms",
        ),
        (
            "ProtectKernelTunables",
            "yes",
            "makes /proc/kallsyms inaccessible",
        ),
        ("ProtectKernelLogs", "yes", "drops CAP_SYSLOG"),
        (
            "PrivateUsers",
            "yes",
            "capabilities would not hold on the host",
        ),
        (
            "PrivateNetwork",
            "yes",
            "/proc/net/tcp would not be the host's",
        ),
    ];
    for (key, value, why) in never {
        assert_ne!(one(&s, key).as_deref(), Some(value), "{key}={value} {why}");
    }
}

// --- Prometheus rules -------------------------------------------------

#[test]
fn alert_rules_pass_promtool_check() {
    let dir = repo().join("packaging/prometheus");
    let out = run(Command::new(tool("promtool", "prometheus"))
        .args(["check", "rules", "rsttrace-alerts.yml"])
        .current_dir(&dir));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stdout.contains("SUCCESS"),
        "promtool check rules:\n{stdout}\n{stderr}"
    );
}

#[test]
fn alert_rules_pass_promtool_tests() {
    let dir = repo().join("packaging/prometheus");
    let out = run(Command::new(tool("promtool", "prometheus"))
        .args(["test", "rules", "rsttrace-alerts.test.yml"])
        .current_dir(&dir));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stdout.contains("SUCCESS"),
        "promtool test rules:\n{stdout}\n{stderr}"
    );
    // Each alert is tested, firing and not: the alerts as Prometheus reads
    // them (every rule of every group), and there are some.
    let rules: Value =
        serde_yaml::from_str(&read("packaging/prometheus/rsttrace-alerts.yml")).unwrap();
    let alerts: Vec<&str> = rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(!alerts.is_empty(), "no alert in rsttrace-alerts.yml");
    let tests = read("packaging/prometheus/rsttrace-alerts.test.yml");
    let tests: Value = serde_yaml::from_str(&tests).unwrap();
    // And every case tests one of them.
    for c in tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
    {
        let name = c["alertname"].as_str().expect("alertname");
        assert!(alerts.contains(&name), "a case for no alert: {name}");
    }
    for alert in alerts {
        let cases: Vec<&Value> = tests["tests"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
            .filter(|c| c["alertname"].as_str() == Some(alert))
            .collect();
        let fires = |c: &&Value| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
        assert!(cases.iter().any(fires), "{alert}: no firing case");
        assert!(
            cases.iter().any(|c| !fires(c)),
            "{alert}: no non-firing case"
        );
    }
}

// --- Kubernetes -------------------------------------------------------

#[test]
fn daemonset_matches_the_unit() {
    let text = read("deploy/daemonset.yaml");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("YAML document"))
        .collect();
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true), "hostPID");
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "hostNetwork");
    assert_eq!(
        pod["dnsPolicy"].as_str(),
        Some("ClusterFirstWithHostNet"),
        "dnsPolicy"
    );
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    // The image `cargo xtask dist` builds, of this version: loading
    // target/dist/rsttrace-<version>.oci.tar on a node gives it.
    assert_eq!(
        c["image"].as_str(),
        Some(format!("localhost/rsttrace:{}", env!("CARGO_PKG_VERSION")).as_str()),
        "the DaemonSet's image"
    );
    assert_least_privilege_as_the_unit(c);
    assert_host_paths_read_only(pod, c);
    assert_args_as_scraped_and_valid(ds, c);
}

/// Not privileged, read-only, every capability dropped but the unit's.
fn assert_least_privilege_as_the_unit(c: &Value) {
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false), "privileged");
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["runAsUser"].as_u64(), Some(0), "runAsUser");

    let names = |v: &Value| -> BTreeSet<String> {
        v.as_sequence()
            .expect("a list of capabilities")
            .iter()
            .map(|c| c.as_str().expect("a capability name").to_string())
            .collect()
    };
    assert_eq!(
        names(&sc["capabilities"]["drop"]),
        ["ALL".to_string()].into()
    );
    // Kubernetes names capabilities without the CAP_ prefix.
    let added: BTreeSet<String> = names(&sc["capabilities"]["add"])
        .into_iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    let s = service();
    assert_eq!(
        added,
        words(&s, "CapabilityBoundingSet"),
        "the unit's bounding set"
    );
    assert_eq!(
        added,
        words(&s, "AmbientCapabilities"),
        "the unit's ambient set"
    );
}

/// Every host path is mounted, read-only, where rsttrace looks for it.
fn assert_host_paths_read_only(pod: &Value, c: &Value) {
    let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
    for m in mounts {
        assert_eq!(m["readOnly"].as_bool(), Some(true), "{m:?} not read-only");
    }
    let mounted: BTreeSet<&str> = mounts.iter().filter_map(|m| m["name"].as_str()).collect();
    for v in pod["volumes"].as_sequence().expect("volumes") {
        assert!(
            mounted.contains(v["name"].as_str().unwrap()),
            "volume {v:?} is never mounted"
        );
    }
    let host = |path: &str| {
        let v = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["hostPath"]["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("no hostPath {path}"));
        let m = mounts
            .iter()
            .find(|m| m["name"] == v["name"])
            .expect("mounted");
        m["mountPath"].as_str().unwrap().to_string()
    };
    assert_eq!(host("/proc"), "/host/proc");
    for path in [
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/var/lib/containers",
        "/run/containerd",
        "/run/containers",
    ] {
        assert_eq!(host(path), path);
    }
}

/// The arguments say where the host's /proc is, Prometheus is told the
/// port the metrics listen on, and rsttrace accepts them.
fn assert_args_as_scraped_and_valid(ds: &Value, c: &Value) {
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string args"))
        .collect();
    let after = |flag: &str| {
        let i = args.iter().position(|a| *a == flag);
        i.and_then(|i| args.get(i + 1).copied())
    };
    assert_eq!(after("--proc"), Some("/host/proc"));
    assert_eq!(after("--format"), Some("json"));
    let port = after("--metrics")
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p)
        .expect("--metrics HOST:PORT");
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port));
    // rsttrace itself accepts them (--check looks at --proc: this
    // machine's /proc stands in for the host's, mounted there in the pod).
    let args: Vec<String> = args
        .iter()
        .map(|a| match *a {
            "/host/proc" => "/proc".to_string(),
            a => a.to_string(),
        })
        .collect();
    assert_args_valid(&args);
}

/// `rsttrace ARGS --check` accepts the arguments (and their --config).
fn assert_args_valid(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rsttrace"))
        .args(args)
        .arg("--check")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(
        out.status.success() && stderr.contains("the options are valid"),
        "rsttrace {args:?} --check: {stderr}"
    );
}

#[test]
fn the_units_arguments_are_valid() {
    let exec = one(&service(), "ExecStart").expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/rsttrace"));
    // The example config stands in for the installed one, and a scratch
    // directory for the logs directory systemd makes (--check looks at
    // --output).
    let example = repo().join("packaging/rsttrace.toml");
    let logs = scratch("unit-args-logs");
    let args: Vec<String> = words
        .map(|w| match w {
            "/etc/rsttrace/rsttrace.toml" => example.display().to_string(),
            w if w.starts_with("/var/log/rsttrace/") => logs
                .join(w.trim_start_matches("/var/log/rsttrace/"))
                .display()
                .to_string(),
            w => w.to_string(),
        })
        .collect();
    assert!(args.iter().any(|a| a == "--output"), "{args:?}");
    assert!(args.iter().any(|a| a == "--config"), "{args:?}");
    assert_args_valid(&args);
}

// --- logrotate ----------------------------------------------------------

#[test]
fn logrotate_config_passes_a_dry_run() {
    let config = read("packaging/rsttrace.logrotate");
    let dirs: Vec<&str> = config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().strip_suffix('{'))
        .map(str::trim)
        .collect();
    assert_eq!(dirs, ["/var/log/rsttrace/*.json"]);
    let directive = |d: &str| {
        config
            .lines()
            .map(str::trim)
            .any(|l| l.split_whitespace().next() == Some(d))
    };
    // rsttrace reopens its output on SIGHUP; copytruncate would lose or
    // split records.
    assert!(!directive("copytruncate"), "copytruncate");
    for d in [
        "daily",
        "compress",
        "delaycompress",
        "missingok",
        "notifempty",
    ] {
        assert!(directive(d), "{d} missing");
    }

    // The unit's --output is a file the pattern rotates.
    let exec = one(&service(), "ExecStart").unwrap();
    let exec: Vec<&str> = exec.split_whitespace().collect();
    let output = exec[exec
        .iter()
        .position(|a| *a == "--output")
        .expect("--output")
        + 1];
    let output = Path::new(output);
    assert_eq!(output.parent(), Some(Path::new("/var/log/rsttrace")));
    assert_eq!(output.extension().and_then(|e| e.to_str()), Some("json"));

    // A dry run (-d) on a copy aimed at a scratch directory with a log to
    // rotate (-f: now, not after a day).  logrotate reports bad lines as
    // "error:" and still exits 0.
    let dir = scratch("logrotate");
    fs::create_dir(dir.join("logs")).unwrap();
    fs::write(dir.join("logs/rsttrace.json"), "{}\n").unwrap();
    let conf = dir.join("rsttrace.logrotate");
    fs::write(
        &conf,
        config.replace("/var/log/rsttrace", &dir.join("logs").to_string_lossy()),
    )
    .unwrap();
    let out = run(Command::new(tool("logrotate", "logrotate"))
        .arg("-d")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("state"))
        .arg(&conf));
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(
        out.status.success() && !all.lines().any(|l| l.starts_with("error:")),
        "logrotate -d: {}\n{all}",
        out.status
    );
    for expect in [
        "rotating log ",
        "(7 rotations)",
        "mode = 0640",
        "running postrotate script",
    ] {
        assert!(all.contains(expect), "no {expect:?} in:\n{all}");
    }
    let _ = fs::remove_dir_all(dir);
}

// --- The example configuration -----------------------------------------

#[test]
fn example_config_rules_are_sound() {
    // The example rules are commented out ("#key = value", no space after
    // the "#"; prose comments have one), so installing the file silences
    // nothing.  Uncommented, they must be valid rules.
    let file = read("packaging/rsttrace.toml");
    let rules: String = file
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '#']))
        .map(|l| format!("{l}\n"))
        .collect();
    let active = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(active, 0, "the shipped file must silence nothing");
    let table: toml::Table = rules.parse().expect("the uncommented rules are TOML");
    let rules = table["suppress"].as_array().expect("[[suppress]] tables");
    assert!(rules.len() >= 3, "{rules:?}");

    // Cause ids and their directions from the binary itself.
    let out =
        run(Command::new(env!("CARGO_BIN_EXE_rsttrace")).args(["causes", "--format", "json"]));
    assert!(out.status.success(), "rsttrace causes: {}", text(&out).1);
    let causes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let direction_of = |id: &str| {
        causes["causes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cause"] == id)
            .map(|c| c["direction"].as_str().unwrap().to_string())
    };

    let keys = [
        "name",
        "cause",
        "direction",
        "local_port",
        "remote_port",
        "local_cidr",
        "remote_cidr",
        "comm",
        "container",
    ];
    let mut names = BTreeSet::new();
    for rule in rules {
        let rule = rule.as_table().unwrap();
        for key in rule.keys() {
            assert!(keys.contains(&key.as_str()), "unknown key {key}");
        }
        let name = rule["name"].as_str().expect("every example has a name");
        assert!(names.insert(name.to_string()), "rule name {name} twice");
        // Cause ids are strings: one, or a list of them.
        let causes: Vec<&str> = match rule.get("cause") {
            None => vec![],
            Some(toml::Value::Array(a)) => a.iter().map(|v| v.as_str().unwrap()).collect(),
            Some(v) => vec![v.as_str().unwrap()],
        };
        let direction = rule.get("direction").and_then(|d| d.as_str());
        assert!(
            matches!(direction, None | Some("sent" | "received")),
            "{name}: direction {direction:?}"
        );
        for cause in causes {
            let dir = direction_of(cause)
                .unwrap_or_else(|| panic!("{name}: {cause} is not in `rsttrace causes`"));
            // A rule whose direction contradicts its cause matches nothing.
            if let Some(d) = direction {
                assert_eq!(dir, d, "{name}: {cause} is a {dir} cause");
            }
        }
    }
}
