//! The end of a run: faults ended, peers restored, a final round of
//! dials, the quiet period and the final figures, shutdown, and the checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ledger::{self, Expect, Mode, Outcome, PeerId, Verdict};
use super::process::{DaemonState, Kind, KindStats, PeerState, log_tail, signal};
use super::report::{Check, DaemonRow, FaultRow, PeerFigures, Summary};
use super::resources::{self, DAEMON_TOLERANCE, PEER_FD_TOLERANCE, Sample};
use super::{BURST, DIAL_DEADLINE, QUIET_PATIENCE, QUIT_PATIENCE, Soak};

impl Soak {
    /// Ends every fault: daemons restarted, stopped peers continued,
    /// misbehaving clients gone.
    pub(super) fn end_faults(&mut self) {
        let now = Instant::now();
        for d in &mut self.daemons {
            match d.state {
                DaemonState::Down { since, .. } => {
                    d.state = DaemonState::Down {
                        since,
                        restart_at: now,
                    }
                }
                DaemonState::Stopped { since, .. } => {
                    d.state = DaemonState::Stopped { since, until: now }
                }
                _ => {}
            }
        }
        for p in &mut self.peers {
            if let PeerState::Stopped { since, .. } = p.state {
                p.state = PeerState::Stopped { since, until: now };
            }
        }
        for m in &mut self.misbehaving {
            if m.kind == Kind::Deaf {
                m.deadline = now;
            }
        }
        let done = self.run_until(Duration::from_secs(60), |s| {
            s.daemons.iter().all(|d| d.state == DaemonState::Up)
                && s.peers
                    .iter()
                    .all(|p| !matches!(p.state, PeerState::Stopped { .. }))
                && s.misbehaving.is_empty()
                && s.cli.is_none()
        });
        if !done {
            self.problems
                .push("the faults could not all be ended within 60 s".into());
        }
    }

    /// Brings the number of live peers back to `--peers`.
    pub(super) fn restore_peers(&mut self) {
        while self.live_peers() < self.args.peers {
            if let Err(e) = self.join() {
                self.problems.push(e);
                break;
            }
        }
        while self.live_peers() > self.args.peers {
            // Newcomers leave first: long-lived peers stay for the checks.
            let p = (0..self.peers.len())
                .rev()
                .find(|p| self.peers[*p].state == PeerState::Ready && !self.peers[*p].long_lived)
                .or_else(|| {
                    (0..self.peers.len()).find(|p| self.peers[*p].state == PeerState::Ready)
                });
            let Some(p) = p else { break };
            if let Err(e) = self.leave(Some(p), false) {
                self.problems.push(e);
            }
        }
        let done = self.run_until(QUIT_PATIENCE, |s| {
            s.peers
                .iter()
                .all(|p| matches!(p.state, PeerState::Ready | PeerState::Gone))
        });
        if !done {
            self.problems
                .push("peers did not all start or leave within 70 s".into());
        }
    }

    /// Every ready peer dials a random peer it can reach, with no fault
    /// anywhere: all must connect. Returns the failures.
    pub(super) fn final_round(&mut self) -> Vec<String> {
        println!("Final round: every peer dials once, without faults");
        let mut ids = Vec::new();
        for dialer in self.dialers(None) {
            let mode = self.peers[dialer].mode;
            let targets =
                self.targets(dialer, (mode == Mode::Plaintext).then_some(Mode::Plaintext));
            if let Some(&target) = self.rng.pick(&targets) {
                let uri = self.peers[target].uri.clone().unwrap_or_default();
                if let Some(id) = self.dial_to(Some(dialer), uri, Expect::Connect, Some(target)) {
                    ids.push(id);
                }
            }
        }
        let limit = Duration::from_secs_f64(DIAL_DEADLINE + 10.0);
        self.run_until(limit, |s| {
            ids.iter()
                .all(|id| s.ledger.get(*id).is_some_and(|d| d.outcome.is_some()))
        });
        let mut failures = Vec::new();
        for id in &ids {
            let Some(d) = self.ledger.get(*id) else {
                continue;
            };
            match &d.outcome {
                Some((Outcome::Ok { .. }, _)) => {}
                other => failures.push(format!(
                    "{} → {}: {other:?}",
                    self.name_of(d.dialer),
                    d.target.map_or("?", |t| self.peers[t].name.as_str())
                )),
            }
        }
        if ids.is_empty() {
            failures.push("no peer could dial".into());
        }
        failures
    }

    /// Waits until both daemons are idle (status) with their fds back at
    /// the baseline; returns, per daemon, the seconds it took and the
    /// problems left if it never was.
    pub(super) fn wait_idle(&mut self) -> Vec<(f64, Vec<String>)> {
        let start = Instant::now();
        let mut result: Vec<Option<(f64, Vec<String>)>> = vec![None; self.daemons.len()];
        let mut last_problems: Vec<Vec<String>> = vec![Vec::new(); self.daemons.len()];
        let live = self.live_peers();
        while start.elapsed() < QUIET_PATIENCE && result.iter().any(Option::is_none) {
            self.run_for(Duration::from_secs(1));
            for i in 0..self.daemons.len() {
                if result[i].is_some() {
                    continue;
                }
                let Some(pid) = self.daemons[i].pid() else {
                    continue;
                };
                // fds first: the status request opens an admin connection.
                let fds = resources::fd_count(pid).unwrap_or(0);
                let mut problems = match self.status(i) {
                    Ok(st) => {
                        let mut p = resources::idle_problems(&st, live);
                        if let Some((base, base_clients)) = self.daemons[i].baseline
                            && let Err(e) = resources::fds_back(
                                base,
                                base_clients,
                                Sample { fds, rss_kib: 0 },
                                st.get("clients"),
                                &DAEMON_TOLERANCE,
                            )
                        {
                            p.push(e);
                        }
                        p
                    }
                    Err(e) => vec![e],
                };
                if problems.is_empty() {
                    result[i] = Some((start.elapsed().as_secs_f64(), Vec::new()));
                } else {
                    problems.sort();
                    last_problems[i] = problems;
                }
            }
        }
        result
            .into_iter()
            .zip(last_problems)
            .map(|(r, p)| r.unwrap_or((start.elapsed().as_secs_f64(), p)))
            .collect()
    }

    /// The daemons' final figures, and the problems found.
    pub(super) fn measure_daemons(
        &mut self,
        settle: &[(f64, Vec<String>)],
    ) -> Result<(Vec<DaemonRow>, Vec<String>), String> {
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        for (i, (settle_secs, settle_problems)) in settle.iter().enumerate() {
            // A daemon that cannot be measured is a failed check, not a
            // lost run.
            let daemon = self.daemons[i].name;
            let Some(pid) = self.daemons[i].pid() else {
                problems.push(format!("daemon {daemon}: down at the final measurement"));
                continue;
            };
            let Some(fin) = self.settled_sample(pid) else {
                problems.push(format!("daemon {daemon}: cannot read its /proc figures"));
                continue;
            };
            let st = self.status(i)?;
            let d = &mut self.daemons[i];
            d.peak_rss_kib = d.peak_rss_kib.max(fin.rss_kib);
            let (base, base_clients) = d.baseline.unwrap_or_default();
            let name = d.name;
            for p in settle_problems {
                problems.push(format!("daemon {name}: {p}"));
            }
            if let Err(e) = resources::fds_back(
                base,
                base_clients,
                fin,
                st.get("clients"),
                &DAEMON_TOLERANCE,
            ) {
                problems.push(format!("daemon {name} fds: {e}"));
            }
            if let Err(e) = resources::rss_back(base.rss_kib, fin.rss_kib, &DAEMON_TOLERANCE) {
                problems.push(format!("daemon {name}: {e}"));
            }
            rows.push(DaemonRow {
                name: name.to_owned(),
                wire: d.wire.to_owned(),
                incarnations: d.incarnations,
                base,
                base_clients,
                peak_rss_kib: d.peak_rss_kib,
                fin,
                fin_clients: st.get("clients"),
                rss_limit_kib: resources::rss_limit(base.rss_kib, &DAEMON_TOLERANCE),
                status: st,
                settle_secs: *settle_secs,
            });
        }
        problems.dedup();
        Ok((rows, problems))
    }

    /// The long-lived peers' final figures (waiting up to 20 s for their
    /// fds to come back).
    pub(super) fn measure_peers(&mut self) -> PeerFigures {
        let long: Vec<PeerId> = (0..self.peers.len())
            .filter(|p| self.peers[*p].long_lived && self.peers[*p].state == PeerState::Ready)
            .collect();
        let back = |s: &Soak, p: PeerId| {
            let peer = &s.peers[p];
            match (peer.baseline, resources::fd_count(peer.proc.pid())) {
                (Some(b), Some(n)) => n <= b.fds + PEER_FD_TOLERANCE,
                _ => false,
            }
        };
        self.run_until(Duration::from_secs(20), |s| {
            long.iter().all(|p| back(s, *p))
        });
        let mut f = PeerFigures {
            long_lived: long.len(),
            fds_base_range: (usize::MAX, 0),
            rss_base_range: (u64::MAX, 0),
            rss_fin_range: (u64::MAX, 0),
            ..PeerFigures::default()
        };
        for &p in &long {
            let pid = self.peers[p].proc.pid();
            let Some(fin) = self.settled_sample(pid) else {
                continue;
            };
            let peer = &self.peers[p];
            let base = peer.baseline.unwrap_or_default();
            f.fds_base_range = (
                f.fds_base_range.0.min(base.fds),
                f.fds_base_range.1.max(base.fds),
            );
            f.rss_base_range = (
                f.rss_base_range.0.min(base.rss_kib),
                f.rss_base_range.1.max(base.rss_kib),
            );
            f.rss_fin_range = (
                f.rss_fin_range.0.min(fin.rss_kib),
                f.rss_fin_range.1.max(fin.rss_kib),
            );
            if fin.fds <= base.fds + PEER_FD_TOLERANCE {
                f.fds_back += 1;
            } else {
                f.fds_off.push((peer.name.clone(), base.fds, fin.fds));
            }
        }
        if long.is_empty() {
            f.fds_base_range = (0, 0);
            f.rss_base_range = (0, 0);
            f.rss_fin_range = (0, 0);
        }
        f
    }

    pub(super) fn collect_stats(&mut self) {
        let ready: Vec<PeerId> = (0..self.peers.len())
            .filter(|p| self.peers[*p].state == PeerState::Ready)
            .collect();
        for &p in &ready {
            let _ = self.peers[p].proc.send("stats");
        }
        self.run_until(Duration::from_secs(10), |s| {
            ready.iter().all(|p| s.peers[*p].stats.is_some())
        });
    }

    pub(super) fn sum_stats(&self) -> BTreeMap<String, u64> {
        let mut sum = BTreeMap::new();
        for p in &self.peers {
            for (k, v) in p.stats.iter().flatten() {
                *sum.entry(k.clone()).or_default() += v;
            }
        }
        sum
    }

    /// Peers quit; daemons get SIGTERM. Returns the problems.
    pub(super) fn shutdown(&mut self) -> Vec<String> {
        println!("Stopping: every peer quits, the daemons get SIGTERM");
        let ready: Vec<PeerId> = (0..self.peers.len())
            .filter(|p| self.peers[*p].state == PeerState::Ready)
            .collect();
        for p in ready {
            if let Err(e) = self.leave(Some(p), false) {
                self.problems.push(e);
            }
        }
        self.run_until(QUIT_PATIENCE + Duration::from_secs(5), |s| {
            s.peers.iter().all(|p| p.state == PeerState::Gone)
        });
        let mut problems = Vec::new();
        for d in &mut self.daemons {
            let Some(p) = &mut d.proc else { continue };
            if p.exited() {
                continue;
            }
            p.ending = true;
            if let Err(e) = signal(p.pid(), "TERM") {
                problems.push(format!("daemon {}: {e}", d.name));
                continue;
            }
            let until = Instant::now() + Duration::from_secs(10);
            while !p.exited() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            match p.exit {
                Some(s) if s.success() => {}
                Some(s) => problems.push(format!(
                    "daemon {} exited with {s} on SIGTERM; log:\n{}",
                    d.name,
                    log_tail(&p.log, 10)
                )),
                None => {
                    problems.push(format!(
                        "daemon {} did not exit within 10 s of SIGTERM",
                        d.name
                    ));
                    p.kill();
                }
            }
            for f in [&d.socket, &d.admin] {
                if f.exists() {
                    problems.push(format!("daemon {} left {} behind", d.name, f.display()));
                }
            }
        }
        problems
    }

    /// Lines of the logs that show a panic.
    pub(super) fn panics(&self) -> Vec<String> {
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.dir.join("logs")) else {
            return found;
        };
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked")) {
                found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
            }
        }
        found.sort();
        found
    }

    pub(super) fn fault_rows(&self) -> Vec<FaultRow> {
        let range = |v: &[f64]| {
            if v.is_empty() {
                String::new()
            } else {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(0.0, f64::max);
                format!("{lo:.1}–{hi:.1} s")
            }
        };
        let k = |kind| self.kinds.get(&kind).cloned().unwrap_or_default();
        let closed = |s: &KindStats| {
            format!(
                "{} disconnected by the daemon (the slowest after {:.1} s), {} not disconnected, \
                 {} could not connect (daemon down)",
                s.closed,
                s.max_close_ms as f64 / 1000.0,
                s.not_closed,
                s.cannot_connect
            )
        };
        self.faults
            .iter()
            .map(|(name, count)| {
                let detail = match *name {
                    "daemon A killed (SIGKILL) and restarted" => format!(
                        "down {} until the new process was ready; same id every time",
                        range(&self.daemons[0].downtimes)
                    ),
                    "daemon stopped (SIGSTOP, then SIGCONT)" => {
                        let stops: Vec<f64> =
                            self.daemons.iter().flat_map(|d| d.stops.clone()).collect();
                        let per: Vec<String> = self
                            .daemons
                            .iter()
                            .map(|d| format!("{} {}", d.name, d.stops.len()))
                            .collect();
                        format!("stopped {} ({})", range(&stops), per.join(", "))
                    }
                    "peer stopped (SIGSTOP, then SIGCONT)" => {
                        format!("stopped {}", range(&self.stop_secs))
                    }
                    "garbage client" => closed(&k(Kind::Garbage)),
                    "stalled registration" => closed(&k(Kind::Stall)),
                    "flooding client" => {
                        let s = k(Kind::Flood);
                        format!(
                            "{} intros to random designators in all; {} of {} floods cut off by \
                             the daemon; {} could not connect",
                            s.flood_sent, s.flood_disconnected, s.started, s.cannot_connect
                        )
                    }
                    "uds-peer connect (a new process)" => {
                        let (mut n, mut ok) = (0, 0);
                        for (_, d) in self.ledger.dials() {
                            if d.mode == Mode::Cli {
                                n += 1;
                                if matches!(d.outcome, Some((Outcome::Ok { .. }, _))) {
                                    ok += 1;
                                }
                            }
                        }
                        format!(
                            "a new registration each time (the same key), then one dial: \
                             {ok} of {n} connected"
                        )
                    }
                    "burst of dials from one peer to one peer" => {
                        format!("{BURST} dials at once each")
                    }
                    "deaf client" => {
                        let s = k(Kind::Deaf);
                        format!(
                            "{} dials sent to them (must fail); {} intros sent to themselves, \
                             {} cut off by the daemon while doing so; {} could not connect",
                            s.deaf_dials, s.self_intros, s.self_intros_cut, s.cannot_connect
                        )
                    }
                    _ => String::new(),
                };
                FaultRow {
                    name,
                    count: *count,
                    detail,
                }
            })
            .collect()
    }

    pub(super) fn checks(
        &self,
        s: &Summary,
        registered: bool,
        final_round: Vec<String>,
        daemon_problems: Vec<String>,
        shutdown: Vec<String>,
        panics: Vec<String>,
    ) -> Vec<Check> {
        let t = &s.totals;
        let check = |name: &str, problems: Vec<String>| Check {
            name: name.to_owned(),
            ok: problems.is_empty(),
            detail: problems.join("; "),
        };
        let when = |cond: bool, what: String| if cond { vec![what] } else { Vec::new() };
        let mut crashes = self.crashes.clone();
        crashes.extend(panics);
        let unclear = t.empty_messages + t.bug_messages;
        vec![
            check(
                "every dial ended with ok or an error message (none hung, none lost)",
                [
                    when(t.hung > 0, format!("{} dials hung", t.hung)),
                    when(t.pending > 0, format!("{} dials never ended", t.pending)),
                ]
                .concat(),
            ),
            check(
                "every failed dial is explained by a fault (its target or dialer stopped, its \
                 target gone, a daemon down)",
                when(
                    t.unexplained > 0,
                    format!("{} unexplained (listed after the table)", t.unexplained),
                ),
            ),
            check(
                "error messages are clear (not empty, no wrong replies)",
                when(unclear > 0, format!("{unclear} unclear or wrong")),
            ),
            check(
                "must-fail dials failed (no downgrade to plaintext, no departed peer answered)",
                when(
                    t.wrongly_connected > 0,
                    format!("{} connected", t.wrongly_connected),
                ),
            ),
            check(
                "every accepted connection came from its dialer to its target",
                [
                    when(
                        t.misdelivered > 0,
                        format!("{} misdelivered", t.misdelivered),
                    ),
                    when(
                        t.duplicate_accepts > 0,
                        format!("{} accepted twice", t.duplicate_accepts),
                    ),
                    when(
                        t.ok_without_accept > 0,
                        format!("{} ok without the target accepting", t.ok_without_accept),
                    ),
                    when(
                        !self.ledger.stray.is_empty(),
                        format!("stray lines: {:?}", self.ledger.stray),
                    ),
                ]
                .concat(),
            ),
            check(
                "no process crashed or panicked",
                crashes
                    .iter()
                    .map(|c| c.lines().next().unwrap_or_default().to_owned())
                    .collect(),
            ),
            check(
                "peers were registered with both daemons when ready, and again after the faults",
                [
                    self.half_registered.clone(),
                    when(
                        !registered,
                        "not every peer re-registered with both within 30 s".into(),
                    ),
                ]
                .concat(),
            ),
            check(
                "other problems (ids kept across restarts, misbehaving clients cut off...)",
                self.problems
                    .iter()
                    .map(|p| p.lines().next().unwrap_or_default().to_owned())
                    .collect(),
            ),
            check(
                "after the faults, a dial from every peer connected",
                final_round,
            ),
            check(
                "daemons idle, fds back to baseline, RSS within the margin",
                daemon_problems,
            ),
            check(
                "long-lived peers' fds back to baseline",
                s.peers
                    .fds_off
                    .iter()
                    .map(|(n, b, f)| format!("{n}: {b} → {f}"))
                    .collect(),
            ),
            check(
                "peers quit cleanly (every dial reported, exit 0)",
                self.unclean_quits
                    .iter()
                    .map(|c| c.lines().next().unwrap_or_default().to_owned())
                    .collect(),
            ),
            check(
                "daemons shut down cleanly on SIGTERM (exit 0, socket files removed)",
                shutdown
                    .iter()
                    .map(|c| c.lines().next().unwrap_or_default().to_owned())
                    .collect(),
            ),
        ]
    }

    /// Details worth reading after the table: unexplained failures, hung
    /// dials, crash logs.
    pub(super) fn print_lists(&self) {
        let unexplained = self.ledger.listed(|v| *v == Verdict::Unexplained);
        if !unexplained.is_empty() {
            println!("\nDials that failed with no fault to explain them (up to 20):");
            for (id, d) in unexplained.iter().take(20) {
                println!("  {}", self.describe_dial(*id, d));
            }
        }
        let wrong = self
            .ledger
            .listed(|v| matches!(v, Verdict::WronglyConnected(_)));
        if !wrong.is_empty() {
            println!("\nMust-fail dials that connected:");
            for (id, d) in wrong.iter().take(20) {
                println!("  {}", self.describe_dial(*id, d));
            }
        }
        let hung = self.ledger.listed(|v| *v == Verdict::Hung);
        if !hung.is_empty() {
            println!("\nHung dials:");
            for (id, d) in hung.iter().take(20) {
                println!("  {}", self.describe_dial(*id, d));
            }
        }
        for c in self
            .crashes
            .iter()
            .chain(&self.unclean_quits)
            .chain(&self.problems)
        {
            println!("\n{c}");
        }
        if self.incoming_errors > 0 {
            println!(
                "\nIncoming connections that ended before their request: {} (e.g. {})",
                self.incoming_errors,
                self.incoming_error_example.as_deref().unwrap_or_default()
            );
        }
    }

    pub(super) fn describe_dial(&self, id: u64, d: &ledger::Dial) -> String {
        let target = d.target.map_or("a misbehaving client".to_owned(), |t| {
            self.peers[t].name.clone()
        });
        let (outcome, end) = match &d.outcome {
            Some((o, end)) => (format!("{o:?}"), *end),
            None => ("pending".to_owned(), self.t()),
        };
        let kind = match d.expect {
            Expect::Connect => String::new(),
            Expect::Fail(n) => format!(", {}", n.describe()),
        };
        format!(
            "dial {id} {} → {target} ({}{kind}), {:.1}–{:.1} s: {outcome}",
            self.name_of(d.dialer),
            d.mode.name(),
            d.start,
            end
        )
    }
}
