//! The processes of a soak run: starting them, routing their output,
//! and what the run knows about each.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::ledger::{Mode, PeerId};
use super::resources::Sample;

/// Sends a signal by name (`STOP`, `CONT`, `TERM`) with kill(1): the
/// workspace forbids `unsafe`, and xtask has no libc binding.
pub(super) fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("kill -{sig} {pid}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pid} failed"))
    }
}

/// The last lines of a log file, for failure reports.
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The designator of an `ocapn://<designator>.unix-domain-socket?...` URI.
pub(super) fn designator_of(uri: &str) -> String {
    uri.trim_start_matches("ocapn://")
        .split(['.', '?'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub(super) type ProcId = u64;

/// A line a process wrote on its stdout.
pub(super) enum Event {
    /// A line the process wrote on its stdout.
    Line(ProcId, String),
    /// Its stdout ended (it exited, or closed it).
    Eof(ProcId),
}

/// A child process: stdout lines arrive as [`Event`]s, stderr goes to a
/// log file.
pub(super) struct Proc {
    pub(super) id: ProcId,
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) log: PathBuf,
    /// We killed it or asked it to stop: its exit is expected.
    pub(super) ending: bool,
    pub(super) exit: Option<ExitStatus>,
    /// Its stdout has ended: every line it wrote has been handled.
    pub(super) eof: bool,
}

impl Proc {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").map_err(|e| e.to_string())
    }

    pub(super) fn kill(&mut self) {
        self.ending = true;
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    /// Whether it has exited (reaping it).
    pub(super) fn exited(&mut self) -> bool {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit.is_some()
    }

    /// Whether it has exited and every line it wrote has been handled.
    pub(super) fn finished(&mut self) -> bool {
        self.exited() && self.eof
    }
}

/// Starts processes and routes their output to one channel.
pub(super) struct Spawner {
    pub(super) tx: Sender<Event>,
    pub(super) next: ProcId,
    pub(super) logs: PathBuf,
}

impl Spawner {
    pub(super) fn spawn(&mut self, mut cmd: Command, log_name: &str) -> Result<Proc, String> {
        let log = self.logs.join(format!("{log_name}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {log_name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        self.next += 1;
        let id = self.next;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(Event::Line(id, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Eof(id));
        });
        Ok(Proc {
            id,
            stdin: child.stdin.take(),
            child,
            log,
            ending: false,
            exit: None,
            eof: false,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DaemonState {
    Starting {
        since: Instant,
    },
    Up,
    Down {
        since: Instant,
        restart_at: Instant,
    },
    /// Stopped (SIGSTOP) until then.
    Stopped {
        since: Instant,
        until: Instant,
    },
}

pub(super) struct Daemon {
    pub(super) name: &'static str,
    pub(super) wire: &'static str,
    pub(super) socket: PathBuf,
    pub(super) admin: PathBuf,
    pub(super) key: PathBuf,
    pub(super) proc: Option<Proc>,
    pub(super) state: DaemonState,
    pub(super) id: Option<String>,
    pub(super) incarnations: u32,
    /// Seconds from each kill to the restarted daemon's ready line.
    pub(super) downtimes: Vec<f64>,
    /// Seconds of each stop.
    pub(super) stops: Vec<f64>,
    pub(super) baseline: Option<(Sample, u64)>,
    pub(super) peak_rss_kib: u64,
}

impl Daemon {
    pub(super) fn pid(&self) -> Option<u32> {
        match (&self.proc, self.state) {
            (Some(p), DaemonState::Up) => Some(p.pid()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum PeerState {
    Starting { since: Instant },
    Ready,
    Stopped { since: Instant, until: Instant },
    Leaving { since: Instant, killed: bool },
    Gone,
}

pub(super) struct Peer {
    pub(super) name: String,
    pub(super) mode: Mode,
    pub(super) proc: Proc,
    pub(super) state: PeerState,
    pub(super) uri: Option<String>,
    pub(super) designator: String,
    /// Servers it says it is registered with.
    pub(super) registered: BTreeSet<String>,
    /// Alive since the baseline.
    pub(super) long_lived: bool,
    pub(super) baseline: Option<Sample>,
    pub(super) stats: Option<BTreeMap<String, u64>>,
    pub(super) bye: bool,
}

impl Peer {
    /// Whether it can be dialed (it may be stopped or about to leave).
    pub(super) fn dialable(&self) -> bool {
        self.uri.is_some()
            && matches!(
                self.state,
                PeerState::Ready | PeerState::Stopped { .. } | PeerState::Leaving { .. }
            )
    }

    pub(super) fn alive(&self) -> bool {
        matches!(
            self.state,
            PeerState::Starting { .. } | PeerState::Ready | PeerState::Stopped { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Garbage,
    Stall,
    Flood,
    Deaf,
}

impl Kind {
    pub(super) fn role(self) -> &'static str {
        match self {
            Kind::Garbage => "garbage",
            Kind::Stall => "stall",
            Kind::Flood => "flood",
            Kind::Deaf => "deaf",
        }
    }
}

pub(super) struct Misbehaving {
    pub(super) kind: Kind,
    pub(super) proc: Proc,
    pub(super) daemon: usize,
    pub(super) deadline: Instant,
    pub(super) outcome: Option<String>,
    pub(super) uri: Option<String>,
    /// Dials still to send to a deaf client.
    pub(super) dial_plan: Vec<Instant>,
}

/// What the misbehaving clients of one kind did.
#[derive(Debug, Default, Clone)]
pub(super) struct KindStats {
    pub(super) started: u64,
    pub(super) closed: u64,
    pub(super) not_closed: u64,
    pub(super) cannot_connect: u64,
    pub(super) max_close_ms: u64,
    pub(super) flood_sent: u64,
    pub(super) flood_disconnected: u64,
    pub(super) deaf_dials: u64,
    pub(super) self_intros: u64,
    pub(super) self_intros_cut: u64,
    pub(super) overran: u64,
}

/// Who owns a process.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    Cli,
    Daemon(usize),
    Peer(PeerId),
    Misbehaving(ProcId),
}

/// A one-shot `uds-peer connect` process: a dial made by the command-line
/// tool, with a fresh registration each time.
pub(super) struct CliDial {
    pub(super) proc: Proc,
    /// The dial's id in the ledger.
    pub(super) id: u64,
    pub(super) started: Instant,
    pub(super) stdout: Vec<String>,
}

/// The error a failed `uds-peer` printed: the last line of its log that
/// starts with `uds-peer: `, else its exit status.
pub(super) fn cli_error(log: &str, status: Option<ExitStatus>) -> String {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("uds-peer: "))
        .map(str::to_owned)
        .unwrap_or_else(|| match status {
            Some(s) => format!("uds-peer exited with {s} and said nothing"),
            None => "uds-peer did not exit".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designators_of_uris() {
        let d = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena";
        assert_eq!(
            designator_of(&format!("ocapn://{d}.unix-domain-socket?x=1")),
            d
        );
        assert_eq!(designator_of(&format!("ocapn://{d}?x")), d);
    }

    #[test]
    fn uds_peer_errors_are_its_last_message() {
        let log =
            "2026 WARN something\nuds-peer: first\nuds-peer: could not reach x: via y: closed\n";
        assert_eq!(cli_error(log, None), "could not reach x: via y: closed");
        assert_eq!(cli_error("", None), "uds-peer did not exit");
        let status = Command::new("sh").args(["-c", "exit 3"]).status().unwrap();
        assert!(cli_error("noise\n", Some(status)).contains("exited with"));
    }

    #[test]
    fn spawned_lines_arrive_and_signals_are_sent() {
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::env::temp_dir();
        let mut spawner = Spawner { tx, next: 0, logs };
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "read x; echo oops >&2; echo \"got $x\"; exec sleep 60",
        ]);
        let mut p = spawner
            .spawn(cmd, &format!("xtask-soak-test-{}", std::process::id()))
            .unwrap();
        // Should an assertion fail, the child goes too (only then: once it
        // has been reaped, its pid may be reused).
        struct KillIfFailing(u32);
        impl Drop for KillIfFailing {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let _ = signal(self.0, "KILL");
                }
            }
        }
        let _guard = KillIfFailing(p.pid());
        p.send("hello").unwrap();
        let Ok(Event::Line(id, line)) = rx.recv_timeout(std::time::Duration::from_secs(20)) else {
            panic!("no line");
        };
        assert_eq!((id, line.as_str()), (p.id, "got hello"));
        assert!(!p.exited());
        signal(p.pid(), "TERM").unwrap();
        let until = Instant::now() + std::time::Duration::from_secs(20);
        while !p.exited() && Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(p.exited() && !p.exit.unwrap().success());
        let Ok(Event::Eof(id)) = rx.recv_timeout(std::time::Duration::from_secs(20)) else {
            panic!("no end of output");
        };
        assert_eq!(id, p.id);
        assert!(log_tail(&p.log, 5).contains("oops"));
        let _ = std::fs::remove_file(&p.log);
    }
}
