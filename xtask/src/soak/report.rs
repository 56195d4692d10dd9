//! The summary of a soak run, as markdown (printed at the end, and the
//! figures kept in `docs/testing.md`).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ledger::{ClassRow, Latency, Totals};
use super::resources::{DaemonStatus, Sample, fmt_kib};

/// What was run, where.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunInfo {
    pub command: String,
    pub machine: String,
    pub date: String,
    pub minutes: f64,
    pub wall_secs: f64,
    /// The longest the soak's own loop did not run while faults were
    /// injected (seconds).
    pub max_stall_secs: f64,
    pub peers: usize,
    pub plaintext_peers: usize,
    pub rate: f64,
}

/// One kind of fault and how often it was injected.
#[derive(Debug, Clone)]
pub(crate) struct FaultRow {
    pub name: &'static str,
    pub count: u64,
    pub detail: String,
}

/// One daemon's figures.
#[derive(Debug, Clone, Default)]
pub(crate) struct DaemonRow {
    pub name: String,
    pub wire: String,
    pub incarnations: u32,
    pub base: Sample,
    pub base_clients: u64,
    pub peak_rss_kib: u64,
    pub fin: Sample,
    pub fin_clients: u64,
    pub rss_limit_kib: u64,
    /// The final `status` (of the last incarnation).
    pub status: DaemonStatus,
    /// Seconds the quiet period took until the daemon was idle.
    pub settle_secs: f64,
}

/// The long-lived peers' figures.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerFigures {
    pub long_lived: usize,
    pub fds_back: usize,
    /// (baseline, final) fds of each long-lived peer that was not back.
    pub fds_off: Vec<(String, usize, usize)>,
    pub fds_base_range: (usize, usize),
    pub rss_base_range: (u64, u64),
    pub rss_fin_range: (u64, u64),
    /// The netlayer counters summed over the peers that answered `stats`.
    pub stats: BTreeMap<String, u64>,
}

/// One pass/fail check.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything the summary shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub run: RunInfo,
    pub totals: Totals,
    pub latency: Vec<(String, Latency)>,
    pub classes: Vec<ClassRow>,
    pub faults: Vec<FaultRow>,
    pub daemons: Vec<DaemonRow>,
    pub peers: PeerFigures,
    pub checks: Vec<Check>,
}

impl Summary {
    /// Whether every check passed.
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// `s` with every designator (52 base32 characters) cut to its first 8
/// characters and `…`, so that messages fit in a table.
pub(crate) fn abbreviate_designators(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.len() == 52 {
            out.push_str(&word[..8]);
            out.push('…');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_ascii_lowercase() || ('2'..='7').contains(&c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A table cell: no `|`, no line breaks, at most `max` characters.
pub(crate) fn cell(s: &str, max: usize) -> String {
    let s = s.replace('|', "/").replace(['\n', '\r'], " ");
    if s.chars().count() <= max {
        s
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "–".to_owned()
    } else {
        format!("{:.1} %", 100.0 * n as f64 / of as f64)
    }
}

/// Renders the summary as markdown.
pub(crate) fn render(s: &Summary) -> String {
    let mut o = String::new();
    let r = &s.run;
    let verdict = if s.passed() { "PASSED" } else { "FAILED" };
    let _ = writeln!(o, "### Soak: {verdict}\n");
    let _ = writeln!(
        o,
        "`{}` on {}, {}: {} peers ({} plaintext), {:.0} dials/s, {:.1} min of faults \
         ({:.1} min in all).\n",
        r.command,
        r.machine,
        r.date,
        r.peers,
        r.plaintext_peers,
        r.rate,
        r.minutes,
        r.wall_secs / 60.0
    );
    if r.max_stall_secs >= 1.0 {
        let _ = writeln!(
            o,
            "The soak's own loop stalled for up to {:.1} s (an overloaded machine): fault \
             durations and latencies measured by the soak are stretched by as much.\n",
            r.max_stall_secs
        );
    }

    let t = &s.totals;
    let _ = writeln!(o, "| dials | count | share |\n|---|---:|---:|");
    let rows: [(&str, u64); 9] = [
        ("made", t.dials),
        (
            "connected (reply received through the connection)",
            t.connected,
        ),
        ("failed while a fault explains it", t.explained),
        ("failed with no fault to explain it", t.unexplained),
        ("must-fail dials that failed", t.refused_as_expected),
        ("must-fail dials that connected", t.wrongly_connected),
        ("hung (no outcome by the deadline)", t.hung),
        ("abandoned (the soak killed the dialer)", t.abandoned),
        ("still pending at the end", t.pending),
    ];
    for (name, n) in rows {
        let _ = writeln!(o, "| {name} | {n} | {} |", pct(n, t.dials));
    }
    let _ = writeln!(
        o,
        "\nCross-checks with the acceptors: {} misdelivered, {} accepted twice, {} connected \
         without the target accepting, {} accepted but failed at the dialer (it gave up first).\n",
        t.misdelivered, t.duplicate_accepts, t.ok_without_accept, t.accepted_but_failed
    );

    let _ = writeln!(
        o,
        "| connected dials | count | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|"
    );
    for (name, l) in &s.latency {
        let _ = writeln!(
            o,
            "| {name} | {} | {} ms | {} ms | {} ms | {} ms |",
            l.count, l.p50, l.p90, l.p99, l.max
        );
    }

    if !s.classes.is_empty() {
        let _ = writeln!(
            o,
            "\n| dial error | explained | unexplained | must-fail | example |\n|---|---:|---:|---:|---|"
        );
        for c in &s.classes {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                c.class.name(),
                c.explained,
                c.unexplained,
                c.expected,
                cell(&abbreviate_designators(&c.example), 160)
            );
        }
    }

    let _ = writeln!(o, "\n| fault | count | details |\n|---|---:|---|");
    for f in &s.faults {
        let _ = writeln!(o, "| {} | {} | {} |", f.name, f.count, cell(&f.detail, 160));
    }

    if !s.daemons.is_empty() {
        let _ = write!(o, "\n| daemon |");
        for d in &s.daemons {
            let _ = write!(o, " {} |", d.name);
        }
        let _ = write!(o, "\n|---|");
        for _ in &s.daemons {
            let _ = write!(o, "---|");
        }
        o.push('\n');
        let mut row = |name: &str, f: &dyn Fn(&DaemonRow) -> String| {
            let _ = write!(o, "| {name} |");
            for d in &s.daemons {
                let _ = write!(o, " {} |", cell(&f(d), 400));
            }
            o.push('\n');
        };
        row("wire shape", &|d| d.wire.clone());
        row("processes (1 + restarts)", &|d| d.incarnations.to_string());
        row("fds: baseline → final (clients)", &|d| {
            format!(
                "{} ({}) → {} ({})",
                d.base.fds, d.base_clients, d.fin.fds, d.fin_clients
            )
        });
        row("RSS: baseline → peak → final (allowed)", &|d| {
            format!(
                "{} → {} → {} ({})",
                fmt_kib(d.base.rss_kib),
                fmt_kib(d.peak_rss_kib),
                fmt_kib(d.fin.rss_kib),
                fmt_kib(d.rss_limit_kib)
            )
        });
        row("idle after the quiet period", &|d| {
            format!("{:.0} s", d.settle_secs)
        });
        // Two status figures side by side, named next to their label.
        let pair = |a: &'static str, b: &'static str| {
            move |d: &DaemonRow| format!("{} / {}", d.status.get(a), d.status.get(b))
        };
        row(
            "final: clients / registered",
            &pair("clients", "registered"),
        );
        row(
            "final: sockets-held / intro-bytes-held",
            &pair("sockets-held", "intro-bytes-held"),
        );
        row(
            "final: intros waiting / queued",
            &pair("intros-waiting", "intros-queued"),
        );
        row("last process: connections accepted", &|d| {
            d.status.get("accepted").to_string()
        });
        row(
            "last process: intros received / forwarded",
            &pair("intros-received", "intros-forwarded"),
        );
        row(
            "last process: intros parked / dropped",
            &pair("intros-parked", "intros-dropped"),
        );
        row("last process: refusals", &|d| {
            let r = d.status.nonzero_refusals();
            if r.is_empty() {
                "none".to_owned()
            } else {
                r.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        });
    }

    let p = &s.peers;
    let _ = writeln!(
        o,
        "\nLong-lived peers (alive from the baseline to the end): {}; fds back to baseline: {} \
         (baseline {}–{} fds); RSS {}–{} at the baseline, {}–{} at the end.",
        p.long_lived,
        p.fds_back,
        p.fds_base_range.0,
        p.fds_base_range.1,
        fmt_kib(p.rss_base_range.0),
        fmt_kib(p.rss_base_range.1),
        fmt_kib(p.rss_fin_range.0),
        fmt_kib(p.rss_fin_range.1),
    );
    for (name, b, f) in &p.fds_off {
        let _ = writeln!(o, "* {name}: {b} fds at the baseline, {f} at the end");
    }
    if !p.stats.is_empty() {
        let stats: Vec<String> = p.stats.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "Peers' netlayer counters (sum): {}.", stats.join(", "));
    }

    let _ = writeln!(o, "\n| check | result |\n|---|---|");
    for c in &s.checks {
        let mark = if c.ok { "ok" } else { "**FAILED**" };
        if c.detail.is_empty() {
            let _ = writeln!(o, "| {} | {mark} |", cell(&c.name, 200));
        } else {
            let _ = writeln!(
                o,
                "| {} | {mark}: {} |",
                cell(&c.name, 200),
                cell(&c.detail, 300)
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::ledger::ErrorClass;
    use crate::soak::resources::parse_status;

    fn summary() -> Summary {
        Summary {
            run: RunInfo {
                command: "cargo xtask soak --minutes 0.5 --peers 6 --seed 1".into(),
                machine: "Some CPU, 2 cores".into(),
                date: "2026-01-01".into(),
                minutes: 0.5,
                wall_secs: 95.0,
                max_stall_secs: 0.1,
                peers: 6,
                plaintext_peers: 2,
                rate: 12.0,
            },
            totals: Totals {
                dials: 200,
                connected: 190,
                explained: 8,
                refused_as_expected: 2,
                ..Totals::default()
            },
            latency: vec![("all".into(), Latency::of(vec![1, 2, 3]))],
            classes: vec![ClassRow {
                class: ErrorClass::NoAnswer,
                explained: 8,
                unexplained: 0,
                expected: 2,
                example: "connect: a | b\nc".into(),
            }],
            faults: vec![FaultRow {
                name: "daemon killed",
                count: 2,
                detail: "A down 1.2–2.9 s".into(),
            }],
            daemons: vec![DaemonRow {
                name: "A".into(),
                wire: "draft".into(),
                incarnations: 3,
                base: Sample {
                    fds: 30,
                    rss_kib: 6000,
                },
                base_clients: 6,
                peak_rss_kib: 9000,
                fin: Sample {
                    fds: 30,
                    rss_kib: 7000,
                },
                fin_clients: 6,
                rss_limit_kib: 14192,
                status: parse_status("clients: 6\nregistered: 6\nrefused: protocol=3 policy=0\n")
                    .unwrap(),
                settle_secs: 12.0,
            }],
            peers: PeerFigures {
                long_lived: 5,
                fds_back: 5,
                ..PeerFigures::default()
            },
            checks: vec![Check {
                name: "no dial hung".into(),
                ok: true,
                detail: String::new(),
            }],
        }
    }

    #[test]
    fn a_passing_summary() {
        let s = summary();
        assert!(s.passed());
        let md = render(&s);
        assert!(md.starts_with("### Soak: PASSED\n"), "{md}");
        assert!(!md.contains("stalled"));
        assert!(md.contains("| made | 200 | 100.0 % |"), "{md}");
        assert!(
            md.contains("| connected (reply received through the connection) | 190 | 95.0 % |")
        );
        assert!(
            md.contains("| all | 3 | 2 ms | 3 ms | 3 ms | 3 ms |"),
            "{md}"
        );
        // Cells are made safe for a table.
        assert!(md.contains("| connect: a / b c |"), "{md}");
        assert!(
            md.contains("| fds: baseline → final (clients) | 30 (6) → 30 (6) |"),
            "{md}"
        );
        assert!(
            md.contains("5.9 MiB → 8.8 MiB → 6.8 MiB (13.9 MiB)"),
            "{md}"
        );
        assert!(
            md.contains("| last process: refusals | protocol 3 |"),
            "{md}"
        );
        assert!(md.contains("| no dial hung | ok |"));
    }

    #[test]
    fn a_failing_summary_says_so_and_why() {
        let mut s = summary();
        s.checks.push(Check {
            name: "daemon fds back to baseline".into(),
            ok: false,
            detail: "A: 31 fds with 6 clients, baseline 30 with 6".into(),
        });
        assert!(!s.passed());
        let md = render(&s);
        assert!(md.starts_with("### Soak: FAILED\n"));
        s.run.max_stall_secs = 2.5;
        assert!(render(&s).contains("stalled for up to 2.5 s"));
        assert!(md.contains(
            "| daemon fds back to baseline | **FAILED**: A: 31 fds with 6 clients, baseline 30 with 6 |"
        ));
    }

    #[test]
    fn designators_are_abbreviated() {
        let d = "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga";
        assert_eq!(
            abbreviate_designators(&format!("could not reach {d}: via {d}: closed")),
            "could not reach hvabpq7i…: via hvabpq7i…: closed"
        );
        // Other words are left alone, even long ones.
        assert_eq!(
            abbreviate_designators("no reply within 10s"),
            "no reply within 10s"
        );
        assert_eq!(abbreviate_designators(&d[..51]), &d[..51]);
    }

    #[test]
    fn cells_are_cut() {
        assert_eq!(cell("abcdef", 4), "abc…");
        assert_eq!(cell("abc", 4), "abc");
        assert_eq!(pct(1, 0), "–");
        assert_eq!(pct(1, 3), "33.3 %");
    }
}
