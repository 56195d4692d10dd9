//! `cargo xtask bench`: run every benchmark, then write the figures and the
//! budget checks of DESIGN §7 to `docs/benchmarks.md`.
//!
//! Two kinds of results are collected from the same run:
//!
//! * criterion benchmarks (`target/criterion/**/new/`): in a group, the
//!   function named `baseline` is the reference the others are compared to;
//! * metrics written by non-criterion benchmarks as JSON arrays of
//!   `{"group", "name", "value", "unit"}` into the directory named by the
//!   `OCAPN_BENCH_REPORT_DIR` environment variable that this command sets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde_json::Value as Json;

use crate::{cargo, workspace_root};

const BEGIN: &str = "<!-- BEGIN GENERATED: cargo xtask bench -->";
const END: &str = "<!-- END GENERATED -->";

/// How a budget is judged.
#[derive(Clone, Copy)]
enum Rule {
    /// mean time of `name` / mean time of `baseline` in the same group.
    MaxTimeRatio(f64),
    /// throughput of `name` / throughput of `baseline` (= inverse time ratio).
    MinThroughputRatio(f64),
    /// mean time of `name` at most this many nanoseconds.
    MaxTimeNs(f64),
    /// mean time of `name` / mean time of the named other function of the
    /// same group.
    MaxTimeRatioTo(&'static str, f64),
    /// a metric at least this value.
    MinMetric(f64),
    /// a metric at most this value.
    MaxMetric(f64),
    /// a metric below this value (strictly: "faster than").
    BelowMetric(f64),
}

struct Budget {
    what: &'static str,
    group: &'static str,
    name: &'static str,
    rule: Rule,
}

/// The budgets of DESIGN §7 and the issues, by benchmark id.
const BUDGETS: &[Budget] = &[
    Budget {
        what: "pass one fd and get a byte back",
        group: "fdpass/roundtrip",
        name: "uds-fdpass",
        rule: Rule::MaxTimeRatio(1.2),
    },
    Budget {
        what: "64-byte message round trip, plaintext",
        group: "netlayer/roundtrip-64",
        name: "netlayer",
        rule: Rule::MaxTimeRatio(1.15),
    },
    Budget {
        what: "bulk throughput, plaintext",
        group: "netlayer/bulk",
        name: "netlayer",
        rule: Rule::MinThroughputRatio(0.9),
    },
    Budget {
        what: "connect + first round trip, plaintext",
        group: "netlayer/connect",
        name: "netlayer",
        rule: Rule::MaxTimeRatio(1.25),
    },
    Budget {
        what: "64-byte message round trip, e2ee",
        group: "netlayer/roundtrip-64",
        name: "netlayer-e2ee",
        rule: Rule::MaxTimeRatio(1.5),
    },
    Budget {
        what: "connect + first round trip, e2ee (absolute)",
        group: "netlayer/connect",
        name: "netlayer-e2ee",
        rule: Rule::MaxTimeNs(1_000_000.0),
    },
    Budget {
        what: "connect + first round trip, e2ee vs plaintext",
        group: "netlayer/connect",
        name: "netlayer-e2ee",
        rule: Rule::MaxTimeRatioTo("netlayer", 2.0),
    },
    Budget {
        what: "bulk throughput, e2ee",
        group: "e2ee/bulk",
        name: "e2ee",
        rule: Rule::MinThroughputRatio(0.8),
    },
    Budget {
        what: "intro server: daemon CPU per registration vs one Ed25519 sign + verify",
        group: "introd/load",
        name: "daemon CPU per registration ÷ (sign + verify)",
        rule: Rule::MaxMetric(1.2),
    },
    Budget {
        what: "intro server: resident memory per idle peer (100,000 peers)",
        group: "introd/load",
        name: "KiB/peer at 100k",
        rule: Rule::MaxMetric(6.0),
    },
    Budget {
        what: "intro server: registrations per second held (100,000 vs 1,000 peers)",
        group: "introd/load",
        name: "registrations/s at 100k ÷ at 1k",
        rule: Rule::MinMetric(0.8),
    },
    Budget {
        what: "intro server: intros per second held (100,000 vs 1,000 peers)",
        group: "introd/load",
        name: "intros/s at 100k ÷ at 1k",
        rule: Rule::MinMetric(0.8),
    },
    Budget {
        what: "intro server: intros per second (10,000 peers)",
        group: "introd/load",
        name: "intros/s at 10k",
        rule: Rule::MinMetric(50_000.0),
    },
    Budget {
        what: "intro server: CPU per intro vs dbus-daemon's per fd-carrying call",
        group: "introd/dbus",
        name: "uds-introd CPU per intro ÷ dbus-daemon CPU per call",
        rule: Rule::MaxMetric(0.5),
    },
    Budget {
        what: "connect + first byte through uds-introd vs through dbus-daemon",
        group: "introd/dbus",
        name: "connect + first byte: uds-introd ÷ dbus-daemon",
        rule: Rule::BelowMetric(1.0),
    },
    Budget {
        what: "connect + first byte through the netlayer (plaintext) vs through dbus-daemon",
        group: "introd/dbus",
        name: "connect + first byte: netlayer ÷ dbus-daemon",
        rule: Rule::BelowMetric(1.0),
    },
];

/// One criterion result.
struct Measured {
    mean_ns: f64,
    low_ns: f64,
    high_ns: f64,
    throughput: Option<(f64, &'static str)>,
}

/// One metric from a non-criterion benchmark.
struct Metric {
    value: f64,
    unit: String,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut report_only = false;
    let mut packages = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--report-only" => report_only = true,
            "-p" | "--package" => {
                packages.push(it.next().ok_or("-p needs a package name")?.clone())
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let root = workspace_root();
    let target = target_dir(&root)?;
    let metrics_dir = target.join("ocapn-bench");
    let started = SystemTime::now();
    if !report_only {
        // Results of earlier runs must not mix with this one.
        let _ = std::fs::remove_dir_all(&metrics_dir);
        std::fs::create_dir_all(&metrics_dir).map_err(|e| format!("{metrics_dir:?}: {e}"))?;
        let targets = bench_targets(&root, &packages)?;
        if targets.is_empty() {
            return Err("no benchmark targets found".into());
        }
        let mut cmd = Command::new(cargo());
        cmd.current_dir(&root)
            .args(bench_args(&targets, quick))
            .env("OCAPN_BENCH_REPORT_DIR", &metrics_dir);
        eprintln!("xtask bench: running the benchmarks (this takes several minutes)...");
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run cargo bench: {e}"))?;
        if !status.success() {
            return Err(format!("cargo bench failed ({status})"));
        }
    }
    let since = if report_only { None } else { Some(started) };
    let criterion = read_criterion(&target.join("criterion"), since)?;
    let metrics = read_metrics(&metrics_dir)?;
    if criterion.is_empty() && metrics.is_empty() {
        return Err("no benchmark results found: run without --report-only".into());
    }
    let report = render(&criterion, &metrics);
    print!("{report}");
    let path = root.join("docs/benchmarks.md");
    write_report(&path, &report)?;
    eprintln!("xtask bench: wrote {}", path.display());
    Ok(())
}

/// The benchmark targets (package, bench name) of the workspace, or of
/// `packages`.
fn bench_targets(root: &Path, packages: &[String]) -> Result<Vec<(String, String)>, String> {
    let out = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let json: Json =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    let mut found = Vec::new();
    for pkg in json["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().unwrap_or_default();
        if !packages.is_empty() && !packages.iter().any(|p| p == name) {
            continue;
        }
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let is_bench = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"));
            if is_bench && let Some(b) = t["name"].as_str() {
                found.push((name.to_owned(), b.to_owned()));
            }
        }
    }
    Ok(found)
}

/// The `cargo bench` arguments: each benchmark target by name (never
/// `--benches`, which also runs the libraries' and binaries' libtest
/// harnesses, which refuse criterion's options), then criterion's options.
fn bench_args(targets: &[(String, String)], quick: bool) -> Vec<String> {
    let mut args = vec!["bench".to_owned()];
    let mut packages: Vec<&str> = targets.iter().map(|(p, _)| p.as_str()).collect();
    packages.dedup();
    for p in packages {
        args.extend(["-p".to_owned(), p.to_owned()]);
    }
    for (_, b) in targets {
        args.extend(["--bench".to_owned(), b.clone()]);
    }
    if quick {
        args.extend(["--", "--warm-up-time", "1", "--measurement-time", "2"].map(str::to_owned));
    }
    args
}

fn target_dir(root: &Path) -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let out = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let json: Json =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    json["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata gave no target_directory".into())
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") {
                found.push(p);
            } else {
                walk(&p, found);
            }
        }
    }
}

type Groups<T> = BTreeMap<String, BTreeMap<String, T>>;

fn read_criterion(dir: &Path, since: Option<SystemTime>) -> Result<Groups<Measured>, String> {
    let mut dirs = Vec::new();
    walk(dir, &mut dirs);
    let mut out: Groups<Measured> = BTreeMap::new();
    for d in dirs {
        let est = d.join("estimates.json");
        let Ok(meta) = std::fs::metadata(&est) else {
            continue;
        };
        if let (Some(since), Ok(modified)) = (since, meta.modified())
            && modified < since
        {
            continue;
        }
        let read = |p: &Path| -> Result<Json, String> {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{p:?}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{p:?}: {e}"))
        };
        let bench = read(&d.join("benchmark.json"))?;
        let est = read(&est)?;
        let mean = &est["mean"];
        let num = |v: &Json| v.as_f64().unwrap_or(f64::NAN);
        let throughput = match &bench["throughput"] {
            Json::Object(m) => m
                .get("Bytes")
                .map(|b| (num(b), "B"))
                .or_else(|| m.get("Elements").map(|e| (num(e), "elem"))),
            _ => None,
        };
        let group = bench["group_id"].as_str().unwrap_or("?").to_owned();
        let mut name = bench["function_id"].as_str().unwrap_or("").to_owned();
        if let Some(v) = bench["value_str"].as_str() {
            name = if name.is_empty() {
                v.to_owned()
            } else {
                format!("{name}/{v}")
            };
        }
        out.entry(group).or_default().insert(
            name,
            Measured {
                mean_ns: num(&mean["point_estimate"]),
                low_ns: num(&mean["confidence_interval"]["lower_bound"]),
                high_ns: num(&mean["confidence_interval"]["upper_bound"]),
                throughput,
            },
        );
    }
    Ok(out)
}

fn read_metrics(dir: &Path) -> Result<Groups<Metric>, String> {
    let mut out: Groups<Metric> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{p:?}: {e}"))?;
        let json: Json = serde_json::from_str(&text).map_err(|e| format!("{p:?}: {e}"))?;
        for row in json.as_array().into_iter().flatten() {
            let (Some(group), Some(name), Some(value)) = (
                row["group"].as_str(),
                row["name"].as_str(),
                row["value"].as_f64(),
            ) else {
                return Err(format!("{p:?}: rows need group, name and value"));
            };
            out.entry(group.to_owned()).or_default().insert(
                name.to_owned(),
                Metric {
                    value,
                    unit: row["unit"].as_str().unwrap_or("").to_owned(),
                },
            );
        }
    }
    Ok(out)
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.1} ")
    }
}

fn throughput(m: &Measured) -> String {
    let ops = format!("{}op/s", fmt_rate(1e9 / m.mean_ns));
    let data = match m.throughput {
        Some((bytes, "B")) => {
            let bps = bytes / (m.mean_ns / 1e9);
            if bps >= 1e9 {
                format!("{:.2} GB/s", bps / 1e9)
            } else {
                format!("{:.1} MB/s", bps / 1e6)
            }
        }
        Some((n, _)) => format!("{}elem/s", fmt_rate(n / (m.mean_ns / 1e9))),
        None => return ops,
    };
    format!("{data}, {ops}")
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}, {rustc}")
}

pub(crate) fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn judge(b: &Budget, c: &Groups<Measured>, m: &Groups<Metric>) -> Option<(String, String, bool)> {
    let get = |name: &str| c.get(b.group).and_then(|g| g.get(name));
    Some(match b.rule {
        Rule::MaxTimeRatio(limit) => {
            let r = get(b.name)?.mean_ns / get("baseline")?.mean_ns;
            (
                format!("{r:.2}× baseline"),
                format!("≤ {limit}×"),
                r <= limit,
            )
        }
        Rule::MinThroughputRatio(limit) => {
            let r = get("baseline")?.mean_ns / get(b.name)?.mean_ns;
            (
                format!("{r:.2}× baseline throughput"),
                format!("≥ {limit}×"),
                r >= limit,
            )
        }
        Rule::MaxTimeNs(limit) => {
            let t = get(b.name)?.mean_ns;
            (fmt_time(t), format!("≤ {}", fmt_time(limit)), t <= limit)
        }
        Rule::MaxTimeRatioTo(other, limit) => {
            let r = get(b.name)?.mean_ns / get(other)?.mean_ns;
            (
                format!("{r:.2}× `{other}`"),
                format!("≤ {limit}×"),
                r <= limit,
            )
        }
        Rule::MinMetric(limit) => {
            let x = m.get(b.group)?.get(b.name)?;
            (
                fmt_metric(x),
                format!("≥ {}", fmt_limit(limit, &x.unit)),
                x.value >= limit,
            )
        }
        Rule::MaxMetric(limit) => {
            let x = m.get(b.group)?.get(b.name)?;
            (
                fmt_metric(x),
                format!("≤ {}", fmt_limit(limit, &x.unit)),
                x.value <= limit,
            )
        }
        Rule::BelowMetric(limit) => {
            let x = m.get(b.group)?.get(b.name)?;
            (
                fmt_metric(x),
                format!("< {}", fmt_limit(limit, &x.unit)),
                x.value < limit,
            )
        }
    })
}

/// A number with as many decimals as its size calls for: `97486`,
/// `7.47`, `0.962`.
fn fmt_number(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A budget's limit with the unit of its metric: `1.2×`, `6 KiB`.
fn fmt_limit(limit: f64, unit: &str) -> String {
    match unit {
        "×" => format!("{limit}×"),
        "" => format!("{limit}"),
        unit => format!("{limit} {unit}"),
    }
}

/// A metric and its unit; ratios (unit `×`) are written `0.96×`.
fn fmt_metric(x: &Metric) -> String {
    match x.unit.as_str() {
        "×" => format!("{}×", fmt_number(x.value)),
        "" => fmt_number(x.value),
        unit => format!("{} {unit}", fmt_number(x.value)),
    }
}

fn render(c: &Groups<Measured>, m: &Groups<Metric>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s, "Last run: {} on {}.\n", today(), machine());
    let _ = writeln!(s, "### Budgets\n");
    let _ = writeln!(s, "| what | measured | budget | within |");
    let _ = writeln!(s, "|---|---|---|---|");
    for b in BUDGETS {
        match judge(b, c, m) {
            Some((measured, budget, ok)) => {
                let mark = if ok { "yes" } else { "**NO**" };
                let _ = writeln!(s, "| {} | {measured} | {budget} | {mark} |", b.what);
            }
            None => {
                let _ = writeln!(s, "| {} | not measured in this run | | |", b.what);
            }
        }
    }
    for (group, rows) in c {
        let _ = writeln!(s, "\n### {group}\n");
        let _ = writeln!(
            s,
            "| benchmark | mean time (95% CI) | rate | vs `baseline` |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        let base = rows.get("baseline").map(|b| b.mean_ns);
        for (name, r) in rows {
            let ratio = match base {
                Some(b) if name != "baseline" => format!("{:.2}×", r.mean_ns / b),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} ({} – {}) | {} | {ratio} |",
                fmt_time(r.mean_ns),
                fmt_time(r.low_ns),
                fmt_time(r.high_ns),
                throughput(r)
            );
        }
    }
    for (group, rows) in m {
        let _ = writeln!(s, "\n### {group}\n");
        let _ = writeln!(s, "| metric | value |");
        let _ = writeln!(s, "|---|---|");
        for (name, x) in rows {
            let _ = writeln!(s, "| {name} | {} |", fmt_metric(x));
        }
    }
    let _ = writeln!(s, "{END}");
    s
}

fn write_report(path: &Path, report: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures written by `cargo xtask bench`.\n\n".to_owned()
    });
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if b > a => {
            let rest = old[b + END.len()..].trim_start_matches('\n');
            let sep = if rest.is_empty() { "" } else { "\n" };
            format!("{}{report}{sep}{rest}", &old[..a])
        }
        _ => format!("{}\n{report}", old.trim_end()),
    };
    std::fs::write(path, new).map_err(|e| format!("{path:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask bench --quick` failed: `--benches` also ran the
    /// libraries' libtest harness, which rejected `--warm-up-time`.
    #[test]
    fn quick_runs_only_benchmark_targets() {
        let targets = vec![
            ("uds-syrup".to_owned(), "syrup".to_owned()),
            ("uds-netlayer".to_owned(), "netlayer".to_owned()),
        ];
        let args = bench_args(&targets, true);
        assert!(!args.iter().any(|a| a == "--benches"), "{args:?}");
        let joined = args.join(" ");
        assert!(joined.contains("--bench syrup"), "{joined}");
        assert!(joined.contains("--bench netlayer"), "{joined}");
        assert!(
            joined.ends_with("-- --warm-up-time 1 --measurement-time 2"),
            "{joined}"
        );
    }

    fn metrics(rows: &[(&str, &str, f64, &str)]) -> Groups<Metric> {
        let mut out: Groups<Metric> = BTreeMap::new();
        for &(group, name, value, unit) in rows {
            out.entry(group.to_owned()).or_default().insert(
                name.to_owned(),
                Metric {
                    value,
                    unit: unit.to_owned(),
                },
            );
        }
        out
    }

    fn budget(name: &str) -> &'static Budget {
        BUDGETS.iter().find(|b| b.name == name).unwrap()
    }

    #[test]
    fn ratios_against_the_floor_and_dbus_are_judged() {
        let m = metrics(&[
            (
                "introd/load",
                "daemon CPU per registration ÷ (sign + verify)",
                1.31,
                "×",
            ),
            ("introd/load", "KiB/peer at 100k", 5.5, "KiB"),
            ("introd/load", "registrations/s at 100k ÷ at 1k", 0.79, "×"),
            (
                "introd/dbus",
                "connect + first byte: uds-introd ÷ dbus-daemon",
                1.0,
                "×",
            ),
            (
                "introd/dbus",
                "connect + first byte: netlayer ÷ dbus-daemon",
                0.998,
                "×",
            ),
        ]);
        let c = Groups::new();
        let judged = |name| judge(budget(name), &c, &m).unwrap();
        assert_eq!(
            judged("daemon CPU per registration ÷ (sign + verify)"),
            ("1.31×".to_owned(), "≤ 1.2×".to_owned(), false)
        );
        assert_eq!(
            judged("KiB/peer at 100k"),
            ("5.50 KiB".to_owned(), "≤ 6 KiB".to_owned(), true)
        );
        assert_eq!(
            judged("registrations/s at 100k ÷ at 1k"),
            ("0.790×".to_owned(), "≥ 0.8×".to_owned(), false)
        );
        // "Faster than" is strict: equal is not within.
        assert!(!judged("connect + first byte: uds-introd ÷ dbus-daemon").2);
        assert!(judged("connect + first byte: netlayer ÷ dbus-daemon").2);
        // A budget whose metric is missing (a smaller run, or dbus-daemon
        // not installed) is not judged.
        assert!(judge(budget("intros/s at 100k ÷ at 1k"), &c, &m).is_none());
        let report = render(&c, &m);
        assert!(
            report.contains(
                "| intro server: intros per second held (100,000 vs 1,000 peers) | not measured"
            ),
            "{report}"
        );
        assert!(
            report.contains("| intro server: resident memory per idle peer (100,000 peers) | 5.50 KiB | ≤ 6 KiB | yes |"),
            "{report}"
        );
    }

    #[test]
    fn metrics_files_are_read_with_their_units() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("dbus.json"),
            r#"[{"group":"introd/dbus","name":"uds-introd CPU per intro ÷ dbus-daemon CPU per call","value":0.45,"unit":"×"}]"#,
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a metrics file").unwrap();
        let m = read_metrics(&dir).unwrap();
        std::fs::write(dir.join("bad.json"), r#"[{"group":"g"}]"#).unwrap();
        let bad = read_metrics(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let b = budget("uds-introd CPU per intro ÷ dbus-daemon CPU per call");
        assert_eq!(
            judge(b, &Groups::new(), &m).unwrap(),
            ("0.450×".to_owned(), "≤ 0.5×".to_owned(), true)
        );
        let Err(e) = bad else {
            panic!("a row without a value was accepted")
        };
        assert!(e.contains("rows need group, name and value"), "{e}");
    }

    /// Metric budgets name metrics by string: each name (up to its size,
    /// " at 100k") must be written by some benchmark.
    #[test]
    fn every_metric_budget_names_a_metric_a_benchmark_writes() {
        let mut sources = String::new();
        let crates = crate::workspace_root().join("crates");
        for c in std::fs::read_dir(crates).unwrap().flatten() {
            let mut files = Vec::new();
            collect_rs(&c.path().join("benches"), &mut files);
            for f in files {
                sources += &std::fs::read_to_string(f).unwrap();
            }
        }
        for b in BUDGETS {
            if let Rule::MinMetric(_) | Rule::MaxMetric(_) | Rule::BelowMetric(_) = b.rule {
                let stem = b.name.split(" at ").next().unwrap();
                assert!(sources.contains(stem), "no benchmark writes {:?}", b.name);
                assert!(
                    sources.contains(b.group),
                    "no benchmark writes {:?}",
                    b.group
                );
            }
        }
    }

    fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_rs(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_workspace_has_benchmarks_and_no_library_among_them() {
        let targets = bench_targets(&crate::workspace_root(), &[]).unwrap();
        for bench in ["load", "dbus"] {
            assert!(
                targets.iter().any(|(p, b)| p == "uds-introd" && b == bench),
                "{bench}: {targets:?}"
            );
        }
        assert!(targets.iter().all(|(p, b)| p != b), "{targets:?}");
    }
}
