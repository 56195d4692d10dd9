//! Test harness: the real `uds-introd` binary, and a client that speaks the
//! raw introduction protocol.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_fdpass::FdStream;
use uds_handshake::channel::{ChannelEvent, IntroChannel};
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::{Designator, Limits, Locator, NewConnection, SCM_RIGHTS_BODY, Value, WireProfile};

pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("UDS_INTROD_BIN_UNDER_TEST")
        .unwrap_or(env!("CARGO_BIN_EXE_uds-introd").to_owned())
});

/// For tests that run without libtest's harness (their binary is also a
/// helper process): the tests libtest's command line selects (name filters,
/// `--exact`, `--skip`), or `None` after printing them for `--list`. (The
/// same helper as uds-netlayer's tests: each test crate has its own.)
pub fn select_tests<T: Copy>(tests: &[(&'static str, T)]) -> Option<Vec<(&'static str, T)>> {
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let (mut exact, mut list) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    let selected = |name: &str| {
        (filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            }))
            && !skips.iter().any(|s| name.contains(s.as_str()))
    };
    let chosen: Vec<(&'static str, T)> =
        tests.iter().filter(|(n, _)| selected(n)).copied().collect();
    if list {
        for (name, _) in &chosen {
            println!("{name}: test");
        }
        return None;
    }
    Some(chosen)
}

/// How long a test waits for something that should happen (never a timing
/// assertion: only a bound on a hang).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub admin: PathBuf,
    pub id: Designator,
    pub dir: PathBuf,
    stderr: Arc<std::sync::Mutex<String>>,
}

/// Runs `cmd` to completion, or kills it after PATIENCE (a daemon that
/// should have refused to start but is serving): never hangs a test.
pub fn run_to_exit(mut cmd: Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.expect("wait for the command"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "still running after {PATIENCE:?} (expected it to exit): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A private directory for a test (0700).
pub fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("introd-test")
        .tempdir()
        .unwrap()
}

impl Daemon {
    /// Starts the daemon in `dir` with a key file and `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("intro.sock");
        let key = dir.join("server.key");
        let mut cmd = Command::new(&*BIN);
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(&key)
            .args(extra);
        Daemon::spawn(cmd, dir, socket)
    }

    /// Starts a prepared command and waits for its ready line.
    pub fn spawn(cmd: Command, dir: &Path, socket: PathBuf) -> Daemon {
        Daemon::try_spawn(cmd, dir, socket)
            .unwrap_or_else(|stderr| panic!("no ready line; stderr:\n{stderr}"))
    }

    /// Starts the daemon like [`Daemon::start`]; `Err` with its standard
    /// error if it exits without a ready line (it refused to start).
    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Daemon, String> {
        let socket = dir.join("intro.sock");
        let mut cmd = Command::new(&*BIN);
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(dir.join("server.key"))
            .args(extra);
        Daemon::try_spawn(cmd, dir, socket)
    }

    /// Starts a prepared command and waits for its ready line; `Err` with
    /// its standard error if it exits first.
    pub fn try_spawn(mut cmd: Command, dir: &Path, socket: PathBuf) -> Result<Daemon, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "uds_introd=debug,info");
        let mut child = cmd.spawn().expect("start uds-introd");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader has the whole log once it sees the pipe close.
                let start = Instant::now();
                while Arc::strong_count(&log) > 1 && start.elapsed() < PATIENCE {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return Err(log.lock().unwrap().clone());
            }
        };
        let id = parse_ready(&line);
        let admin = PathBuf::from(format!("{}.admin", socket.display()));
        Ok(Daemon {
            child,
            socket,
            admin,
            id,
            dir: dir.to_owned(),
            stderr: log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The warnings in the daemon's log that contain `text`.
    pub fn warnings(&self, text: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(text))
            .count()
    }

    /// Waits until the daemon's log contains `text`.
    pub async fn wait_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log().contains(text) {
            if start.elapsed() > PATIENCE {
                panic!("the log never said {text:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The number of fds the daemon has open.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The daemon's fd count once it has settled (no connection being
    /// opened or closed, such as a status request's).
    pub async fn baseline(&self) -> usize {
        let mut last = self.fd_count();
        let mut same = 0;
        while same < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.fd_count();
            if now == last {
                same += 1;
            } else {
                same = 0;
                last = now;
            }
        }
        last
    }

    /// Waits until the daemon's fd count is back to `baseline`.
    pub async fn wait_fds(&self, baseline: usize) {
        let start = Instant::now();
        loop {
            let now = self.fd_count();
            if now == baseline {
                return;
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "daemon holds {now} fds, baseline {baseline}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `status` text, through the admin socket.
    pub async fn status(&self) -> String {
        uds_introd::admin::request(&self.admin, "status")
            .await
            .expect("status")
    }

    /// One counter from `status` (`refused` counters by reason name).
    pub async fn counter(&self, name: &str) -> u64 {
        let status = self.status().await;
        for line in status.lines() {
            if let Some(v) = line.strip_prefix(&format!("{name}: ")) {
                return v.parse().unwrap();
            }
            if let Some(rest) = line.strip_prefix("refused: ") {
                for item in rest.split(' ') {
                    if let Some(v) = item.strip_prefix(&format!("{name}=")) {
                        return v.parse().unwrap();
                    }
                }
            }
        }
        panic!("no counter {name} in\n{status}")
    }

    /// Waits until a counter is down to `at_most`.
    pub async fn wait_counter_down(&self, name: &str, at_most: u64) {
        let start = Instant::now();
        while self.counter(name).await > at_most {
            if start.elapsed() > PATIENCE {
                panic!(
                    "{name} never fell to {at_most}:\n{}\n{}",
                    self.status().await,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a counter reaches `at_least`.
    pub async fn wait_counter(&self, name: &str, at_least: u64) {
        let start = Instant::now();
        while self.counter(name).await < at_least {
            if start.elapsed() > PATIENCE {
                panic!(
                    "{name} never reached {at_least}:\n{}\n{}",
                    self.status().await,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `signal` and waits (bounded) for the daemon to exit.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        // Bounded: a daemon that ignores the signal fails the test, not
        // hangs it.
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the daemon did not exit within {PATIENCE:?} of {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_ready(line: &str) -> Designator {
    let rest = line
        .strip_prefix("uds-introd ready socket=")
        .unwrap_or_else(|| panic!("not a ready line: {line:?}"));
    let id = rest.rsplit_once(" id=").expect("id=").1;
    let id = id.split_whitespace().next().expect("an id");
    assert!(
        line.ends_with(" wire=goblins") || line.ends_with(" wire=draft"),
        "the ready line names the shape: {line:?}"
    );
    id.parse().expect("designator")
}

/// A client speaking the raw protocol.
pub struct Client {
    pub stream: FdStream,
    pub chan: IntroChannel<OwnedFd>,
    pub identity: Arc<Identity>,
    pub server: Option<Designator>,
}

impl Client {
    /// Connects without registering.
    pub async fn connect(socket: &Path) -> Client {
        Client::connect_as(socket, Arc::new(Identity::generate())).await
    }

    pub async fn connect_as(socket: &Path, identity: Arc<Identity>) -> Client {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .expect("connect");
        Client {
            stream: FdStream::from(stream),
            chan: IntroChannel::new(Limits::intro_channel()),
            identity,
            server: None,
        }
    }

    /// Connects and registers a new identity.
    pub async fn register(socket: &Path, profile: WireProfile) -> Client {
        Client::register_as(socket, Arc::new(Identity::generate()), profile).await
    }

    pub async fn register_as(
        socket: &Path,
        identity: Arc<Identity>,
        profile: WireProfile,
    ) -> Client {
        let mut c = Client::connect_as(socket, identity).await;
        c.handshake(profile).await.expect("registration");
        c
    }

    /// Runs the registration handshake; returns the server's response value.
    pub async fn handshake(&mut self, profile: WireProfile) -> Result<Value, String> {
        let mut hs = ClientHandshake::new(
            self.identity.clone(),
            ClientConfig {
                profile: Some(profile),
                pinned_server: None,
            },
        );
        self.stream
            .send(&hs.register_message(), &[])
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        let response = match self.next().await {
            Some(ChannelEvent::Message { value, .. }) => value,
            other => return Err(format!("expected a server response, got {other:?}")),
        };
        let done = hs.receive(&response).map_err(|e| e.to_string())?;
        self.stream
            .send(&done.signature_message, &[])
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        self.server = Some(done.server);
        // The protocol has no acknowledgement: make sure the server has
        // processed the signature by waiting until it counts us... callers
        // that need that use `Daemon::wait_counter("registrations", n)`.
        Ok(response)
    }

    pub fn locator(&self) -> Locator {
        self.identity.locator()
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.stream.send(bytes, &[]).await.expect("send");
    }

    /// Sends `uds:new-connection` from us to `to` with a new socketpair end;
    /// returns our end.
    pub async fn intro_to(&self, to: &Locator) -> tokio::net::UnixStream {
        self.intro_as(&self.locator(), to).await
    }

    /// The same with any `from`.
    pub async fn intro_as(&self, from: &Locator, to: &Locator) -> tokio::net::UnixStream {
        let (ours, theirs) = uds_fdpass::socketpair().unwrap();
        let record = NewConnection {
            from: from.clone(),
            to: to.clone(),
        };
        self.send(&record.to_value().encode()).await;
        self.stream
            .send(&SCM_RIGHTS_BODY, &[theirs.as_fd()])
            .await
            .expect("send fd");
        drop(theirs);
        let std = StdStream::from(ours);
        std.set_nonblocking(true).unwrap();
        tokio::net::UnixStream::from_std(std).unwrap()
    }

    /// The next event, or `None` on end of stream. Panics after PATIENCE.
    pub async fn next(&mut self) -> Option<ChannelEvent<OwnedFd>> {
        tokio::time::timeout(PATIENCE, self.next_inner())
            .await
            .expect("no event from the daemon")
    }

    async fn next_inner(&mut self) -> Option<ChannelEvent<OwnedFd>> {
        loop {
            match self.chan.next_event() {
                Ok(Some(e)) => return Some(e),
                Ok(None) => {}
                Err(e) => panic!("bad input from the daemon: {e}"),
            }
            let got = self.stream.recv(self.chan.buffer_mut()).await.ok()?;
            if got.is_eof() {
                return None;
            }
            self.chan.push_fds(got.fds);
        }
    }

    /// Waits for an intro; returns the record and the passed socket.
    pub async fn expect_intro(&mut self) -> (NewConnection, tokio::net::UnixStream) {
        match self.next().await {
            Some(ChannelEvent::Introduction {
                record,
                fd,
                extra_fds,
                ..
            }) => {
                assert_eq!(extra_fds, 0);
                uds_fdpass::check_stream_socket(&fd).unwrap();
                let std = StdStream::from(fd);
                std.set_nonblocking(true).unwrap();
                (record, tokio::net::UnixStream::from_std(std).unwrap())
            }
            other => panic!("expected an intro, got {other:?}"),
        }
    }

    /// Waits until the daemon closes this connection.
    pub async fn expect_closed(&mut self) {
        let mut buf = BytesMut::new();
        let r = tokio::time::timeout(PATIENCE, async {
            loop {
                match self.stream.recv(&mut buf).await {
                    Ok(got) if got.is_eof() => return,
                    Ok(_) => {}
                    Err(_) => return, // ECONNRESET counts as closed
                }
            }
        })
        .await;
        assert!(r.is_ok(), "the daemon did not close the connection");
    }
}

/// `a` introduces itself to `b`; bytes flow both ways over the passed
/// socket.
pub async fn exchange(a: &Client, b: &mut Client) {
    let mut ours = a.intro_to(&b.locator()).await;
    let (record, mut theirs) = b.expect_intro().await;
    assert_eq!(record.from, a.locator());
    assert_eq!(record.to, b.locator());
    ours.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    theirs.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    theirs.write_all(b"pong").await.unwrap();
    ours.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

/// A registered pair that must keep working while an offender misbehaves.
pub struct Pair {
    pub a: Client,
    pub b: Client,
}

impl Pair {
    pub async fn new(d: &Daemon) -> Pair {
        let a = Client::register(&d.socket, WireProfile::Draft).await;
        let b = Client::register(&d.socket, WireProfile::Goblins).await;
        let pair = Pair { a, b };
        d.wait_counter("registered", 2).await;
        pair
    }

    pub async fn still_works(&mut self) {
        exchange(&self.a, &mut self.b).await;
        exchange(&self.b, &mut self.a).await;
    }
}

/// Raises our fd limit to the hard limit (children inherit it).
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A child process killed (and reaped) when dropped, so that a test that
/// fails half-way leaves no process behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `src` at `dst`, executable by every user (for running it as another
/// one wherever the checkout lives): a hard link where `dst` is on the same
/// filesystem and the file is already executable by others, a copy (mode
/// 0755) otherwise.
pub fn executable_by_all(src: &Path, dst: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let linked = std::fs::hard_link(src, dst).is_ok()
        && std::fs::metadata(dst).unwrap().permissions().mode() & 0o005 == 0o005;
    if !linked {
        let _ = std::fs::remove_file(dst);
        std::fs::copy(src, dst).unwrap();
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
