//! Measuring: progress lines, /proc figures, `uds-introd status`, the
//! baseline.

use std::process::Command;
use std::time::{Duration, Instant};

use super::ledger::Outcome;
use super::process::{DaemonState, PeerState};
use super::resources::{self, DaemonStatus, Sample};
use super::{DIAL_DEADLINE, Soak};

impl Soak {
    // -- measuring ----------------------------------------------------------

    pub(super) fn progress(&mut self) {
        let t = self.totals_now();
        let mut line = format!(
            "[{:>6.0} s {:<8}] dials {} ok {} err {} pending {} hung {} | faults {} | peers {}",
            self.t(),
            self.phase,
            t.0,
            t.1,
            t.2,
            self.ledger.pending(),
            t.3,
            self.faults.values().sum::<u64>(),
            self.live_peers(),
        );
        for d in &mut self.daemons {
            match d.pid().and_then(resources::sample) {
                Some(s) => {
                    d.peak_rss_kib = d.peak_rss_kib.max(s.rss_kib);
                    line.push_str(&format!(
                        " | {} fds {} rss {}",
                        d.name,
                        s.fds,
                        resources::fmt_kib(s.rss_kib)
                    ));
                }
                None if matches!(d.state, DaemonState::Stopped { .. }) => {
                    line.push_str(&format!(" | {} stopped", d.name))
                }
                None => line.push_str(&format!(" | {} down", d.name)),
            }
        }
        println!("{line}");
    }

    /// (dials, ok, err, hung) so far.
    pub(super) fn totals_now(&self) -> (u64, u64, u64, u64) {
        let mut n = (0, 0, 0, 0);
        for (_, d) in self.ledger.dials() {
            n.0 += 1;
            match &d.outcome {
                Some((Outcome::Ok { .. }, _)) => n.1 += 1,
                Some((Outcome::Err { .. }, _)) => n.2 += 1,
                Some((Outcome::Hung, _)) => n.3 += 1,
                _ => {}
            }
        }
        n
    }

    /// The fd count of `pid` once it is stable (the same for 5 readings
    /// 100 ms apart, at most 5 s), and its RSS.
    pub(super) fn settled_sample(&mut self, pid: u32) -> Option<Sample> {
        let mut last = resources::fd_count(pid)?;
        let mut same = 0;
        let until = Instant::now() + Duration::from_secs(5);
        while same < 5 && Instant::now() < until {
            self.pump(Duration::from_millis(100));
            let now = resources::fd_count(pid)?;
            if now == last {
                same += 1;
            } else {
                same = 0;
                last = now;
            }
        }
        Some(Sample {
            fds: last,
            rss_kib: resources::rss_kib(pid)?,
        })
    }

    pub(super) fn status(&self, i: usize) -> Result<DaemonStatus, String> {
        let d = &self.daemons[i];
        let out = Command::new(self.bin.join("uds-introd"))
            .arg("status")
            .arg("--admin")
            .arg(&d.admin)
            .output()
            .map_err(|e| format!("uds-introd status: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "uds-introd status of {}: {}",
                d.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        resources::parse_status(&String::from_utf8_lossy(&out.stdout))
    }

    /// Stops dialing and waits for every dial to end.
    pub(super) fn quiesce(&mut self) {
        self.dialing = false;
        let limit = Duration::from_secs_f64(DIAL_DEADLINE + 30.0);
        self.run_until(limit, |s| s.ledger.pending() == 0);
    }

    /// Waits until every ready peer is registered with both daemons.
    pub(super) fn wait_registered(&mut self, limit: Duration) -> bool {
        self.run_until(limit, |s| {
            let ids: Vec<&String> = s.daemons.iter().filter_map(|d| d.id.as_ref()).collect();
            s.peers
                .iter()
                .filter(|p| p.state == PeerState::Ready)
                .all(|p| ids.iter().all(|id| p.registered.contains(*id)))
        })
    }

    pub(super) fn take_baseline(&mut self) -> Result<(), String> {
        for i in 0..self.daemons.len() {
            let daemon = self.daemons[i].name;
            let pid = self.daemons[i]
                .pid()
                .ok_or_else(|| format!("daemon {daemon} is down at the baseline"))?;
            let sample = self
                .settled_sample(pid)
                .ok_or_else(|| format!("cannot read daemon {daemon}'s /proc figures"))?;
            let st = self.status(i)?;
            let d = &mut self.daemons[i];
            d.baseline = Some((sample, st.get("clients")));
            d.peak_rss_kib = d.peak_rss_kib.max(sample.rss_kib);
            println!(
                "  baseline of daemon {}: {} fds with {} clients, RSS {}",
                d.name,
                sample.fds,
                st.get("clients"),
                resources::fmt_kib(sample.rss_kib)
            );
        }
        for p in 0..self.peers.len() {
            if self.peers[p].state != PeerState::Ready {
                continue;
            }
            let pid = self.peers[p].proc.pid();
            let sample = self.settled_sample(pid);
            let peer = &mut self.peers[p];
            peer.baseline = sample;
            peer.long_lived = sample.is_some();
        }
        Ok(())
    }
}
