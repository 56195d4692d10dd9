//! The daemon's async shell: it accepts connections, runs each client's
//! registration handshake and reads its intros, and performs what the
//! [`Router`](crate::router::Router) decides.
//!
//! Each client connection is one task, the only owner of that socket: it
//! reads with an [`IntroReader`] (unless the router paused it) and writes
//! the intros the router queues for it with a [`UnitWriter`], both
//! cancel-safe, from one `select!`. The registration handshake is
//! `uds-handshake`'s state machine; every rule about who may send what to
//! whom, and every deadline, is the router's. One more task sleeps until the
//! router's next deadline.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uds_fdpass::{Credentials, FdStream};
use uds_handshake::channel::{ChannelError, ChannelEvent};
use uds_handshake::io::{IntroReader, Outgoing, ReadError, UnitWriter};
use uds_handshake::{Identity, ServerHandshake, ServerStep};
use uds_syrup::{Designator, WireProfile};

use crate::config::Config;
use crate::router::{Action, ClientId, Router, RouterStatus};
use crate::stats::{Counters, Reason};

/// Locks a mutex, recovering the data if another task panicked while
/// holding it (the daemon keeps serving).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An introduction server: hand it listeners and connections, query its
/// status, shut it down.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use uds_introd::{Config, Listener, Server};
/// use uds_handshake::Identity;
///
/// let server = Server::new(Arc::new(Identity::generate()), Config::default());
/// let listener = Listener::bind_path("/run/user/1000/ocapn/intro.sock".as_ref(), 0o600)?;
/// println!("serving as {}", server.designator());
/// let listener = listener.activate()?;
/// server.serve(listener.listener()).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.designator())
            .finish_non_exhaustive()
    }
}

struct Shared {
    identity: Arc<Identity>,
    config: Config,
    core: Mutex<Core>,
    /// Wakes the timer task when an earlier deadline appears.
    timer: Notify,
    shutdown: CancellationToken,
    started: Instant,
    started_wall: SystemTime,
    /// Clients closed so far, per reason (`Reason::index`), as logged:
    /// the count that throttles the log (see `Session::log_end`).
    closes_logged: [AtomicU64; Reason::ALL.len()],
    /// Clients closed because a write hit a daemon-wide kernel limit
    /// (`End::DaemonLimit`), as logged.
    daemon_limits_logged: AtomicU64,
}

/// The router and the handles of the sessions it talks about.
struct Core {
    router: Router<OwnedFd>,
    handles: HashMap<ClientId, Arc<Handle>>,
    /// The deadline the timer task sleeps until.
    armed: Option<Instant>,
}

/// What the router asked of one session, set by whichever task ran the
/// router, read by the session.
struct Handle {
    notify: Notify,
    closed: Mutex<Option<(Reason, String)>>,
    paused: AtomicBool,
    output: AtomicBool,
    /// The client's socket, for the sender's task to write an intro
    /// directly when the client is not writing (saves a task wakeup).
    stream: Arc<FdStream>,
    /// An intro another task started writing to this client and could not
    /// finish without waiting: this client's session finishes it.
    takeover: Mutex<Option<UnitWriter>>,
}

/// An intro to write to an idle client from the task that queued it.
struct Direct {
    client: ClientId,
    handle: Arc<Handle>,
    unit: UnitWriter,
}

impl Core {
    /// Performs the router's actions; wakes the timer task if the next
    /// deadline moved earlier. Intros for idle clients are returned, to be
    /// written by the caller once it has released the lock ([`write_direct`]).
    fn dispatch(&mut self, timer: &Notify) -> Vec<Direct> {
        let mut direct = Vec::new();
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Close {
                    client,
                    reason,
                    detail,
                } => {
                    if let Some(h) = self.handles.remove(&client) {
                        *lock(&h.closed) = Some((reason, detail));
                        h.notify.notify_one();
                    }
                }
                Action::Pause(client) => {
                    if let Some(h) = self.handles.get(&client) {
                        h.paused.store(true, Ordering::Relaxed);
                    }
                }
                Action::Resume(client) => {
                    if let Some(h) = self.handles.get(&client) {
                        h.paused.store(false, Ordering::Relaxed);
                        h.notify.notify_one();
                    }
                }
                Action::Wake(client) => {
                    if let Some(h) = self.handles.get(&client) {
                        match self.router.poll_transmit(Instant::now(), client) {
                            Some(t) => direct.push(Direct {
                                client,
                                handle: h.clone(),
                                unit: UnitWriter::new(Outgoing::Intro {
                                    record: t.record,
                                    fd: t.fd,
                                }),
                            }),
                            None => {
                                h.output.store(true, Ordering::Relaxed);
                                h.notify.notify_one();
                            }
                        }
                    }
                }
            }
        }
        self.arm(timer);
        direct
    }

    /// Wakes the timer task if the router's next deadline is earlier than
    /// the one it sleeps until (or it sleeps without one). Due after every
    /// router call that can add a deadline.
    fn arm(&mut self, timer: &Notify) {
        let next = self.router.poll_timeout();
        if next.is_some() && (self.armed.is_none() || next < self.armed) {
            self.armed = next;
            timer.notify_one();
        }
    }
}

/// Writes intros to idle clients from the current task, without waking
/// theirs: one `sendmsg` attempt each, never waiting. A write that cannot
/// finish at once is handed to the client's own session, which finishes it
/// (the router counts it as in flight either way, so nobody else writes to
/// that client meanwhile).
fn write_direct(shared: &Shared, mut direct: Vec<Direct>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let Some(mut d) = direct.pop() {
        match d.unit.poll_write(&mut cx, &d.handle.stream) {
            std::task::Poll::Ready(Ok(())) => {
                drop(d.unit); // closes our copy of the fd
                let mut core = lock(&shared.core);
                core.router.sent(Instant::now(), d.client);
                if core.router.has_queued(d.client) {
                    d.handle.output.store(true, Ordering::Relaxed);
                    d.handle.notify.notify_one();
                }
                direct.extend(core.dispatch(&shared.timer));
            }
            // Not finished (or failed: the session sees the same error and
            // ends): the client's session takes over.
            _ => {
                *lock(&d.handle.takeover) = Some(d.unit);
                d.handle.notify.notify_one();
            }
        }
    }
}

/// A snapshot of the daemon's state, as `uds-introd status` shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The daemon's designator.
    pub id: Designator,
    /// The confinement in force ([`Config::sandbox`]).
    pub sandbox: Option<uds_sandbox::Report>,
    /// Time since start.
    pub uptime: Duration,
    /// The router's state and counters.
    pub router: RouterStatus,
    /// The registered peers, sorted by designator.
    pub peers: Vec<PeerStatus>,
}

impl Status {
    /// The counters since start.
    pub fn counters(&self) -> &Counters {
        &self.router.counters
    }
}

/// One registered peer in a [`Status`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerStatus {
    /// Its designator.
    pub designator: Designator,
    /// Its process credentials.
    pub creds: Credentials,
    /// When it registered.
    pub since: SystemTime,
}

/// Why a session ended, for the log.
enum End {
    /// The router closed it (already counted).
    Closed(Reason, String),
    /// The client broke a rule the shell checks (counted here).
    Refused(Reason, String),
    Eof,
    /// The client went away mid-read or mid-write (not a refusal).
    Gone(String),
    /// The daemon itself hit a kernel limit writing to the client (not the
    /// client's doing, and worth a warning).
    DaemonLimit(String),
    Shutdown,
}

/// Maps a read error to the end of the session it causes.
fn read_end(e: ReadError) -> End {
    let reason = match &e {
        ReadError::Io(_) => return End::Gone(e.to_string()),
        ReadError::Truncated { .. } => Reason::Protocol,
        ReadError::WrongPid { .. } => Reason::WrongPid,
        ReadError::Channel(ChannelError::Syrup(d)) if d.is_limit() => Reason::Limit,
        ReadError::Channel(ChannelError::MissingFd { .. }) => Reason::MissingFd,
        ReadError::Channel(ChannelError::UnexpectedFd { .. }) => Reason::BadFd,
        ReadError::Channel(_) => Reason::Protocol,
        _ => Reason::Protocol,
    };
    End::Refused(reason, e.to_string())
}

/// Maps a failed send to the end of the session it causes.
fn send_end(e: uds_fdpass::SendError) -> End {
    match e {
        // Too many passed sockets in flight for the daemon's uid: the
        // kernel refuses every fd the daemon passes until they are read.
        uds_fdpass::SendError::Io(e)
            if e.raw_os_error() == Some(nix::errno::Errno::ETOOMANYREFS as i32) =>
        {
            End::DaemonLimit(format!(
                "passing a socket failed: {e} (the daemon's uid has more passed sockets \
                 in flight than its RLIMIT_NOFILE: clients that do not read hold them; see \
                 docs/limits.md)"
            ))
        }
        uds_fdpass::SendError::Io(e) => End::Gone(format!("write failed: {e}")),
        other => End::Refused(Reason::Protocol, format!("write failed: {other}")),
    }
}

impl Server {
    /// A server with this identity and configuration.
    pub fn new(identity: Arc<Identity>, config: Config) -> Server {
        let router = Router::new(config.limits, config.policy.clone());
        let shared = Arc::new(Shared {
            identity,
            config,
            core: Mutex::new(Core {
                router,
                handles: HashMap::new(),
                armed: None,
            }),
            timer: Notify::new(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            closes_logged: std::array::from_fn(|_| AtomicU64::new(0)),
            daemon_limits_logged: AtomicU64::new(0),
        });
        tokio::spawn(run_timers(shared.clone()));
        Server { shared }
    }

    /// The server's designator (its public key), which peers put in their
    /// locators' hints.
    pub fn designator(&self) -> Designator {
        self.shared.identity.designator()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Asks every session and `serve` loop to end.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Resolves when [`Server::shutdown`] has been called.
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await;
    }

    /// A snapshot of the state.
    pub fn status(&self) -> Status {
        let s = &self.shared;
        let now = Instant::now();
        let (router, mut peers) = {
            let core = lock(&s.core);
            (core.router.status(), core.router.peers(now))
        };
        // Sorted outside the lock: with many peers, routing does not wait.
        peers.sort_unstable_by_key(|p| *p.designator.key_bytes());
        let wall = SystemTime::now();
        Status {
            id: self.designator(),
            sandbox: s.config.sandbox.clone(),
            uptime: now.saturating_duration_since(s.started),
            router,
            peers: peers
                .into_iter()
                .map(|p| PeerStatus {
                    designator: p.designator,
                    creds: p.creds,
                    since: wall.checked_sub(p.registered_for).unwrap_or(s.started_wall),
                })
                .collect(),
        }
    }

    /// Accepts clients on `listener` until shutdown.
    pub async fn serve(&self, listener: &UnixListener) {
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => self.admit(FdStream::from(stream), None),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Serves one already-connected client socket (for example one end of a
    /// socketpair whose other end was given to a child process).
    ///
    /// With `only_pid`, every message on the socket must come from that
    /// process, checked with `SCM_CREDENTIALS`: turn `SO_PASSCRED` on for
    /// the socket ([`FdStream::set_pass_credentials`]) before that process
    /// can write to it. Otherwise the client is admitted by its
    /// `SO_PEERCRED` credentials like any other.
    pub fn serve_connection(&self, stream: FdStream, only_pid: Option<i32>) {
        self.admit(stream, only_pid);
    }

    fn admit(&self, stream: FdStream, only_pid: Option<i32>) {
        let s = &self.shared;
        let creds = match stream.peer_credentials() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("refused a client: cannot read its credentials: {e}");
                lock(&s.core).router.count_rejected(Reason::Credentials);
                return;
            }
        };
        // A spawned child's socketpair was created by the daemon itself, so
        // SO_PEERCRED names the daemon: record the child's pid instead (every
        // read is checked against it with SCM_CREDENTIALS).
        let creds = match only_pid {
            Some(pid) => Credentials { pid, ..creds },
            None => creds,
        };
        let stream = Arc::new(stream);
        let handle = Arc::new(Handle {
            notify: Notify::new(),
            closed: Mutex::new(None),
            paused: AtomicBool::new(false),
            output: AtomicBool::new(false),
            stream: stream.clone(),
            takeover: Mutex::new(None),
        });
        let id = {
            let mut core = lock(&s.core);
            match core
                .router
                .accept(Instant::now(), creds, only_pid.is_some())
            {
                Ok(id) => {
                    core.handles.insert(id, handle.clone());
                    let direct = core.dispatch(&s.timer);
                    drop(core);
                    write_direct(s, direct);
                    id
                }
                Err(reason) => {
                    let refused = core.router.counters().refusals(reason);
                    drop(core);
                    let why = if reason == Reason::Policy {
                        "uid/gid not allowed (see --allow-uid, --allow-gid)"
                    } else {
                        "connection limit reached"
                    };
                    // Sparingly: a client connecting in a loop cannot flood
                    // the log.
                    warn_sparingly!(
                        refused,
                        pid = creds.pid,
                        uid = creds.uid,
                        gid = creds.gid,
                        reason = reason.name(),
                        refused,
                        "refused a client: {why}"
                    );
                    return;
                }
            }
        };
        let mut reader = IntroReader::new(s.config.limits.syrup()).release_idle_buffer(true);
        if let Some(pid) = only_pid {
            reader = reader.only_from_pid(pid);
        }
        let session = Session {
            shared: s.clone(),
            stream,
            reader,
            handle,
            id,
            creds,
            peer: None,
        };
        tokio::spawn(session.run());
    }
}

/// Sleeps until the router's next deadline, then fires it.
async fn run_timers(shared: Arc<Shared>) {
    loop {
        let next = lock(&shared.core).armed;
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = shared.timer.notified() => {}
            _ = sleep => {
                let mut core = lock(&shared.core);
                core.router.handle_timeout(Instant::now());
                core.armed = None;
                let direct = core.dispatch(&shared.timer);
                drop(core);
                write_direct(&shared, direct);
            }
        }
    }
}

/// One client connection.
struct Session {
    shared: Arc<Shared>,
    stream: Arc<FdStream>,
    reader: IntroReader,
    handle: Arc<Handle>,
    id: ClientId,
    creds: Credentials,
    peer: Option<Designator>,
}

impl Session {
    async fn run(mut self) {
        let end = match self.register().await {
            Ok(()) => self.serve().await,
            Err(end) => end,
        };
        let now = Instant::now();
        {
            let mut core = lock(&self.shared.core);
            if let End::Refused(reason, _) = &end {
                core.router.count_refusal(*reason);
            }
            core.handles.remove(&self.id);
            core.router.closed(now, self.id);
            let direct = core.dispatch(&self.shared.timer);
            drop(core);
            write_direct(&self.shared, direct);
        }
        // How many clients were closed for this reason so far, this one
        // included, in the order their sessions ended.
        let refused = match &end {
            End::Closed(reason, _) | End::Refused(reason, _) => {
                self.shared.closes_logged[reason.index()].fetch_add(1, Ordering::Relaxed) + 1
            }
            End::DaemonLimit(_) => {
                self.shared
                    .daemon_limits_logged
                    .fetch_add(1, Ordering::Relaxed)
                    + 1
            }
            _ => 0,
        };
        self.log_end(end, refused);
    }

    /// Logs how the session ended. A client closed for a reason is a
    /// warning the 1st, 2nd, 4th... time for that reason and a debug line
    /// otherwise (with the count in each): clients misbehaving in a loop,
    /// or two processes with one identity replacing each other, cannot
    /// flood the log.
    fn log_end(&self, end: End, refused: u64) {
        let peer = self.peer.map(|d| d.to_string()).unwrap_or_default();
        let conn = self.id.get();
        match end {
            End::Closed(reason, why) | End::Refused(reason, why) => warn_sparingly!(
                refused,
                conn,
                pid = self.creds.pid,
                uid = self.creds.uid,
                peer,
                reason = reason.name(),
                refused,
                "closed a client: {why}"
            ),
            End::Eof => tracing::debug!(conn, peer, "client disconnected"),
            End::Gone(why) => tracing::debug!(conn, peer, "client went away: {why}"),
            End::DaemonLimit(why) => {
                warn_sparingly!(
                    refused,
                    conn,
                    peer,
                    times = refused,
                    "closed a client: {why}"
                )
            }
            End::Shutdown => tracing::debug!(conn, peer, "closed for shutdown"),
        }
    }

    /// A refusal the shell detects (counted when the session ends).
    fn refused(&self, reason: Reason, why: String) -> End {
        End::Refused(reason, why)
    }

    /// The router's verdict, if it closed us.
    fn closed_by_router(&self) -> Option<End> {
        lock(&self.handle.closed)
            .take()
            .map(|(r, why)| End::Closed(r, why))
    }

    /// Runs the registration handshake; the router's registration deadline
    /// bounds it.
    async fn register(&mut self) -> Result<(), End> {
        let s = self.shared.clone();
        let mut hs = ServerHandshake::new(s.identity.clone(), s.config.wire);
        let mut responded = false;
        loop {
            let event = tokio::select! {
                biased;
                _ = self.handle.notify.notified() => {
                    match self.closed_by_router() {
                        Some(End::Closed(Reason::RegistrationTimeout, why)) if responded => {
                            let (now, other) = match s.config.wire {
                                WireProfile::Goblins => ("goblins", "draft"),
                                _ => ("draft", "goblins"),
                            };
                            return Err(End::Closed(
                                Reason::RegistrationTimeout,
                                format!(
                                    "{why}: it got our uds:server-response in {now} shape and \
                                     never answered; a client that understands only the other \
                                     shape does that (try --wire {other})"
                                ),
                            ));
                        }
                        Some(end) => return Err(end),
                        None => continue,
                    }
                }
                _ = s.shutdown.cancelled() => return Err(End::Shutdown),
                e = self.reader.next(&self.stream) => e.map_err(read_end)?,
            };
            let value = match event {
                None => return Err(End::Eof),
                Some(ChannelEvent::Message { value, .. }) => value,
                Some(ChannelEvent::Introduction { .. }) => {
                    return Err(self.refused(
                        Reason::Protocol,
                        "uds:new-connection before registering".into(),
                    ));
                }
            };
            match hs.receive(&value) {
                Ok(ServerStep::Send(bytes)) => {
                    let mut w = UnitWriter::new(Outgoing::Message(Bytes::from(bytes)));
                    tokio::select! {
                        biased;
                        _ = self.handle.notify.notified() => {
                            if let Some(end) = self.closed_by_router() {
                                return Err(end);
                            }
                            // Not closed: finish the write.
                            w.write(&self.stream).await.map_err(send_end)?;
                        }
                        _ = s.shutdown.cancelled() => return Err(End::Shutdown),
                        r = w.write(&self.stream) => r.map_err(send_end)?,
                    }
                    responded = true;
                }
                Ok(ServerStep::Registered(reg)) => {
                    let mut core = lock(&s.core);
                    core.router
                        .registered(Instant::now(), self.id, reg.designator);
                    let direct = core.dispatch(&s.timer);
                    drop(core);
                    write_direct(&s, direct);
                    self.peer = Some(reg.designator);
                    return Ok(());
                }
                Err(e) => return Err(self.refused(Reason::Handshake, e.to_string())),
            }
        }
    }

    /// Serves a registered client: its intros go to the router, the
    /// router's intros for it go out, one unit at a time.
    async fn serve(&mut self) -> End {
        let s = self.shared.clone();
        let mut writing: Option<UnitWriter> = None;
        loop {
            if let Some(end) = self.closed_by_router() {
                return end;
            }
            if writing.is_none()
                && let Some(w) = lock(&self.handle.takeover).take()
            {
                writing = Some(w);
            }
            if writing.is_none() && self.handle.output.swap(false, Ordering::Relaxed) {
                let t = {
                    let mut core = lock(&s.core);
                    let t = core.router.poll_transmit(Instant::now(), self.id);
                    // Its send deadline must be armed even if the timer
                    // task has just found nothing left to wait for.
                    core.arm(&s.timer);
                    t
                };
                if let Some(t) = t {
                    writing = Some(UnitWriter::new(Outgoing::Intro {
                        record: t.record,
                        fd: t.fd,
                    }));
                }
            }
            let paused = self.handle.paused.load(Ordering::Relaxed);
            tokio::select! {
                biased;
                _ = self.handle.notify.notified() => {}
                _ = s.shutdown.cancelled() => return End::Shutdown,
                r = async {
                    match writing.as_mut() {
                        Some(w) => w.write(&self.stream).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(e) = r {
                        return send_end(e);
                    }
                    drop(writing.take()); // closes our copy of the fd
                    let mut core = lock(&s.core);
                    let now = Instant::now();
                    core.router.sent(now, self.id);
                    // Anything else queued for us goes next, taken under the
                    // same lock (`dispatch` arms its send deadline).
                    let next = core.router.poll_transmit(now, self.id);
                    let direct = core.dispatch(&s.timer);
                    drop(core);
                    write_direct(&s, direct);
                    writing = next.map(|t| {
                        UnitWriter::new(Outgoing::Intro {
                            record: t.record,
                            fd: t.fd,
                        })
                    });
                }
                e = self.reader.next(&self.stream), if !paused => {
                    match e {
                        Ok(Some(event)) => {
                            if let Err(end) = self.handle_event(event) {
                                return end;
                            }
                        }
                        Ok(None) => return End::Eof,
                        Err(e) => return read_end(e),
                    }
                }
            }
        }
    }

    fn handle_event(&mut self, event: ChannelEvent<OwnedFd>) -> Result<(), End> {
        match event {
            ChannelEvent::Message { value, .. } => Err(self.refused(
                Reason::Protocol,
                format!(
                    "unexpected message after registration: {}",
                    short(&value.to_string())
                ),
            )),
            ChannelEvent::Introduction {
                record,
                fd,
                extra_fds,
                ..
            } => {
                if let Err(e) = uds_fdpass::check_stream_socket(fd.as_fd()) {
                    return Err(
                        self.refused(Reason::BadFd, format!("the passed fd is not usable: {e}"))
                    );
                }
                let s = &self.shared;
                let mut core = lock(&s.core);
                core.router
                    .intro(Instant::now(), self.id, record, fd, extra_fds);
                let direct = core.dispatch(&s.timer);
                drop(core);
                write_direct(s, direct);
                Ok(())
            }
        }
    }
}

fn short(s: &str) -> String {
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_owned()
    }
}
