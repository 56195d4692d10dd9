//! The daemon's core: admission, registration, the registry of peers,
//! forwarding and parking of intros.
//!
//! Each client connection is one task. Protocol rules live in
//! `uds-handshake` (the registration state machine and the intro-channel
//! framer); this module only moves bytes and fds between them and the
//! sockets, and enforces the daemon's limits and policies.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uds_fdpass::{Credentials, FdStream};
use uds_handshake::channel::{ChannelError, ChannelEvent, IntroChannel};
use uds_handshake::{Identity, ServerHandshake, ServerStep};
use uds_syrup::{Designator, Locator, SCM_RIGHTS_BODY};

use crate::config::Config;
use crate::stats::{Reason, Stats};

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
/// server.serve(listener.listener()).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

struct Shared {
    identity: Arc<Identity>,
    config: Config,
    stats: Stats,
    registry: Mutex<Registry>,
    counts: Mutex<Counts>,
    shutdown: CancellationToken,
    started: Instant,
    next_id: AtomicU64,
    /// Passed sockets held now (see `HeldFd`).
    held: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    unregistered: usize,
    per_uid: HashMap<u32, usize>,
}

#[derive(Default)]
struct Registry {
    peers: HashMap<Designator, Arc<Client>>,
    parked: HashMap<Designator, VecDeque<Parked>>,
    next_parked: u64,
}

/// A passed socket the daemon holds (queued or parked), counted against
/// `max_held_fds` until it is sent or closed.
struct HeldFd {
    fd: OwnedFd,
    held: Arc<AtomicUsize>,
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An intro waiting for its target to register.
struct Parked {
    id: u64,
    raw: Bytes,
    fd: HeldFd,
    /// The sender's count of parked intros, decremented when this one leaves.
    sender_parked: Arc<AtomicUsize>,
}

impl Parked {
    /// Leaves the parking lot: the sender's count goes down and the record
    /// and fd are handed back (dropping the fd closes the dialer's socket).
    fn release(self) -> (Bytes, HeldFd) {
        self.sender_parked.fetch_sub(1, Ordering::Relaxed);
        (self.raw, self.fd)
    }
}

/// A registered client, as seen by other sessions.
struct Client {
    id: u64,
    locator: Locator,
    creds: Credentials,
    since: SystemTime,
    out: Mutex<Outbound>,
    wake: Notify,
    killed: Notify,
    kill_reason: Mutex<Option<Reason>>,
    /// Intros this client sent that are parked waiting for their target.
    parked: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Outbound {
    items: VecDeque<(Bytes, HeldFd)>,
    bytes: usize,
}

impl Client {
    fn kill(&self, reason: Reason) {
        let mut r = lock(&self.kill_reason);
        if r.is_none() {
            *r = Some(reason);
            self.killed.notify_one();
        }
    }

    /// Queues an intro toward this client. Past `max_pending_intros`
    /// intros or `max_queued_bytes` bytes the client is disconnected (it is
    /// not reading) and the intro dropped.
    fn enqueue(&self, raw: Bytes, fd: HeldFd, limits: &crate::Limits) -> bool {
        let mut out = lock(&self.out);
        let size = raw.len() + SCM_RIGHTS_BODY.len();
        if out.items.len() >= limits.max_pending_intros
            || out.bytes + size > limits.max_queued_bytes
        {
            drop(out);
            self.kill(Reason::QueueFull);
            return false;
        }
        out.bytes += size;
        out.items.push_back((raw, fd));
        drop(out);
        self.wake.notify_one();
        true
    }
}

/// Keeps the connection counts; released when the session ends.
struct Admission {
    shared: Arc<Shared>,
    uid: u32,
    registered: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = lock(&self.shared.counts);
        c.total -= 1;
        if !self.registered {
            c.unregistered -= 1;
        }
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
    }
}

impl Admission {
    fn registered(&mut self) {
        if !self.registered {
            self.registered = true;
            lock(&self.shared.counts).unregistered -= 1;
        }
    }
}

/// A snapshot of the daemon's state, as `uds-introd status` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The daemon's designator.
    pub id: Designator,
    /// Time since start.
    pub uptime: Duration,
    /// Open client connections.
    pub clients: usize,
    /// Connections that have not registered yet.
    pub unregistered: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Successful registrations since start.
    pub registrations: u64,
    /// Intros delivered.
    pub intros_forwarded: u64,
    /// Intros that waited for their target.
    pub intros_parked: u64,
    /// Intros waiting now.
    pub parked_now: usize,
    /// Refusals by reason (all reasons, zero or not).
    pub refusals: Vec<(&'static str, u64)>,
    /// The registered peers.
    pub peers: Vec<PeerStatus>,
}

/// One registered peer in a [`Status`].
#[derive(Debug, Clone)]
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
    Refused(Reason, String),
    Eof,
    /// The client went away mid-read or mid-write (not a refusal).
    Gone(String),
    Shutdown,
}

/// A failed read or write: the client hung up, unless the kernel truncated
/// the fds it sent (more than a receive can hold, or no free fd slot), which
/// is refused as bad input.
fn io_end(what: &str, e: std::io::Error) -> End {
    let truncated = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<uds_fdpass::RecvError>())
        .is_some_and(|inner| matches!(inner, uds_fdpass::RecvError::Truncated { .. }));
    if truncated {
        End::Refused(Reason::Protocol, format!("{what}: {e}"))
    } else {
        End::Gone(format!("{what}: {e}"))
    }
}

/// A failed send: see [`io_end`].
fn send_end(e: uds_fdpass::SendError) -> End {
    match e {
        uds_fdpass::SendError::Io(e) => io_end("write failed", e),
        other => End::Refused(Reason::Protocol, format!("write failed: {other}")),
    }
}

impl Server {
    /// A server with this identity and configuration.
    pub fn new(identity: Arc<Identity>, config: Config) -> Server {
        Server {
            shared: Arc::new(Shared {
                identity,
                config,
                stats: Stats::default(),
                registry: Mutex::new(Registry::default()),
                counts: Mutex::new(Counts::default()),
                shutdown: CancellationToken::new(),
                started: Instant::now(),
                next_id: AtomicU64::new(1),
                held: Arc::new(AtomicUsize::new(0)),
            }),
        }
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

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
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
        let (clients, unregistered) = {
            let c = lock(&s.counts);
            (c.total, c.unregistered)
        };
        let (mut peers, parked_now) = {
            let r = lock(&s.registry);
            let peers: Vec<PeerStatus> = r
                .peers
                .iter()
                .map(|(d, c)| PeerStatus {
                    designator: *d,
                    creds: c.creds,
                    since: c.since,
                })
                .collect();
            (peers, r.parked.values().map(VecDeque::len).sum())
        };
        peers.sort_by_key(|p| p.designator.to_string());
        Status {
            id: self.designator(),
            uptime: s.started.elapsed(),
            clients,
            unregistered,
            accepted: Stats::get(&s.stats.accepted),
            registrations: Stats::get(&s.stats.registrations),
            intros_forwarded: Stats::get(&s.stats.intros_forwarded),
            intros_parked: Stats::get(&s.stats.intros_parked),
            parked_now,
            refusals: Reason::ALL
                .iter()
                .map(|r| (r.name(), s.stats.refusals(*r)))
                .collect(),
            peers,
        }
    }

    /// Accepts clients on `listener` until shutdown.
    pub async fn serve(&self, listener: &UnixListener) {
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => self.admit(Ok(FdStream::from(stream)), None),
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
    /// process (checked with `SCM_CREDENTIALS`); otherwise the client is
    /// admitted by its `SO_PEERCRED` credentials like any other.
    pub fn serve_connection(&self, stream: FdStream, only_pid: Option<i32>) {
        self.admit(Ok(stream), only_pid);
    }

    fn admit(&self, stream: std::io::Result<FdStream>, only_pid: Option<i32>) {
        let s = &self.shared;
        Stats::bump(&s.stats.accepted);
        let stream = match stream {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!("cannot use accepted connection: {e}");
                s.stats.refuse(Reason::Credentials);
                return;
            }
        };
        let creds = match stream.peer_credentials() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("refused a client: cannot read its credentials: {e}");
                s.stats.refuse(Reason::Credentials);
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
        if only_pid.is_none() && !s.config.policy.admits(creds.uid, creds.gid) {
            tracing::warn!(
                pid = creds.pid,
                uid = creds.uid,
                gid = creds.gid,
                "refused a client: uid/gid not allowed (see --allow-uid, --allow-gid)"
            );
            s.stats.refuse(Reason::Policy);
            return;
        }
        if let Some(pid) = only_pid
            && let Err(e) = stream.set_pass_credentials(true)
        {
            tracing::warn!("refused child {pid}: cannot enable SO_PASSCRED: {e}");
            s.stats.refuse(Reason::Credentials);
            return;
        }
        let admission = {
            let mut c = lock(&s.counts);
            let l = &s.config.limits;
            let per_uid = c.per_uid.get(&creds.uid).copied().unwrap_or(0);
            let refused = if c.total >= l.max_clients {
                Some(Reason::MaxClients)
            } else if per_uid >= l.max_clients_per_uid {
                Some(Reason::MaxClientsPerUid)
            } else if c.unregistered >= l.max_unregistered {
                Some(Reason::MaxUnregistered)
            } else {
                None
            };
            if let Some(reason) = refused {
                drop(c);
                tracing::warn!(
                    pid = creds.pid,
                    uid = creds.uid,
                    reason = reason.name(),
                    "refused a client: connection limit reached"
                );
                s.stats.refuse(reason);
                return;
            }
            c.total += 1;
            c.unregistered += 1;
            *c.per_uid.entry(creds.uid).or_default() += 1;
            Admission {
                shared: s.clone(),
                uid: creds.uid,
                registered: false,
            }
        };
        let shared = s.clone();
        tokio::spawn(async move {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let mut session = Session {
                shared,
                stream,
                creds,
                only_pid,
                chan: None,
                id,
            };
            session.run(admission).await;
        });
    }
}

/// One client connection.
struct Session {
    shared: Arc<Shared>,
    stream: FdStream,
    creds: Credentials,
    only_pid: Option<i32>,
    /// Allocated on first input so that idle connections hold no buffer.
    chan: Option<IntroChannel<OwnedFd>>,
    id: u64,
}

/// Maps an intro-channel error to the refusal it causes.
fn channel_reason(e: &ChannelError) -> Reason {
    match e {
        ChannelError::Syrup(d) if d.is_limit() => Reason::Limit,
        ChannelError::MissingFd { .. } => Reason::MissingFd,
        ChannelError::UnexpectedFd { .. } => Reason::BadFd,
        _ => Reason::Protocol,
    }
}

impl Session {
    async fn run(&mut self, mut admission: Admission) {
        let limits = self.shared.config.limits;
        let shared = self.shared.clone();
        let registered = tokio::select! {
            _ = shared.shutdown.cancelled() => Err(End::Shutdown),
            r = tokio::time::timeout(limits.registration_timeout, self.register()) => match r {
                Ok(r) => r,
                Err(_) => Err(End::Refused(
                    Reason::RegistrationTimeout,
                    format!("did not register within {:?}", limits.registration_timeout),
                )),
            },
        };
        let client = match registered {
            Ok(c) => c,
            Err(end) => {
                self.log_end(None, end);
                return;
            }
        };
        admission.registered();
        let end = self.serve_registered(&client).await;
        // Leave the registry (unless a newer registration replaced us) and
        // close every fd still queued toward us.
        {
            let mut r = lock(&self.shared.registry);
            if let Ok(d) = client.locator.designator_key()
                && r.peers.get(&d).is_some_and(|c| c.id == client.id)
            {
                r.peers.remove(&d);
            }
        }
        lock(&client.out).items.clear();
        self.log_end(Some(&client.locator), end);
    }

    fn log_end(&self, who: Option<&Locator>, end: End) {
        let peer = who.map(|l| l.designator().to_owned()).unwrap_or_default();
        match end {
            End::Refused(reason, why) => {
                self.shared.stats.refuse(reason);
                tracing::warn!(
                    conn = self.id,
                    pid = self.creds.pid,
                    uid = self.creds.uid,
                    peer,
                    reason = reason.name(),
                    "closed a client: {why}"
                );
            }
            End::Eof => tracing::debug!(conn = self.id, peer, "client disconnected"),
            End::Gone(why) => tracing::debug!(conn = self.id, peer, "client went away: {why}"),
            End::Shutdown => tracing::debug!(conn = self.id, peer, "closed for shutdown"),
        }
    }

    /// Reads once: bytes and fds go into the channel. `Ok(false)` on EOF.
    async fn read_some(&mut self) -> Result<bool, End> {
        let limits = self.shared.config.limits.syrup();
        read_some(&self.stream, &mut self.chan, limits, self.only_pid).await
    }

    /// Releases the channel's buffer when nothing is pending in it.
    fn idle(&mut self) {
        if self.chan.as_ref().is_some_and(IntroChannel::is_idle) {
            self.chan = None;
        }
    }

    fn next_event(&mut self) -> Result<Option<ChannelEvent<OwnedFd>>, End> {
        let Some(chan) = self.chan.as_mut() else {
            return Ok(None);
        };
        chan.next_event()
            .map_err(|e| End::Refused(channel_reason(&e), e.to_string()))
    }

    async fn register(&mut self) -> Result<Arc<Client>, End> {
        let s = self.shared.clone();
        let mut hs = ServerHandshake::new(s.identity.clone(), s.config.wire);
        loop {
            while let Some(event) = self.next_event()? {
                let value = match event {
                    ChannelEvent::Message { value, .. } => value,
                    ChannelEvent::Introduction { .. } => {
                        return Err(End::Refused(
                            Reason::Protocol,
                            "uds:new-connection before registering".into(),
                        ));
                    }
                };
                match hs.receive(&value) {
                    Ok(ServerStep::Send(bytes)) => {
                        self.stream.send(&bytes, &[]).await.map_err(send_end)?
                    }
                    Ok(ServerStep::Registered(reg)) => {
                        return Ok(self.enter_registry(reg.locator));
                    }
                    Err(e) => return Err(End::Refused(Reason::Handshake, e.to_string())),
                }
            }
            if !self.read_some().await? {
                return Err(End::Eof);
            }
        }
    }

    /// Registers `locator`, replacing an older registration of the same
    /// designator, and hands over the intros that were waiting for it.
    fn enter_registry(&mut self, locator: Locator) -> Arc<Client> {
        let s = &self.shared;
        let client = Arc::new(Client {
            id: self.id,
            locator: locator.without_hints(),
            creds: self.creds,
            since: SystemTime::now(),
            out: Mutex::new(Outbound::default()),
            wake: Notify::new(),
            killed: Notify::new(),
            kill_reason: Mutex::new(None),
            parked: Arc::new(AtomicUsize::new(0)),
        });
        let designator = match locator.designator_key() {
            Ok(d) => d,
            // The handshake has checked the designator; keep the client
            // unregistered rather than panic if that ever changes.
            Err(_) => return client,
        };
        let (old, parked) = {
            let mut r = lock(&s.registry);
            let old = r.peers.insert(designator, client.clone());
            (old, r.parked.remove(&designator))
        };
        Stats::bump(&s.stats.registrations);
        tracing::info!(
            conn = self.id,
            pid = self.creds.pid,
            uid = self.creds.uid,
            peer = %designator,
            "registered"
        );
        if let Some(old) = old {
            old.kill(Reason::Replaced);
        }
        for p in parked.into_iter().flatten() {
            let (raw, fd) = p.release();
            client.enqueue(raw, fd, &s.config.limits);
        }
        client
    }

    async fn serve_registered(&mut self, client: &Arc<Client>) -> End {
        let shared = self.shared.clone();
        let limits = shared.config.limits.syrup();
        loop {
            if let Err(end) = self.handle_events(client) {
                return end;
            }
            self.idle();
            let has_output = !lock(&client.out).items.is_empty();
            let killed = |client: &Client| {
                let reason = lock(&client.kill_reason).unwrap_or(Reason::Protocol);
                End::Refused(
                    reason,
                    match reason {
                        Reason::Replaced => {
                            "a newer registration of the same designator replaced it".into()
                        }
                        Reason::QueueFull => format!(
                            "it does not read: more than {} bytes queued toward it",
                            shared.config.limits.max_queued_bytes
                        ),
                        _ => "killed".into(),
                    },
                )
            };
            if has_output {
                // A flush is never interrupted by reading (a half-sent intro
                // would corrupt the stream); only by the end of the session.
                tokio::select! {
                    biased;
                    _ = client.killed.notified() => return killed(client),
                    _ = shared.shutdown.cancelled() => return End::Shutdown,
                    r = flush(&self.stream, client, &shared.stats) => {
                        if let Err(end) = r {
                            return end;
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = client.killed.notified() => return killed(client),
                _ = shared.shutdown.cancelled() => return End::Shutdown,
                _ = client.wake.notified() => {}
                r = read_some(&self.stream, &mut self.chan, limits, self.only_pid) => match r {
                    Ok(true) => {}
                    Ok(false) => return End::Eof,
                    Err(end) => return end,
                },
            }
        }
    }

    fn handle_events(&mut self, client: &Arc<Client>) -> Result<(), End> {
        while let Some(event) = self.next_event()? {
            match event {
                ChannelEvent::Message { value, .. } => {
                    return Err(End::Refused(
                        Reason::Protocol,
                        format!(
                            "unexpected message after registration: {}",
                            short(&value.to_string())
                        ),
                    ));
                }
                ChannelEvent::Introduction {
                    record,
                    raw,
                    fd,
                    extra_fds,
                } => {
                    if extra_fds > 0 {
                        return Err(End::Refused(
                            Reason::ExtraFd,
                            format!(
                                "{} fds sent with one intro (exactly one socket is allowed)",
                                extra_fds + 1
                            ),
                        ));
                    }
                    if record.from != client.locator {
                        return Err(End::Refused(
                            Reason::SpoofedFrom,
                            format!(
                                "intro claims to be from {} but this client registered as {}",
                                record.from.designator(),
                                client.locator.designator()
                            ),
                        ));
                    }
                    if let Err(e) = uds_fdpass::check_stream_socket(fd.as_fd()) {
                        return Err(End::Refused(
                            Reason::BadFd,
                            format!("the passed fd is not usable: {e}"),
                        ));
                    }
                    let to = record.to.designator_key().map_err(|e| {
                        End::Refused(Reason::Protocol, format!("bad intro target: {e}"))
                    })?;
                    self.forward(client, to, raw, fd);
                }
            }
        }
        Ok(())
    }

    /// Delivers an intro to `to`, or parks it until `to` registers.
    fn forward(&self, sender: &Arc<Client>, to: Designator, raw: Bytes, fd: OwnedFd) {
        let s = &self.shared;
        let limits = &s.config.limits;
        if s.held.fetch_add(1, Ordering::Relaxed) >= limits.max_held_fds {
            s.held.fetch_sub(1, Ordering::Relaxed);
            s.stats.refuse(Reason::HeldFds);
            tracing::warn!(
                conn = self.id,
                "dropped an intro: the daemon already holds {} passed sockets (--max-held-fds)",
                limits.max_held_fds
            );
            return;
        }
        let fd = HeldFd {
            fd,
            held: s.held.clone(),
        };
        let mut r = lock(&s.registry);
        if let Some(target) = r.peers.get(&to).cloned() {
            drop(r);
            if !target.enqueue(raw, fd, limits) {
                tracing::warn!(peer = %to, "dropped an intro: the target does not read");
            }
            return;
        }
        let queue_len = r.parked.get(&to).map_or(0, VecDeque::len);
        if sender.parked.load(Ordering::Relaxed) >= limits.max_parked_per_sender
            || queue_len >= limits.max_parked_per_target
        {
            drop(r);
            s.stats.refuse(Reason::ParkedLimit);
            tracing::warn!(
                conn = self.id,
                target = %to,
                "dropped an intro to an unregistered peer: too many intros waiting"
            );
            return;
        }
        r.next_parked += 1;
        let id = r.next_parked;
        sender.parked.fetch_add(1, Ordering::Relaxed);
        r.parked.entry(to).or_default().push_back(Parked {
            id,
            raw,
            fd,
            sender_parked: sender.parked.clone(),
        });
        drop(r);
        Stats::bump(&s.stats.intros_parked);
        tracing::debug!(conn = self.id, target = %to, "intro parked until its target registers");
        let shared = s.clone();
        let timeout = limits.park_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = shared.shutdown.cancelled() => {}
                _ = tokio::time::sleep(timeout) => {}
            }
            let expired = {
                let mut r = lock(&shared.registry);
                let Some(q) = r.parked.get_mut(&to) else {
                    return;
                };
                let expired = q.iter().position(|p| p.id == id).and_then(|i| q.remove(i));
                if q.is_empty() {
                    r.parked.remove(&to);
                }
                expired
            };
            if let Some(p) = expired {
                drop(p.release());
                shared.stats.refuse(Reason::ParkTimeout);
                tracing::info!(target = %to, "closed an intro: its target did not register in time");
            }
        });
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

/// Reads once from `stream` into the channel (created on demand): bytes and
/// fds. `Ok(false)` on end of stream. With `only_pid`, every read must come
/// from that process.
async fn read_some(
    stream: &FdStream,
    chan: &mut Option<IntroChannel<OwnedFd>>,
    limits: uds_syrup::Limits,
    only_pid: Option<i32>,
) -> Result<bool, End> {
    loop {
        stream
            .readable()
            .await
            .map_err(|e| io_end("read failed", e))?;
        // The channel (and its buffer) exists only while input is being
        // processed, so idle connections hold no buffer.
        let chan = chan.get_or_insert_with(|| IntroChannel::new(limits));
        match stream.try_recv(chan.buffer_mut()) {
            Ok(received) => {
                if let Some(pid) = only_pid {
                    let from = received.credentials.map(|c| c.pid);
                    if !received.is_eof() && from != Some(pid) {
                        return Err(End::Refused(
                            Reason::WrongPid,
                            format!("the socket of spawned child {pid} was used by pid {from:?}"),
                        ));
                    }
                }
                if received.is_eof() {
                    return Ok(false);
                }
                chan.push_fds(received.fds);
                return Ok(true);
            }
            Err(e) if e.is_would_block() => continue,
            Err(e) => return Err(io_end("read failed", e.into())),
        }
    }
}

/// Sends every intro queued toward `client`: the record, then the 4 body
/// bytes with the fd in one separate `sendmsg`; then closes our copy of the
/// fd. Only the client's own task writes to its socket, so nothing can come
/// between the two sends.
async fn flush(stream: &FdStream, client: &Client, stats: &Stats) -> Result<(), End> {
    loop {
        let Some((raw, fd)) = lock(&client.out).items.pop_front() else {
            return Ok(());
        };
        stream.send(&raw, &[]).await.map_err(send_end)?;
        stream
            .send(&SCM_RIGHTS_BODY, &[fd.fd.as_fd()])
            .await
            .map_err(send_end)?;
        drop(fd);
        lock(&client.out).bytes -= raw.len() + SCM_RIGHTS_BODY.len();
        Stats::bump(&stats.intros_forwarded);
    }
}
