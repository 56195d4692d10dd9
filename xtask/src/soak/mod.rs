//! `cargo xtask soak`: the whole system under stress, for minutes.
//!
//! Two `uds-introd` daemons (persistent keys, admin sockets) and N peer
//! processes (the `soak_peer` example of uds-netlayer), every peer
//! registered with both daemons, dial each other at random while faults
//! are injected: daemon A is killed (SIGKILL) and restarted with the same
//! key and socket path, peers are stopped (SIGSTOP) and continued, clients
//! misbehave on a daemon's socket (garbage, a stalled registration, an
//! intro flood, a client that never reads while intros are sent to it),
//! and peers leave (quit or SIGKILL) and join. Daemon B is never killed:
//! its resources are judged over the whole run.
//!
//! Every dial must end with `ok` or an error message within its deadline;
//! a failed dial is "explained" when a fault concerned it (its target or
//! dialer stopped, its target gone, a daemon down). At the end, after a
//! final round of dials without faults and a quiet period, the daemons'
//! fds and RSS and the long-lived peers' fds must be back to the baseline
//! taken after warm-up. See [`resources`] for the tolerances and
//! `docs/testing.md` for a run's figures.

mod args;
mod chaos;
mod finish;
mod ledger;
mod measure;
mod process;
mod report;
mod resources;
mod rng;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use args::{Parsed, SoakArgs};
use ledger::{Expect, Fault, Ledger, Mode, Negative, Outcome, PeerId};
use process::{
    CliDial, Daemon, DaemonState, Event, Kind, KindStats, Misbehaving, Owner, Peer, PeerState,
    ProcId, Spawner, cli_error, designator_of, log_tail, signal,
};
use report::{PeerFigures, RunInfo, Summary};
use rng::Rng;

use crate::{cargo, procs, workspace_root};

/// How long a dial may take before it counts as hung. The netlayer's own
/// bounds, with its defaults, add up to 50 s at worst: per server tried
/// (two here), up to 10 s to hand the intro to the server and 10 s for the
/// peer's e2ee handshake; then the soak peer's 10 s for the reply.
const DIAL_DEADLINE: f64 = 60.0;
/// Progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Dials without faults before the baseline.
const WARMUP: Duration = Duration::from_secs(15);
/// Dials one peer may have in flight.
const MAX_PENDING_PER_PEER: usize = 8;
/// Mean gap between faults, in seconds.
const MEAN_FAULT_GAP: f64 = 3.0;
/// How long a process may take to print its ready line.
const START_PATIENCE: Duration = Duration::from_secs(20);
/// How long a peer may take to exit after `quit` (it first waits for its
/// dials, which end within [`DIAL_DEADLINE`]).
const QUIT_PATIENCE: Duration = Duration::from_secs(70);
/// Misbehaving clients at once.
const MAX_MISBEHAVING: usize = 4;
/// How long a deaf client lives (intros are sent to it meanwhile): long
/// enough for the daemon's send timeout (10 s) to cut it off once what is
/// sent to it fills the socket.
const DEAF_LIFETIME: f64 = 20.0;
/// Intros a deaf client sends to itself (half of them do), more than a
/// socket buffer holds.
const DEAF_SELF_INTROS: u64 = 400;
/// Dials sent to each deaf client.
const DEAF_DIALS: usize = 6;
/// The dialer of the `uds-peer` dials in the ledger.
const CLI_DIALER: PeerId = usize::MAX;
/// Dials of a burst (more than the daemon's default per-target budget of
/// 16 intros).
const BURST: usize = 24;
/// The longest the quiet period may take to reach an idle state.
const QUIET_PATIENCE: Duration = Duration::from_secs(60);

pub(crate) fn run(raw: &[String]) -> Result<(), String> {
    let args = match args::parse(raw)? {
        Parsed::Help => {
            println!("{}", args::USAGE);
            return Ok(());
        }
        Parsed::Run(a) => a,
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let root = workspace_root();
    let bin = build(&root)?;
    let dir = procs::private_dir("ocapn-uds-soak")?;
    for sub in ["run", "keys", "logs"] {
        std::fs::create_dir(dir.join(sub))
            .map_err(|e| format!("{}: {e}", dir.join(sub).display()))?;
    }
    println!(
        "Soak: {} peers, {:.0} dials/s, {} min of faults, seed {seed} (repeat with --seed {seed})",
        args.peers, args.rate, args.minutes
    );
    println!("Private directory: {}", dir.display());
    let command = command_line(&args, seed);
    let mut soak = Soak::new(args, seed, bin, dir.clone());
    let result = soak.run(command);
    soak.kill_everything();
    if result.is_err() {
        // What was recorded before the run stopped.
        soak.print_lists();
    }
    drop(soak);
    match result {
        Ok(summary) => {
            println!("\n{}", report::render(&summary));
            if summary.passed() {
                let _ = std::fs::remove_dir_all(&dir);
                println!("Every process stopped and {} removed.", dir.display());
                Ok(())
            } else {
                Err(format!(
                    "the soak failed (see the checks above); logs kept in {}",
                    dir.join("logs").display()
                ))
            }
        }
        Err(e) => Err(format!(
            "the soak could not run: {e}; logs kept in {}",
            dir.join("logs").display()
        )),
    }
}

fn command_line(a: &SoakArgs, seed: u64) -> String {
    let mut s = format!(
        "cargo xtask soak --minutes {} --peers {} --seed {seed}",
        a.minutes, a.peers
    );
    if (a.rate - 2.0 * a.peers as f64).abs() > f64::EPSILON {
        s.push_str(&format!(" --rate {}", a.rate));
    }
    s
}

fn build(root: &Path) -> Result<PathBuf, String> {
    println!("Building uds-introd, uds-peer and the soak peer in release mode...");
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "uds-introd"])
        .args([
            "-p",
            "uds-netlayer",
            "--bin",
            "uds-introd",
            "--bin",
            "uds-peer",
        ])
        .args(["--example", "soak_peer"])
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build failed".into());
    }
    Ok(procs::target_dir(root).join("release"))
}

struct Soak {
    args: SoakArgs,
    rng: Rng,
    bin: PathBuf,
    dir: PathBuf,
    spawner: Spawner,
    rx: Receiver<Event>,
    t0: Instant,
    daemons: Vec<Daemon>,
    peers: Vec<Peer>,
    misbehaving: Vec<Misbehaving>,
    owners: HashMap<ProcId, Owner>,
    ledger: Ledger,
    dialing: bool,
    faulting: bool,
    next_dial: Instant,
    next_fault: Instant,
    last_exit_check: Instant,
    last_progress: Instant,
    last_tick: Instant,
    /// The longest the soak's own loop went without running (a sign that
    /// the machine is overloaded and timings are unreliable).
    max_stall: Duration,
    phase: &'static str,
    /// Faults injected, by name.
    faults: BTreeMap<&'static str, u64>,
    stop_secs: Vec<f64>,
    kinds: BTreeMap<Kind, KindStats>,
    incoming_errors: u64,
    incoming_error_example: Option<String>,
    /// Processes that exited or behaved in a way they must not.
    crashes: Vec<String>,
    /// Peers that quit without a clean exit.
    unclean_quits: Vec<String>,
    /// Problems of other kinds (a daemon's id changed, a misbehaving client
    /// that overran...), each failing the run.
    problems: Vec<String>,
    /// Peers that were not registered with both daemons when first ready.
    half_registered: Vec<String>,
    plaintext_target: usize,
    /// The running `uds-peer` dial, if any.
    cli: Option<CliDial>,
    /// The identity `uds-peer` uses (one key file for every run of it).
    cli_key: PathBuf,
    cli_designator: String,
}

impl Drop for Soak {
    fn drop(&mut self) {
        self.kill_everything();
    }
}

impl Soak {
    fn new(args: SoakArgs, seed: u64, bin: PathBuf, dir: PathBuf) -> Soak {
        let (tx, rx) = channel();
        let now = Instant::now();
        let run = dir.join("run");
        let keys = dir.join("keys");
        let daemon = |name: &'static str, wire: &'static str| Daemon {
            name,
            wire,
            socket: run.join(format!("{name}.sock")),
            admin: run.join(format!("{name}.sock.admin")),
            key: keys.join(format!("{name}.key")),
            proc: None,
            state: DaemonState::Down {
                since: now,
                restart_at: now,
            },
            id: None,
            incarnations: 0,
            downtimes: Vec::new(),
            stops: Vec::new(),
            baseline: None,
            peak_rss_kib: 0,
        };
        let plaintext_target = args::plaintext_peers(args.peers);
        Soak {
            rng: Rng::new(seed),
            spawner: Spawner {
                tx,
                next: 0,
                logs: dir.join("logs"),
            },
            rx,
            t0: now,
            // A speaks the draft's shapes, B Goblins': clients answer each
            // in its own.
            daemons: vec![daemon("A", "draft"), daemon("B", "goblins")],
            peers: Vec::new(),
            misbehaving: Vec::new(),
            owners: HashMap::new(),
            ledger: Ledger::new(),
            dialing: false,
            faulting: false,
            next_dial: now,
            next_fault: now,
            last_exit_check: now,
            last_progress: now,
            last_tick: now,
            max_stall: Duration::ZERO,
            phase: "start",
            faults: BTreeMap::new(),
            stop_secs: Vec::new(),
            kinds: BTreeMap::new(),
            incoming_errors: 0,
            incoming_error_example: None,
            crashes: Vec::new(),
            unclean_quits: Vec::new(),
            problems: Vec::new(),
            half_registered: Vec::new(),
            plaintext_target,
            cli: None,
            cli_key: keys.join("uds-peer.key"),
            cli_designator: String::new(),
            args,
            bin,
            dir,
        }
    }

    fn t(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    // -- processes ----------------------------------------------------------

    fn start_daemon(&mut self, i: usize) -> Result<(), String> {
        let d = &mut self.daemons[i];
        d.incarnations += 1;
        let mut cmd = Command::new(self.bin.join("uds-introd"));
        cmd.arg("--socket")
            .arg(&d.socket)
            .arg("--admin")
            .arg(&d.admin)
            .arg("--key")
            .arg(&d.key)
            .args(["--wire", d.wire])
            .env("RUST_LOG", "info");
        let proc = self
            .spawner
            .spawn(cmd, &format!("daemon-{}-{}", d.name, d.incarnations))?;
        self.owners.insert(proc.id, Owner::Daemon(i));
        d.proc = Some(proc);
        d.state = DaemonState::Starting {
            since: Instant::now(),
        };
        Ok(())
    }

    fn start_peer(&mut self, mode: Mode) -> Result<PeerId, String> {
        let id = self.peers.len();
        let name = format!(
            "p{id:02}{}",
            if mode == Mode::Plaintext {
                "-plain"
            } else {
                ""
            }
        );
        let mut cmd = Command::new(self.bin.join("examples").join("soak_peer"));
        cmd.arg("peer");
        // Half the peers try A first, half B: both daemons carry traffic.
        let order: [usize; 2] = if id.is_multiple_of(2) { [0, 1] } else { [1, 0] };
        for i in order {
            cmd.arg("--intro").arg(&self.daemons[i].socket);
        }
        if mode == Mode::Plaintext {
            cmd.arg("--plaintext");
        }
        cmd.env("RUST_LOG", "warn");
        let proc = self.spawner.spawn(cmd, &name)?;
        self.owners.insert(proc.id, Owner::Peer(id));
        self.peers.push(Peer {
            name,
            mode,
            proc,
            state: PeerState::Starting {
                since: Instant::now(),
            },
            uri: None,
            designator: String::new(),
            registered: BTreeSet::new(),
            long_lived: false,
            baseline: None,
            stats: None,
            bye: false,
        });
        Ok(id)
    }

    fn start_misbehaving(&mut self, kind: Kind) -> Result<(), String> {
        let up: Vec<usize> = (0..self.daemons.len())
            .filter(|i| self.daemons[*i].state == DaemonState::Up)
            .collect();
        let Some(&daemon) = self.rng.pick(&up) else {
            return Ok(());
        };
        let seed = self.rng.next_u64();
        let mut cmd = Command::new(self.bin.join("examples").join("soak_peer"));
        cmd.arg(kind.role())
            .arg("--intro")
            .arg(&self.daemons[daemon].socket)
            .args(["--seed", &seed.to_string()]);
        let now = Instant::now();
        let lifetime = match kind {
            Kind::Flood => {
                let secs = self.rng.range(2.0, 5.0);
                cmd.args(["--seconds", &format!("{secs:.2}")]);
                secs + 20.0
            }
            Kind::Deaf => {
                if self.rng.chance(0.5) {
                    cmd.args(["--self-intros", &DEAF_SELF_INTROS.to_string()]);
                }
                DEAF_LIFETIME
            }
            // Their own patience is 30 s.
            Kind::Garbage | Kind::Stall => 40.0,
        };
        cmd.env("RUST_LOG", "warn");
        let stats = self.kinds.entry(kind).or_default();
        stats.started += 1;
        let proc = self
            .spawner
            .spawn(cmd, &format!("{}-{}", kind.role(), stats.started))?;
        self.owners.insert(proc.id, Owner::Misbehaving(proc.id));
        let dial_plan = if kind == Kind::Deaf {
            (0..DEAF_DIALS)
                .map(|_| now + Duration::from_secs_f64(self.rng.range(0.5, 5.0)))
                .collect()
        } else {
            Vec::new()
        };
        self.misbehaving.push(Misbehaving {
            kind,
            proc,
            daemon,
            deadline: now + Duration::from_secs_f64(lifetime),
            outcome: None,
            uri: None,
            dial_plan,
        });
        Ok(())
    }

    /// Kills every process still running (also on errors and panics).
    fn kill_everything(&mut self) {
        for p in &mut self.peers {
            if !p.proc.exited() {
                p.proc.kill();
            }
        }
        for m in &mut self.misbehaving {
            if !m.proc.exited() {
                m.proc.kill();
            }
        }
        if let Some(c) = &mut self.cli
            && !c.proc.exited()
        {
            c.proc.kill();
        }
        for d in &mut self.daemons {
            if let Some(p) = &mut d.proc
                && !p.exited()
            {
                p.kill();
            }
        }
    }

    /// The process with this id.
    fn proc_of(&mut self, id: ProcId) -> Option<&mut process::Proc> {
        match self.owners.get(&id).copied()? {
            Owner::Daemon(i) => self.daemons[i].proc.as_mut().filter(|p| p.id == id),
            Owner::Peer(p) => Some(&mut self.peers[p].proc),
            Owner::Misbehaving(_) => self
                .misbehaving
                .iter_mut()
                .map(|m| &mut m.proc)
                .find(|p| p.id == id),
            Owner::Cli => self
                .cli
                .as_mut()
                .map(|c| &mut c.proc)
                .filter(|p| p.id == id),
        }
    }

    /// A dialer's name.
    fn name_of(&self, p: PeerId) -> String {
        if p == CLI_DIALER {
            "uds-peer".to_owned()
        } else {
            self.peers[p].name.clone()
        }
    }

    /// Creates the key `uds-peer` runs with, and learns its designator.
    fn make_cli_key(&mut self) -> Result<(), String> {
        let out = Command::new(self.bin.join("uds-introd"))
            .arg("keygen")
            .arg(&self.cli_key)
            .output()
            .map_err(|e| format!("uds-introd keygen: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        self.cli_designator = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("id="))
            .ok_or_else(|| {
                format!(
                    "uds-introd keygen printed no id: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?
            .to_owned();
        Ok(())
    }

    // -- the event loop -----------------------------------------------------

    /// Handles events for up to `wait`, then does what is due.
    fn pump(&mut self, wait: Duration) {
        match self.rx.recv_timeout(wait) {
            Ok(ev) => self.handle(ev),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        // Whatever else has arrived, without waiting.
        for _ in 0..10_000 {
            match self.rx.try_recv() {
                Ok(ev) => self.handle(ev),
                Err(_) => break,
            }
        }
        self.tick();
    }

    /// Pumps until `done` holds or `limit` has passed; returns whether it
    /// holds.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Soak) -> bool) -> bool {
        let until = Instant::now() + limit;
        while !done(self) {
            if Instant::now() >= until {
                return false;
            }
            self.pump(Duration::from_millis(20));
        }
        true
    }

    /// Pumps for `d`.
    fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.pump(Duration::from_millis(20));
        }
    }

    fn handle(&mut self, ev: Event) {
        let (id, line) = match ev {
            Event::Line(id, line) => (id, line),
            Event::Eof(id) => {
                if let Some(p) = self.proc_of(id) {
                    p.eof = true;
                }
                return;
            }
        };
        let now = self.t();
        match self.owners.get(&id).copied() {
            Some(Owner::Daemon(i)) => self.daemon_line(i, &line),
            Some(Owner::Peer(p)) => self.peer_line(p, &line, now),
            Some(Owner::Misbehaving(pid)) => self.misbehaving_line(pid, &line),
            Some(Owner::Cli) => {
                if let Some(c) = &mut self.cli {
                    c.stdout.push(line);
                }
            }
            None => {}
        }
    }

    fn daemon_line(&mut self, i: usize, line: &str) {
        let Some(rest) = line.strip_prefix("uds-introd ready ") else {
            return;
        };
        let id = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("id="))
            .unwrap_or_default()
            .to_owned();
        let t = self.t();
        let d = &mut self.daemons[i];
        match &d.id {
            Some(old) if *old != id => self.problems.push(format!(
                "daemon {} came back as {id}, not {old}: its key did not survive the restart",
                d.name
            )),
            Some(_) => {}
            None => d.id = Some(id),
        }
        if d.incarnations > 1 {
            self.ledger.fault_ends(Fault::DaemonDown(i), t);
            if let Some(killed_at) = self
                .ledger
                .windows()
                .iter()
                .rev()
                .find(|w| w.fault == Fault::DaemonDown(i))
                .map(|w| w.from)
            {
                d.downtimes.push(t - killed_at);
            }
        }
        d.state = DaemonState::Up;
    }

    fn peer_line(&mut self, p: PeerId, line: &str, now: f64) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ready" => {
                let peer = &mut self.peers[p];
                peer.uri = Some(rest.to_owned());
                peer.designator = designator_of(rest);
                if matches!(peer.state, PeerState::Starting { .. }) {
                    peer.state = PeerState::Ready;
                }
                let ids: Vec<&String> = self.daemons.iter().filter_map(|d| d.id.as_ref()).collect();
                if !ids.iter().all(|id| rest.contains(id.as_str())) && !self.faulting {
                    self.half_registered
                        .push(format!("{}: {rest}", self.peers[p].name));
                }
            }
            "registered" => {
                self.peers[p].registered.insert(rest.to_owned());
            }
            "unregistered" => {
                self.peers[p].registered.remove(rest);
            }
            "dial" => {
                let mut w = rest.splitn(3, ' ');
                let (Some(id), Some(result)) = (w.next(), w.next()) else {
                    self.problems
                        .push(format!("{}: malformed line {line:?}", self.peers[p].name));
                    return;
                };
                let Ok(id) = id.parse::<u64>() else {
                    self.problems
                        .push(format!("{}: malformed line {line:?}", self.peers[p].name));
                    return;
                };
                let detail = w.next().unwrap_or_default();
                let outcome = match result {
                    "ok" => Outcome::Ok {
                        ms: detail.parse().unwrap_or(0),
                    },
                    _ => Outcome::Err {
                        message: detail.to_owned(),
                    },
                };
                self.ledger.settle(id, p, outcome, now);
            }
            "accepted" => {
                let mut w = rest.split(' ');
                if let (Some(Ok(id)), Some(from)) = (w.next().map(str::parse::<u64>), w.next()) {
                    self.ledger.accepted(id, p, from);
                }
            }
            "incoming-error" => {
                self.incoming_errors += 1;
                self.incoming_error_example
                    .get_or_insert_with(|| rest.to_owned());
            }
            "stats" => {
                let stats = rest
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                    .collect();
                self.peers[p].stats = Some(stats);
            }
            "bye" => self.peers[p].bye = true,
            _ => self
                .problems
                .push(format!("{} said {line:?}", self.peers[p].name)),
        }
    }

    fn misbehaving_line(&mut self, pid: ProcId, line: &str) {
        let Some(m) = self.misbehaving.iter_mut().find(|m| m.proc.id == pid) else {
            return;
        };
        let stats = self.kinds.entry(m.kind).or_default();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ready" => m.uri = Some(rest.to_owned()),
            "closed" => {
                stats.closed += 1;
                stats.max_close_ms = stats.max_close_ms.max(rest.parse().unwrap_or(0));
            }
            "not-closed" => {
                stats.not_closed += 1;
                self.problems.push(format!(
                    "a {} client on daemon {} was not disconnected within 30 s",
                    m.kind.role(),
                    self.daemons[m.daemon].name
                ));
            }
            "cannot-connect" => stats.cannot_connect += 1,
            "self-intros" => {
                if let Some(n) = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("sent="))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    stats.self_intros += n;
                }
                if rest.contains("write-failed") {
                    stats.self_intros_cut += 1;
                }
            }
            "flood" => {
                // flood sent=<n> ms=<ms> <done connected | ... disconnected ...>
                if let Some(n) = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("sent="))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    stats.flood_sent += n;
                }
                if rest.contains(" disconnected") {
                    stats.flood_disconnected += 1;
                }
            }
            _ => {}
        }
        m.outcome = Some(line.to_owned());
    }

    /// Everything that is due: exits, deadlines, timers, dials, faults,
    /// progress.
    fn tick(&mut self) {
        let now = Instant::now();
        if self.faulting {
            self.max_stall = self.max_stall.max(now.duration_since(self.last_tick));
        }
        self.last_tick = now;
        if now.duration_since(self.last_exit_check) >= Duration::from_millis(100) {
            self.last_exit_check = now;
            self.check_exits();
        }
        let t = self.t();
        for id in self.ledger.expire(t) {
            if let Some(c) = &mut self.cli
                && c.id == id
            {
                c.proc.kill();
                self.cli = None;
            }
            if let Some(d) = self.ledger.get(id) {
                let target = d.target.map_or("a misbehaving client".to_owned(), |p| {
                    self.peers[p].name.clone()
                });
                println!(
                    "  HUNG: dial {id} from {} to {target} (started at {:.1} s) has no outcome \
                     after {DIAL_DEADLINE} s",
                    self.name_of(d.dialer),
                    d.start
                );
            }
        }
        self.timers(now);
        if self.dialing {
            let mut n = 0;
            while self.next_dial <= now && n < 1000 {
                self.dial_random();
                let gap = self.rng.exp(1.0 / self.args.rate);
                self.next_dial += Duration::from_secs_f64(gap);
                n += 1;
            }
        }
        if self.faulting {
            while self.next_fault <= now {
                self.inject_fault();
                let gap = self.rng.exp(MEAN_FAULT_GAP);
                self.next_fault += Duration::from_secs_f64(gap);
            }
        }
        if now.duration_since(self.last_progress) >= PROGRESS_EVERY {
            self.last_progress = now;
            self.progress();
        }
    }

    fn check_exits(&mut self) {
        let t = self.t();
        if let Some(c) = &mut self.cli
            && c.proc.finished()
        {
            let want = format!("ok {}", c.id);
            let outcome = if c.proc.exit.is_some_and(|s| s.success()) && c.stdout.contains(&want) {
                Outcome::Ok {
                    ms: c.started.elapsed().as_millis() as u64,
                }
            } else {
                let log = std::fs::read_to_string(&c.proc.log).unwrap_or_default();
                Outcome::Err {
                    message: cli_error(&log, c.proc.exit),
                }
            };
            self.ledger.settle(c.id, CLI_DIALER, outcome, t);
            self.cli = None;
        }
        for i in 0..self.daemons.len() {
            let d = &mut self.daemons[i];
            let Some(p) = &mut d.proc else { continue };
            if p.ending || !p.exited() {
                continue;
            }
            // Not killed by us: a crash. Restart it so the run goes on.
            let status = p.exit.map(|s| s.to_string()).unwrap_or_default();
            self.crashes.push(format!(
                "daemon {} exited by itself ({status}); its log ends with:\n{}",
                d.name,
                log_tail(&p.log, 20)
            ));
            p.ending = true;
            let now = Instant::now();
            d.state = DaemonState::Down {
                since: now,
                restart_at: now + Duration::from_secs(1),
            };
            self.ledger.fault_starts(Fault::DaemonDown(i), t);
        }
        for p in 0..self.peers.len() {
            let peer = &mut self.peers[p];
            if peer.state == PeerState::Gone || !peer.proc.finished() {
                continue;
            }
            let status = peer.proc.exit.map(|s| s.to_string()).unwrap_or_default();
            match peer.state {
                PeerState::Leaving { killed: true, .. } => self.ledger.abandon(p, t),
                PeerState::Leaving { killed: false, .. } => {
                    let clean = peer.proc.exit.is_some_and(|s| s.success()) && peer.bye;
                    let pending = self.ledger.pending_of(p);
                    if !clean || pending > 0 {
                        self.unclean_quits.push(format!(
                            "{} ({status}, bye {}, {pending} dials unreported); log:\n{}",
                            peer.name,
                            if peer.bye { "said" } else { "not said" },
                            log_tail(&peer.proc.log, 10)
                        ));
                    }
                    self.ledger.abandon(p, t);
                }
                _ => {
                    self.crashes.push(format!(
                        "peer {} exited by itself ({status}); its log ends with:\n{}",
                        peer.name,
                        log_tail(&peer.proc.log, 20)
                    ));
                    self.ledger.fault_starts(Fault::PeerLeft(p), t);
                    self.ledger.abandon(p, t);
                }
            }
            peer.state = PeerState::Gone;
        }
        let mut i = 0;
        while i < self.misbehaving.len() {
            let m = &mut self.misbehaving[i];
            if !m.proc.finished() {
                i += 1;
                continue;
            }
            if !m.proc.ending && !m.proc.exit.is_some_and(|s| s.success()) {
                self.crashes.push(format!(
                    "a {} client exited with {}; its log ends with:\n{}",
                    m.kind.role(),
                    m.proc.exit.map(|s| s.to_string()).unwrap_or_default(),
                    log_tail(&m.proc.log, 20)
                ));
            } else if !m.proc.ending && m.outcome.is_none() {
                self.problems.push(format!(
                    "a {} client exited without saying what happened",
                    m.kind.role()
                ));
            }
            self.misbehaving.swap_remove(i);
        }
    }

    fn timers(&mut self, now: Instant) {
        let t = self.t();
        for i in 0..self.daemons.len() {
            match self.daemons[i].state {
                DaemonState::Down { restart_at, .. } if restart_at <= now => {
                    if let Err(e) = self.start_daemon(i) {
                        self.problems
                            .push(format!("restarting daemon {}: {e}", self.daemons[i].name));
                        self.daemons[i].state = DaemonState::Down {
                            since: now,
                            restart_at: now + Duration::from_secs(2),
                        };
                    }
                }
                DaemonState::Stopped { since, until } if until <= now => {
                    let d = &mut self.daemons[i];
                    if let Some(p) = &d.proc
                        && let Err(e) = signal(p.pid(), "CONT")
                    {
                        self.problems.push(format!("daemon {}: {e}", d.name));
                    }
                    d.stops.push(now.duration_since(since).as_secs_f64());
                    d.state = DaemonState::Up;
                    self.ledger.fault_ends(Fault::DaemonDown(i), t);
                }
                DaemonState::Starting { since } if now.duration_since(since) > START_PATIENCE => {
                    let d = &mut self.daemons[i];
                    let log = d.proc.as_ref().map(|p| p.log.clone()).unwrap_or_default();
                    self.problems.push(format!(
                        "daemon {} did not become ready within {START_PATIENCE:?}; its log \
                         ends with:\n{}",
                        d.name,
                        log_tail(&log, 20)
                    ));
                    if let Some(p) = &mut d.proc {
                        p.kill();
                    }
                    d.state = DaemonState::Down {
                        since: now,
                        restart_at: now + Duration::from_secs(2),
                    };
                }
                _ => {}
            }
        }
        for p in 0..self.peers.len() {
            match self.peers[p].state {
                PeerState::Stopped { since, until } if until <= now => {
                    let peer = &mut self.peers[p];
                    if let Err(e) = signal(peer.proc.pid(), "CONT") {
                        self.problems.push(format!("{}: {e}", peer.name));
                    }
                    peer.state = PeerState::Ready;
                    let stopped = now.duration_since(since).as_secs_f64();
                    self.stop_secs.push(stopped);
                    self.ledger.fault_ends(Fault::PeerStopped(p), t);
                    self.ledger.extend(p, stopped);
                }
                PeerState::Starting { since } if now.duration_since(since) > START_PATIENCE => {
                    let peer = &mut self.peers[p];
                    self.problems.push(format!(
                        "peer {} did not become ready within {START_PATIENCE:?}; its log ends \
                         with:\n{}",
                        peer.name,
                        log_tail(&peer.proc.log, 20)
                    ));
                    peer.proc.kill();
                    peer.state = PeerState::Leaving {
                        since: now,
                        killed: true,
                    };
                }
                PeerState::Leaving { since, killed }
                    if now.duration_since(since) > QUIT_PATIENCE =>
                {
                    let peer = &mut self.peers[p];
                    if !killed {
                        self.unclean_quits.push(format!(
                            "{} did not exit within {QUIT_PATIENCE:?} of quit",
                            peer.name
                        ));
                    }
                    peer.proc.kill();
                    peer.state = PeerState::Leaving {
                        since: now,
                        killed: true,
                    };
                }
                _ => {}
            }
        }
        // Deaf clients: send the planned dials; kill them at their end.
        let mut deaf_dials = Vec::new();
        for m in &mut self.misbehaving {
            if m.proc.ending || m.proc.exit.is_some() {
                continue;
            }
            if let Some(uri) = &m.uri {
                let due = m.dial_plan.iter().filter(|at| **at <= now).count();
                m.dial_plan.retain(|at| *at > now);
                for _ in 0..due {
                    deaf_dials.push(uri.clone());
                }
            }
            if m.deadline <= now {
                if m.kind != Kind::Deaf {
                    self.kinds.entry(m.kind).or_default().overran += 1;
                    self.problems.push(format!(
                        "a {} client was still running after its time; log:\n{}",
                        m.kind.role(),
                        log_tail(&m.proc.log, 10)
                    ));
                }
                m.proc.kill();
            }
        }
        for uri in deaf_dials {
            self.kinds.entry(Kind::Deaf).or_default().deaf_dials += 1;
            self.dial_to(None, uri, Expect::Fail(Negative::Deaf), None);
        }
    }

    // -- the run ------------------------------------------------------------

    /// What went wrong while starting: processes that exited (with their
    /// log's end) and other problems, or a note that nothing was reported.
    fn start_failures(&self) -> String {
        let lines: Vec<&str> = self
            .crashes
            .iter()
            .chain(&self.problems)
            .map(String::as_str)
            .collect();
        if lines.is_empty() {
            format!("nothing exited or reported a problem within {START_PATIENCE:?}")
        } else {
            lines.join("\n")
        }
    }

    fn run(&mut self, command: String) -> Result<Summary, String> {
        self.phase = "start";
        self.make_cli_key()?;
        for i in 0..self.daemons.len() {
            self.start_daemon(i)?;
        }
        if !self.run_until(START_PATIENCE, |s| {
            s.daemons.iter().all(|d| d.state == DaemonState::Up)
        }) {
            return Err(format!(
                "the daemons did not start:\n{}",
                self.start_failures()
            ));
        }
        for d in &self.daemons {
            println!(
                "Daemon {} ({} shapes) is {}",
                d.name,
                d.wire,
                d.id.as_deref().unwrap_or("?")
            );
        }
        // Every fourth peer is plaintext, and the last ones if that is
        // not enough.
        let mut plain: BTreeSet<usize> = (0..self.args.peers).filter(|n| n % 4 == 3).collect();
        let mut n = self.args.peers;
        while plain.len() < self.plaintext_target && n > 0 {
            n -= 1;
            plain.insert(n);
        }
        for n in 0..self.args.peers {
            let mode = if plain.contains(&n) {
                Mode::Plaintext
            } else {
                Mode::Encrypted
            };
            self.start_peer(mode)?;
        }
        if !self.run_until(START_PATIENCE, |s| {
            s.peers.iter().all(|p| p.state == PeerState::Ready)
        }) {
            return Err(format!(
                "the peers did not start:\n{}",
                self.start_failures()
            ));
        }
        let plain = self
            .peers
            .iter()
            .filter(|p| p.mode == Mode::Plaintext)
            .count();
        println!(
            "{} peers ready ({plain} plaintext), each registered with both daemons",
            self.peers.len()
        );

        self.phase = "warm-up";
        println!("Warm-up: {} s of dials without faults", WARMUP.as_secs());
        self.dialing = true;
        self.next_dial = Instant::now();
        self.run_for(WARMUP);
        self.quiesce();
        self.run_for(Duration::from_secs(2));
        self.phase = "baseline";
        self.take_baseline()?;

        self.phase = "faults";
        let main = Duration::from_secs_f64(self.args.minutes * 60.0);
        println!(
            "Faults and dials for {:.1} min (a progress line every {} s)",
            self.args.minutes,
            PROGRESS_EVERY.as_secs()
        );
        self.dialing = true;
        self.faulting = true;
        let now = Instant::now();
        self.next_dial = now;
        self.next_fault = now + Duration::from_secs_f64(self.rng.exp(MEAN_FAULT_GAP));
        self.run_for(main);

        self.phase = "recovery";
        println!("Faults stop: daemons restarted, peers continued, misbehaving clients gone");
        self.faulting = false;
        self.end_faults();
        self.quiesce();
        self.restore_peers();
        let registered = self.wait_registered(Duration::from_secs(30));

        self.phase = "final";
        let final_round = self.final_round();

        self.phase = "quiet";
        println!("Quiet period: waiting for the daemons to be idle and back to baseline");
        let settle = self.wait_idle();
        let (daemons, daemon_checks) = self.measure_daemons(&settle)?;
        let peers = self.measure_peers();

        self.phase = "shutdown";
        self.collect_stats();
        let peer_stats = self.sum_stats();
        let shutdown = self.shutdown();
        // Every line the peers wrote is in: cross-checks are complete.
        while let Ok(ev) = self.rx.try_recv() {
            self.handle(ev);
        }
        let panics = self.panics();

        let mut summary = Summary {
            run: RunInfo {
                command,
                machine: crate::bench::machine(),
                date: crate::bench::today(),
                minutes: self.args.minutes,
                wall_secs: self.t(),
                max_stall_secs: self.max_stall.as_secs_f64(),
                peers: self.args.peers,
                plaintext_peers: self.plaintext_target,
                rate: self.args.rate,
            },
            totals: self.ledger.totals(),
            latency: vec![
                ("all".into(), self.ledger.latency(None)),
                (
                    "encrypted".into(),
                    self.ledger.latency(Some(Mode::Encrypted)),
                ),
                (
                    "plaintext".into(),
                    self.ledger.latency(Some(Mode::Plaintext)),
                ),
                (
                    "uds-peer (a new process: start, registration, dial)".into(),
                    self.ledger.latency(Some(Mode::Cli)),
                ),
            ],
            classes: self.ledger.classes(),
            faults: self.fault_rows(),
            daemons,
            peers: PeerFigures {
                stats: peer_stats,
                ..peers
            },
            checks: Vec::new(),
        };
        summary.checks = self.checks(
            &summary,
            registered,
            final_round,
            daemon_checks,
            shutdown,
            panics,
        );
        self.print_lists();
        Ok(summary)
    }
}
