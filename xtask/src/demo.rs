//! `cargo xtask demo`: the whole system across real processes.
//!
//! Starts `uds-introd` in a private temporary directory and three peers
//! (alice, bob, carol: the `demo_peer` example of uds-netlayer), then
//! narrates and verifies each step. Exits 0 only if every step was
//! verified; every process and file is cleaned up either way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{cargo, procs, workspace_root};

/// How long any one step may take before the demo gives up.
const STEP: Duration = Duration::from_secs(15);

/// How many of a process's last stderr lines a failed demo shows.
const STDERR_TAIL: usize = 30;

/// The end of one process's stderr, kept so that a failed demo can show
/// what its processes said (a successful one shows nothing).
struct StderrTail {
    name: String,
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: JoinHandle<()>,
}

thread_local! {
    /// The stderr tails of the processes this thread's demo started.
    static STDERR_TAILS: RefCell<Vec<StderrTail>> = const { RefCell::new(Vec::new()) };
}

/// Forgets the stderr of earlier runs on this thread.
fn clear_stderr_tails() {
    STDERR_TAILS.with(|t| t.borrow_mut().clear());
}

/// The last lines each process started on this thread wrote to stderr,
/// for processes that wrote any; empty if none did. Call after the
/// processes have stopped.
fn stderr_report() -> String {
    let tails = STDERR_TAILS.with(|t| std::mem::take(&mut *t.borrow_mut()));
    let mut report = String::new();
    for tail in tails {
        // The reader ends at the stopped process's end of file; a process
        // that left a child holding its stderr is not waited for long.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tail.reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let lines = tail.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            continue;
        }
        report.push_str(&format!(
            "\n--- {} wrote to stderr (last {} lines at most) ---\n",
            tail.name, STDERR_TAIL
        ));
        for l in lines.iter() {
            report.push_str(l);
            report.push('\n');
        }
    }
    report
}

/// A child process whose stdout lines arrive on a channel.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(name: &str, mut cmd: Command) -> Result<Proc, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == STDERR_TAIL {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        STDERR_TAILS.with(|t| {
            t.borrow_mut().push(StderrTail {
                name: name.to_owned(),
                lines,
                reader,
            })
        });
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits for a line satisfying `want`; returns it.
    fn expect(&mut self, what: &str, want: impl Fn(&str) -> bool) -> Result<String, String> {
        if let Some(i) = self.seen.iter().position(|l| want(l)) {
            return Ok(self.seen.remove(i));
        }
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return Ok(line),
                Ok(line) if line.starts_with("error") => {
                    return Err(format!("{}: {line} (while waiting for {what})", self.name));
                }
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} did not report {what} within {STEP:?} (it said: {:?})",
                        self.name, self.seen
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{} exited while waiting for {what}", self.name));
                }
            }
        }
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}").map_err(|e| format!("{}: {e}", self.name))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.kill();
    }
}

fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("\n[{n}] {text}");
}

fn ok(text: &str) {
    println!("    ok: {text}");
}

fn build(root: &Path) -> Result<PathBuf, String> {
    println!("Building uds-introd and the demo peer (the first time takes a few minutes)...");
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["build", "--quiet", "-p", "uds-introd", "-p", "uds-netlayer"])
        .args(["--bin", "uds-introd", "--example", "demo_peer"])
        .args(["--example", "lying_introd"])
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build failed".into());
    }
    Ok(procs::target_dir(root).join("debug"))
}

struct Daemon {
    proc: Proc,
}

fn start_daemon(bin: &Path, dir: &Path) -> Result<(Daemon, String), String> {
    let mut cmd = Command::new(bin.join("uds-introd"));
    cmd.arg("--socket")
        .arg(dir.join("intro.sock"))
        .arg("--key")
        .arg(dir.join("introd.key"))
        .env("RUST_LOG", "warn");
    let mut proc = Proc::start("uds-introd", cmd)?;
    let line = proc.expect("its ready line", |l| l.starts_with("uds-introd ready"))?;
    let id = line
        .rsplit_once(" id=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .ok_or("malformed ready line")?;
    Ok((Daemon { proc }, id))
}

fn start_peer(bin: &Path, dir: &Path, name: &str) -> Result<(Proc, String), String> {
    start_peer_via(bin, dir, name, "intro.sock", false)
}

/// A lying introduction server (the `lying_introd` example) at
/// `dir/socket`, telling `lie`.
fn start_liar(bin: &Path, dir: &Path, socket: &str, lie: &[&str]) -> Result<Proc, String> {
    let mut cmd = Command::new(bin.join("examples").join("lying_introd"));
    cmd.arg("--socket").arg(dir.join(socket)).args(lie);
    let mut p = Proc::start("the lying server", cmd)?;
    p.expect("its ready line", |l| l.starts_with("lying-introd ready"))?;
    Ok(p)
}

/// Everything `p` printed so far and prints within `wait`.
fn drain(p: &mut Proc, wait: Duration) -> Vec<String> {
    let mut lines = std::mem::take(&mut p.seen);
    let deadline = Instant::now() + wait;
    while let Ok(l) = p
        .lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        lines.push(l);
    }
    lines
}

/// A demo peer registered with the server at `dir/socket`.
fn start_peer_via(
    bin: &Path,
    dir: &Path,
    name: &str,
    socket: &str,
    plaintext: bool,
) -> Result<(Proc, String), String> {
    let mut cmd = Command::new(bin.join("examples").join("demo_peer"));
    cmd.args(["--name", name])
        .arg("--intro")
        .arg(dir.join(socket))
        .arg("--key")
        .arg(dir.join(format!("{name}.key")));
    if plaintext {
        cmd.arg("--plaintext");
    }
    let mut p = Proc::start(name, cmd)?;
    let ready = p.expect("registration", |l| l.starts_with("ready "))?;
    Ok((p, ready["ready ".len()..].to_owned()))
}

fn designator(uri: &str) -> &str {
    uri.trim_start_matches("ocapn://")
        .split('.')
        .next()
        .unwrap_or_default()
}

/// Sends `text` from `from` to `to` (named `to_name`, known to `from` as
/// `to_name`) and checks that it arrives.
fn say(from: &mut Proc, to: &mut Proc, text: &str) -> Result<(), String> {
    from.send(&format!("say {} {text}", to.name))?;
    let want = format!("said {} {text}", from.name);
    to.expect(&format!("{}'s message", from.name), |l| l == want)?;
    ok(&format!("{} -> {}: {text:?}", from.name, to.name));
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!(
            "unknown argument {a:?} (cargo xtask demo takes none)"
        ));
    }
    let root = workspace_root();
    let bin = build(&root)?;
    let dir = procs::private_dir("ocapn-uds-demo")?;
    let started = Instant::now();
    clear_stderr_tails();
    // Every process is stopped when `scenario` returns (`Proc` kills on
    // drop), so their stderr is complete by the time it is reported.
    let result = scenario(&bin, &dir);
    let stderr = stderr_report();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => {
            println!(
                "\nAll steps verified in {:.1} s; every process stopped and {} removed.",
                started.elapsed().as_secs_f64(),
                dir.display()
            );
            Ok(())
        }
        Err(e) if stderr.is_empty() => {
            Err(format!("demo failed: {e}\n(no process wrote to stderr)"))
        }
        Err(e) => Err(format!("demo failed: {e}\n{stderr}")),
    }
}

fn scenario(bin: &Path, dir: &Path) -> Result<(), String> {
    let mut n = 0;
    println!("\nA private directory for this run: {}", dir.display());

    step(
        &mut n,
        "Start the introduction server (uds-introd) with a persistent key",
    );
    let (mut daemon, id) = start_daemon(bin, dir)?;
    ok(&format!("listening on intro.sock as {id}"));

    step(
        &mut n,
        "Start alice, bob and carol; each registers with the server",
    );
    let (mut alice, alice_uri) = start_peer(bin, dir, "alice")?;
    let (mut bob, bob_uri) = start_peer(bin, dir, "bob")?;
    let (mut carol, carol_uri) = start_peer(bin, dir, "carol")?;
    for (name, uri) in [
        ("alice", &alice_uri),
        ("bob", &bob_uri),
        ("carol", &carol_uri),
    ] {
        if !uri.contains(&id) {
            return Err(format!("{name}'s locator {uri} does not name the server"));
        }
        ok(&format!("{name} is {uri}"));
    }
    let status = Command::new(bin.join("uds-introd"))
        .arg("status")
        .arg("--socket")
        .arg(dir.join("intro.sock"))
        .output()
        .map_err(|e| format!("uds-introd status: {e}"))?;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    for uri in [&alice_uri, &bob_uri, &carol_uri] {
        if !status.contains(designator(uri)) {
            return Err(format!("uds-introd status does not list {uri}:\n{status}"));
        }
    }
    ok("uds-introd status lists all three peers");

    step(
        &mut n,
        "alice connects to bob; they exchange messages over a direct socket",
    );
    alice.send(&format!("connect {bob_uri}"))?;
    alice.expect("a connection to bob", |l| l.starts_with("connected bob "))?;
    bob.expect("a connection from alice", |l| {
        l.starts_with("connected alice ")
    })?;
    say(&mut alice, &mut bob, "hello bob")?;
    say(&mut bob, &mut alice, "hi alice")?;

    step(&mut n, "alice connects to carol");
    alice.send(&format!("connect {carol_uri}"))?;
    alice.expect("a connection to carol", |l| {
        l.starts_with("connected carol ")
    })?;
    carol.expect("a connection from alice", |l| {
        l.starts_with("connected alice ")
    })?;
    say(&mut alice, &mut carol, "hello carol")?;
    say(&mut carol, &mut alice, "hi alice")?;

    step(
        &mut n,
        "alice hands bob carol's locator; bob connects to carol (a third party's introduction)",
    );
    alice.send(&format!("introduce bob {carol_uri}"))?;
    bob.expect("carol's locator from alice", |l| {
        l.starts_with("introduced-to ")
    })?;
    bob.expect("a connection to carol", |l| {
        l.starts_with("connected carol ")
    })?;
    carol.expect("a connection from bob", |l| l.starts_with("connected bob "))?;
    say(&mut bob, &mut carol, "alice sent me")?;
    say(&mut carol, &mut bob, "welcome bob")?;

    step(
        &mut n,
        "Kill the introduction server (SIGKILL): established connections keep working",
    );
    daemon.proc.kill();
    for p in [&mut alice, &mut bob, &mut carol] {
        p.expect("losing the server", |l| l.starts_with("unregistered "))?;
        // Earlier lines (the first registration) must not be mistaken for
        // the re-registration awaited below.
        p.seen.clear();
    }
    ok("the peers noticed the server is gone");
    say(&mut alice, &mut bob, "still here")?;
    say(&mut carol, &mut alice, "me too")?;
    say(&mut bob, &mut carol, "and me")?;

    step(
        &mut n,
        "Restart the server with the same key: the peers re-register on their own",
    );
    let (daemon2, id2) = start_daemon(bin, dir)?;
    if id2 != id {
        return Err(format!("the restarted server is {id2}, expected {id}"));
    }
    ok(&format!("the server is back with the same id {id2}"));
    for p in [&mut alice, &mut bob, &mut carol] {
        let want = format!("registered {id}");
        p.expect("re-registration", |l| l == want)?;
        ok(&format!("{} registered again", p.name));
    }

    step(
        &mut n,
        "bob connects to alice anew through the restarted server",
    );
    bob.send(&format!("connect {alice_uri}"))?;
    bob.expect("a new connection to alice", |l| {
        l.starts_with("connected alice ") && l.ends_with(" out")
    })?;
    alice.expect("a new connection from bob", |l| {
        l.starts_with("connected bob ") && l.ends_with(" in")
    })?;
    say(&mut bob, &mut alice, "reconnected")?;
    say(&mut alice, &mut bob, "welcome back")?;

    lying_servers(bin, dir, &mut n)?;

    step(&mut n, "Stop everything");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.send("quit")?;
    }
    drop((alice, bob, carol, daemon2));
    ok("all processes stopped");
    Ok(())
}

/// A lying introduction server, first between plaintext peers (it reads
/// and could change everything), then between encrypted peers (it sees only
/// ciphertext, and tampering is refused).
fn lying_servers(bin: &Path, dir: &Path, n: &mut u32) -> Result<(), String> {
    step(
        n,
        "A lying introduction server relays dave -> erin through a socket of its own \
         (plaintext peers, as the draft and Goblins speak)",
    );
    let mut liar = start_liar(bin, dir, "liar.sock", &["--lie", "relay"])?;
    let (mut dave, _) = start_peer_via(bin, dir, "dave", "liar.sock", true)?;
    let (mut erin, erin_uri) = start_peer_via(bin, dir, "erin", "liar.sock", true)?;
    dave.send(&format!("connect {erin_uri}"))?;
    dave.expect("a connection to erin", |l| l.starts_with("connected erin "))?;
    erin.expect("a warning that the socket was relayed", |l| {
        l.starts_with("relayed ")
    })?;
    ok("erin sees that the server made the socket (relayed), but plaintext cannot tell more");
    say(&mut dave, &mut erin, "meet at noon")?;
    let read = liar.expect("what it read", |l| l.contains("meet at noon"))?;
    ok(&format!("the lying server read it: {read}"));
    drop((dave, erin));

    step(
        n,
        "The same relay between encrypted peers (the default): it sees only ciphertext",
    );
    drain(&mut liar, Duration::from_millis(100));
    let (mut frank, _) = start_peer_via(bin, dir, "frank", "liar.sock", false)?;
    let (mut grace, grace_uri) = start_peer_via(bin, dir, "grace", "liar.sock", false)?;
    frank.send(&format!("connect {grace_uri}"))?;
    frank.expect("a connection to grace", |l| {
        l.starts_with("connected grace ")
    })?;
    say(&mut frank, &mut grace, "the vault code is 1234")?;
    say(&mut grace, &mut frank, "noted")?;
    let seen = drain(&mut liar, Duration::from_millis(300));
    let relayed: Vec<&String> = seen.iter().filter(|l| l.contains(" -> ")).collect();
    if relayed.is_empty() {
        return Err("the lying server relayed nothing".into());
    }
    if seen
        .iter()
        .any(|l| l.contains("vault") || l.contains("noted"))
    {
        return Err(format!("the relay read encrypted traffic: {seen:?}"));
    }
    for l in relayed.iter().take(3) {
        println!("        the lying server saw: {l}");
    }
    ok("the messages arrived; the relay saw only ciphertext");
    drop((frank, grace, liar));

    step(
        n,
        "A lying server that flips one bit: the encrypted peers refuse the connection",
    );
    let mut tamperer = start_liar(
        bin,
        dir,
        "tamper.sock",
        &["--lie", "tamper", "--flip", "back:100"],
    )?;
    let (mut henry, _) = start_peer_via(bin, dir, "henry", "tamper.sock", false)?;
    let (_iris, iris_uri) = start_peer_via(bin, dir, "iris", "tamper.sock", false)?;
    henry.send(&format!("connect {iris_uri}"))?;
    let refused = henry.expect("the connection refused", |l| {
        l.starts_with("error connect") && l.contains("could not prove its identity")
    })?;
    tamperer.expect("the flipped bit", |l| l.contains("flipped one bit"))?;
    ok(&format!("henry reports: {refused}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's first command, every step verified, against binaries
    /// built the way the command builds them.
    #[test]
    fn the_demo_passes() {
        run(&[]).unwrap();
    }

    /// A process that fails shows what it wrote to stderr in the report,
    /// and only the last lines of it.
    #[test]
    fn a_failing_process_shows_its_stderr() {
        clear_stderr_tails();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo line$i >&2; i=$((i+1)); done; \
             echo 'error: cannot bind' >&2; exit 1",
        ]);
        let mut p = Proc::start("failing", cmd).unwrap();
        let e = p.expect("its ready line", |l| l == "ready").unwrap_err();
        assert!(e.contains("failing exited"), "{e}");
        drop(p);
        let report = stderr_report();
        assert!(report.contains("--- failing wrote to stderr"), "{report}");
        assert!(report.contains("error: cannot bind"), "{report}");
        assert!(report.contains("line39"), "{report}");
        assert!(
            !report.contains("line9\n"),
            "kept more than the tail: {report}"
        );
        // A process that wrote nothing adds nothing.
        let quiet = Proc::start("quiet", Command::new("true")).unwrap();
        drop(quiet);
        assert_eq!(stderr_report(), "");
    }

    /// A command sent as soon as a peer prints `connected` reaches that
    /// connection. The line used to be printed before the peer could route
    /// to the connection, and a `say` right after it then found none (the
    /// demo failed about one run in three).
    #[test]
    fn a_reported_connection_is_usable_at_once() {
        let bin = build(&workspace_root()).unwrap();
        let dir = procs::private_dir("ocapn-uds-demo-connect-test").unwrap();
        let result = (|| -> Result<(), String> {
            let (_daemon, _) = start_daemon(&bin, &dir)?;
            let (mut bob, bob_uri) = start_peer(&bin, &dir, "bob")?;
            // A new dialer each time: only a peer's first connection to bob
            // can be missed (later `say`s would take an older one).
            for i in 0..40 {
                let (mut dialer, _) = start_peer(&bin, &dir, &format!("dialer{i}"))?;
                dialer.send(&format!("connect {bob_uri}"))?;
                dialer.expect("a connection to bob", |l| l.starts_with("connected bob "))?;
                say(&mut dialer, &mut bob, "hello")?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result.unwrap();
    }
}
