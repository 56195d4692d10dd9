//! Dials and faults: who dials whom, and what goes wrong meanwhile.

use std::process::Command;
use std::time::{Duration, Instant};

use super::ledger::{Expect, Fault, Mode, Negative, Outcome, PeerId};
use super::process::{CliDial, DaemonState, Kind, Owner, PeerState, signal};
use super::{BURST, CLI_DIALER, DIAL_DEADLINE, MAX_MISBEHAVING, MAX_PENDING_PER_PEER, Soak};

impl Soak {
    // -- dials --------------------------------------------------------------

    /// Peers that may dial now.
    pub(super) fn dialers(&self, mode: Option<Mode>) -> Vec<PeerId> {
        (0..self.peers.len())
            .filter(|p| {
                let peer = &self.peers[*p];
                peer.state == PeerState::Ready
                    && peer.uri.is_some()
                    && mode.is_none_or(|m| peer.mode == m)
                    && self.ledger.pending_of(*p) < MAX_PENDING_PER_PEER
            })
            .collect()
    }

    /// Live targets for `dialer` of mode `mode` (not itself).
    pub(super) fn targets(&self, dialer: PeerId, mode: Option<Mode>) -> Vec<PeerId> {
        (0..self.peers.len())
            .filter(|p| {
                *p != dialer
                    && self.peers[*p].dialable()
                    && mode.is_none_or(|m| self.peers[*p].mode == m)
            })
            .collect()
    }

    /// One random dial, by the rules: encrypted peers dial anyone
    /// (plaintext peers accept both modes), plaintext peers dial plaintext
    /// peers; a few dials must fail (a plaintext dial to an encrypted peer,
    /// a dial to a peer that has left).
    pub(super) fn dial_random(&mut self) {
        let dialers = self.dialers(None);
        let Some(&dialer) = self.rng.pick(&dialers) else {
            return;
        };
        let mode = self.peers[dialer].mode;
        if self.rng.chance(0.02) {
            let gone: Vec<PeerId> = (0..self.peers.len())
                .filter(|p| {
                    self.peers[*p].state == PeerState::Gone
                        && self.peers[*p].uri.is_some()
                        && (mode == Mode::Encrypted || self.peers[*p].mode == Mode::Plaintext)
                })
                .collect();
            if let Some(&target) = self.rng.pick(&gone) {
                let uri = self.peers[target].uri.clone().unwrap_or_default();
                self.dial_to(
                    Some(dialer),
                    uri,
                    Expect::Fail(Negative::Departed),
                    Some(target),
                );
                return;
            }
        }
        if mode == Mode::Plaintext && self.rng.chance(0.03) {
            let encrypted = self.targets(dialer, Some(Mode::Encrypted));
            if let Some(&target) = self.rng.pick(&encrypted) {
                let uri = self.peers[target].uri.clone().unwrap_or_default();
                self.dial_to(
                    Some(dialer),
                    uri,
                    Expect::Fail(Negative::Downgrade),
                    Some(target),
                );
                return;
            }
        }
        let targets = self.targets(dialer, (mode == Mode::Plaintext).then_some(Mode::Plaintext));
        if let Some(&target) = self.rng.pick(&targets) {
            let uri = self.peers[target].uri.clone().unwrap_or_default();
            self.dial_to(Some(dialer), uri, Expect::Connect, Some(target));
        }
    }

    /// Makes `dialer` (a random one if `None`) dial `uri`; returns the
    /// dial's id.
    pub(super) fn dial_to(
        &mut self,
        dialer: Option<PeerId>,
        uri: String,
        expect: Expect,
        target: Option<PeerId>,
    ) -> Option<u64> {
        let dialer = match dialer {
            Some(d) => d,
            None => *self.rng.pick(&self.dialers(None))?,
        };
        let t = self.t();
        let peer = &self.peers[dialer];
        let id = self.ledger.open(
            dialer,
            &peer.designator,
            target,
            peer.mode,
            expect,
            t,
            DIAL_DEADLINE,
        );
        if self.peers[dialer]
            .proc
            .send(&format!("dial {uri} {id}"))
            .is_err()
        {
            // It just died; check_exits will say why.
            self.ledger.settle(id, dialer, Outcome::Abandoned, t);
        }
        Some(id)
    }

    // -- faults -------------------------------------------------------------

    pub(super) fn count_fault(&mut self, name: &'static str) {
        *self.faults.entry(name).or_default() += 1;
    }

    pub(super) fn inject_fault(&mut self) {
        let all_up = self.daemons.iter().all(|d| d.state == DaemonState::Up);
        let room = self.misbehaving.len() < MAX_MISBEHAVING;
        let weights = [
            u32::from(all_up), // kill daemon A
            3,                 // stop a peer
            2 * u32::from(room),
            2 * u32::from(room),
            u32::from(room),
            u32::from(room),
            2, // churn
            1, // burst
            2 * u32::from(self.cli.is_none()),
            u32::from(all_up), // stop a daemon
        ];
        let Some(choice) = self.rng.weighted(&weights) else {
            return;
        };
        let result = match choice {
            0 => self.kill_daemon(0),
            1 => self.stop_peer(),
            2 => self.misbehave(Kind::Garbage, "garbage client"),
            3 => self.misbehave(Kind::Stall, "stalled registration"),
            4 => self.misbehave(Kind::Flood, "flooding client"),
            5 => self.misbehave(Kind::Deaf, "deaf client"),
            6 => self.churn(),
            7 => self.burst(),
            8 => self.cli_dial(),
            _ => self.stop_daemon(),
        };
        if let Err(e) = result {
            self.problems.push(format!("injecting a fault: {e}"));
        }
    }

    pub(super) fn kill_daemon(&mut self, i: usize) -> Result<(), String> {
        let t = self.t();
        let pause = self.rng.range(0.5, 3.0);
        let d = &mut self.daemons[i];
        let Some(p) = &mut d.proc else {
            return Ok(());
        };
        p.kill();
        let now = Instant::now();
        d.state = DaemonState::Down {
            since: now,
            restart_at: now + Duration::from_secs_f64(pause),
        };
        self.ledger.fault_starts(Fault::DaemonDown(i), t);
        self.count_fault("daemon A killed (SIGKILL) and restarted");
        Ok(())
    }

    /// Stops (SIGSTOP) a random daemon for 1 to 12 s: a hung server. Its
    /// clients' writes to it time out after 10 s (the netlayer then
    /// reconnects), their dials through it go unanswered and move on to the
    /// other daemon.
    pub(super) fn stop_daemon(&mut self) -> Result<(), String> {
        let i = self.rng.below(self.daemons.len());
        let secs = self.rng.range(1.0, 12.0);
        let t = self.t();
        let d = &mut self.daemons[i];
        let Some(p) = &d.proc else {
            return Ok(());
        };
        signal(p.pid(), "STOP")?;
        let now = Instant::now();
        d.state = DaemonState::Stopped {
            since: now,
            until: now + Duration::from_secs_f64(secs),
        };
        self.ledger.fault_starts(Fault::DaemonDown(i), t);
        self.count_fault("daemon stopped (SIGSTOP, then SIGCONT)");
        Ok(())
    }

    pub(super) fn stop_peer(&mut self) -> Result<(), String> {
        let ready: Vec<PeerId> = (0..self.peers.len())
            .filter(|p| self.peers[*p].state == PeerState::Ready)
            .collect();
        let Some(&p) = self.rng.pick(&ready) else {
            return Ok(());
        };
        // Some stops outlast the netlayer's answer timeout and the
        // daemon's send timeout (10 s each).
        let secs = self.rng.range(1.0, 12.0);
        signal(self.peers[p].proc.pid(), "STOP")?;
        let now = Instant::now();
        self.peers[p].state = PeerState::Stopped {
            since: now,
            until: now + Duration::from_secs_f64(secs),
        };
        let t = self.t();
        self.ledger.fault_starts(Fault::PeerStopped(p), t);
        self.count_fault("peer stopped (SIGSTOP, then SIGCONT)");
        Ok(())
    }

    pub(super) fn misbehave(&mut self, kind: Kind, name: &'static str) -> Result<(), String> {
        self.start_misbehaving(kind)?;
        self.count_fault(name);
        Ok(())
    }

    /// One peer dials one other [`BURST`] times at once: beyond the
    /// daemon's per-target budget, so the daemon slows the sender down;
    /// every dial must still connect.
    pub(super) fn burst(&mut self) -> Result<(), String> {
        let idle: Vec<PeerId> = self
            .dialers(None)
            .into_iter()
            .filter(|p| self.ledger.pending_of(*p) == 0)
            .collect();
        let Some(&dialer) = self.rng.pick(&idle) else {
            return Ok(());
        };
        let mode = self.peers[dialer].mode;
        let targets = self.targets(dialer, (mode == Mode::Plaintext).then_some(Mode::Plaintext));
        let Some(&target) = self.rng.pick(&targets) else {
            return Ok(());
        };
        let uri = self.peers[target].uri.clone().unwrap_or_default();
        for _ in 0..BURST {
            self.dial_to(Some(dialer), uri.clone(), Expect::Connect, Some(target));
        }
        self.count_fault("burst of dials from one peer to one peer");
        Ok(())
    }

    /// `uds-peer connect` (a new process, encrypted) dials a random peer,
    /// sends `soak <id>` from its stdin and must print the reply.
    pub(super) fn cli_dial(&mut self) -> Result<(), String> {
        let targets = self.targets(CLI_DIALER, None);
        let Some(&target) = self.rng.pick(&targets) else {
            return Ok(());
        };
        let uri = self.peers[target].uri.clone().unwrap_or_default();
        let t = self.t();
        let id = self.ledger.open(
            CLI_DIALER,
            &self.cli_designator,
            Some(target),
            Mode::Cli,
            Expect::Connect,
            t,
            DIAL_DEADLINE,
        );
        let mut cmd = Command::new(self.bin.join("uds-peer"));
        for d in &self.daemons {
            cmd.arg("--intro").arg(&d.socket);
        }
        cmd.arg("--key")
            .arg(&self.cli_key)
            .args(["connect", &uri])
            .env("RUST_LOG", "warn");
        let mut proc = match self.spawner.spawn(cmd, &format!("uds-peer-{id}")) {
            Ok(p) => p,
            Err(e) => {
                self.ledger.settle(id, CLI_DIALER, Outcome::Abandoned, t);
                return Err(e);
            }
        };
        // The request, then end of input: uds-peer ends once the peer has
        // answered and closed.
        let _ = proc.send(&format!("soak {id}"));
        drop(proc.stdin.take());
        self.owners.insert(proc.id, Owner::Cli);
        self.cli = Some(CliDial {
            proc,
            id,
            started: Instant::now(),
            stdout: Vec::new(),
        });
        self.count_fault("uds-peer connect (a new process)");
        Ok(())
    }

    pub(super) fn live_peers(&self) -> usize {
        self.peers.iter().filter(|p| p.alive()).count()
    }

    pub(super) fn churn(&mut self) -> Result<(), String> {
        let live = self.live_peers();
        let leave = match live.cmp(&self.args.peers) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.rng.chance(0.5),
        };
        if leave {
            let kill = self.rng.chance(0.2);
            self.leave(None, kill)
        } else {
            self.join()
        }
    }

    /// Makes a peer (a random ready one if `None`) leave: `quit`, or
    /// SIGKILL.
    pub(super) fn leave(&mut self, who: Option<PeerId>, kill: bool) -> Result<(), String> {
        let p = match who {
            Some(p) => p,
            None => {
                let ready: Vec<PeerId> = (0..self.peers.len())
                    .filter(|p| self.peers[*p].state == PeerState::Ready)
                    .collect();
                match self.rng.pick(&ready) {
                    Some(&p) => p,
                    None => return Ok(()),
                }
            }
        };
        let t = self.t();
        let peer = &mut self.peers[p];
        if kill {
            peer.proc.kill();
        } else {
            peer.proc.ending = true;
            peer.proc.send("quit")?;
            drop(peer.proc.stdin.take());
        }
        peer.long_lived = false;
        peer.state = PeerState::Leaving {
            since: Instant::now(),
            killed: kill,
        };
        self.ledger.fault_starts(Fault::PeerLeft(p), t);
        if self.faulting {
            self.count_fault(if kill {
                "peer killed (SIGKILL)"
            } else {
                "peer left (quit)"
            });
        }
        Ok(())
    }

    pub(super) fn join(&mut self) -> Result<(), String> {
        let plaintext = self
            .peers
            .iter()
            .filter(|p| p.alive() && p.mode == Mode::Plaintext)
            .count();
        let mode = if plaintext < self.plaintext_target {
            Mode::Plaintext
        } else {
            Mode::Encrypted
        };
        self.start_peer(mode)?;
        if self.faulting {
            self.count_fault("peer joined");
        }
        Ok(())
    }
}
