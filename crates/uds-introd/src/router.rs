//! The introduction router: admission, the registry of peers, replacement,
//! forwarding, parking, expiry, quotas and the `from` check, as a sans-I/O
//! state machine.
//!
//! The router never touches a socket or a clock. The daemon's async shell
//! reads sockets and feeds the router events with the current time
//! ([`Router::accept`], [`Router::registered`], [`Router::intro`],
//! [`Router::sent`], [`Router::closed`], [`Router::handle_timeout`]); it
//! performs what the router asks ([`Router::poll_action`]: close a client,
//! pause or resume reading from one, wake one that has intros to send),
//! sends what [`Router::poll_transmit`] hands it, and sleeps until
//! [`Router::poll_timeout`]. Every deadline (registration, parking, expiry
//! of queued intros, a client that does not read) is driven through it, so
//! tests run it with a fake clock and thousands of clients in milliseconds.
//!
//! The router is generic over the type of the passed sockets `F` (an
//! [`OwnedFd`](std::os::fd::OwnedFd) in the daemon): dropping an `F` must
//! close it. Every intro is either handed out by `poll_transmit` (and then
//! reported with `sent` or the end of its target) or dropped by the router
//! exactly once.
//!
//! # Who pays
//!
//! Every intro queued or parked toward a target is charged to the client
//! that sent it, per target and in total, in intros and in bytes
//! ([`Limits`]). A sender that reaches a budget with an intro that can be
//! delivered is *paused* (the shell stops reading from it) until enough of
//! its intros have been sent; an intro that would have to wait for an
//! unregistered target is refused if it does not fit the sender's budget.
//! Refusals of its own making are counted per sender, and a sender refused
//! more than `max_refused_per_sender` times within one park timeout is
//! disconnected. A target is disconnected only when it does not read one
//! unit within `send_timeout`, never because of how much others send it.
//! (Outside the router, the kernel can refuse to pass more sockets when
//! too many are in flight, `ETOOMANYREFS`; the shell then closes the
//! client it was writing to as a daemon limit, see docs/limits.md.)
//! An intro not handed to its target within `park_timeout` of its arrival
//! (parked, or queued behind a slow reader) is closed and its sender's
//! charge refunded.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uds_fdpass::Credentials;
use uds_syrup::{Designator, Locator, NewConnection, SCM_RIGHTS_BODY, TRANSPORT};

use crate::config::{Limits, Policy};
use crate::stats::{Counters, Reason};

/// A client connection, as the router names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(u64);

impl ClientId {
    /// The number (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An intro held by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntroId(u64);

/// What the router asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Close this client's connection (the router has already forgotten
    /// it: no further call about it is needed).
    Close {
        /// The client.
        client: ClientId,
        /// Why (already counted).
        reason: Reason,
        /// What happened, for the log.
        detail: String,
    },
    /// Stop reading from this client: it is at its budget.
    Pause(ClientId),
    /// Read from this client again.
    Resume(ClientId),
    /// This client has intros to send: call [`Router::poll_transmit`].
    Wake(ClientId),
}

/// An intro to send to a client: the record, then the 4 body bytes with
/// `fd` in one separate `sendmsg`.
#[derive(Debug)]
pub struct Transmit<F> {
    /// The intro (for [`Router::sent`]).
    pub id: IntroId,
    /// The canonical record to write.
    pub record: Bytes,
    /// The socket to pass.
    pub fd: F,
}

/// A registered peer in a [`RouterStatus`].
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// Its designator.
    pub designator: Designator,
    /// Its process credentials.
    pub creds: Credentials,
    /// How long it has been registered.
    pub registered_for: Duration,
}

/// A snapshot of the router's state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterStatus {
    /// Open client connections.
    pub clients: usize,
    /// Connections that have not registered yet.
    pub unregistered: usize,
    /// Registered peers.
    pub registered: usize,
    /// Intros waiting for their target to register.
    pub parked: usize,
    /// Intros queued toward registered targets (not yet being sent).
    pub queued: usize,
    /// Passed sockets held (queued, parked or being sent).
    pub held_fds: usize,
    /// Bytes of intro records held.
    pub held_bytes: usize,
    /// Senders paused now because they are at their budget.
    pub paused: usize,
    /// Counters since start.
    pub counters: Counters,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Charge {
    intros: usize,
    bytes: usize,
}

impl Charge {
    fn add(&mut self, bytes: usize) {
        self.intros += 1;
        self.bytes += bytes;
    }

    fn sub(&mut self, bytes: usize) {
        self.intros = self.intros.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    fn is_zero(&self) -> bool {
        self.intros == 0 && self.bytes == 0
    }

    /// Whether one more intro of `bytes` would go past `max`.
    fn would_exceed(&self, bytes: usize, max_intros: usize, max_bytes: usize) -> bool {
        self.intros + 1 > max_intros || self.bytes + bytes > max_bytes
    }

    /// Whether the charge has reached `max` (no room for another intro).
    fn at_limit(&self, max_intros: usize, max_bytes: usize) -> bool {
        self.intros >= max_intros || self.bytes >= max_bytes
    }
}

/// Deadlines; at the same instant they fire in this order (a target that
/// does not read is closed before the intros queued behind it expire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Registration(ClientId),
    Send(ClientId),
    /// An intro not handed out by its deadline (parked or queued).
    Expire(IntroId),
}

#[derive(Debug)]
struct InFlight {
    intro: IntroId,
    deadline: Instant,
}

#[derive(Debug)]
struct Client {
    creds: Credentials,
    /// `None` until registered.
    designator: Option<Designator>,
    registered_at: Option<Instant>,
    registration_deadline: Option<Instant>,
    /// Intros toward this client, oldest first.
    queue: VecDeque<IntroId>,
    in_flight: Option<InFlight>,
    /// What this client's intros cost, in total and per target.
    charge: Charge,
    per_target: HashMap<Designator, Charge>,
    /// The intros this client sent that are still held.
    sent: Vec<IntroId>,
    paused: bool,
    /// Start of the current refusal window and the refusals in it.
    refused_since: Option<Instant>,
    refused: usize,
    warned_extra_fds: bool,
}

impl Client {
    fn over_budget(&self, l: &Limits) -> bool {
        self.charge
            .at_limit(l.max_intros_per_sender, l.max_intro_bytes_per_sender)
            || self
                .per_target
                .values()
                .any(|c| c.at_limit(l.max_intros_per_target, l.max_intro_bytes_per_target))
    }
}

#[derive(Debug)]
enum State {
    Parked,
    Queued,
    InFlight,
}

#[derive(Debug)]
struct Intro<F> {
    /// `None` once the sender's connection ended (nobody is charged).
    sender: Option<ClientId>,
    target: Designator,
    record: Bytes,
    /// `None` while the shell holds it (in flight).
    fd: Option<F>,
    /// Bytes charged: the record and the body.
    size: usize,
    state: State,
    /// When it is closed if it was not handed out (`park_timeout` after it
    /// arrived), whether it still waits for its target to register or
    /// waits in the target's queue.
    expires: Instant,
}

/// The introduction router; see the [module docs](self).
pub struct Router<F> {
    limits: Limits,
    policy: Policy,
    clients: HashMap<ClientId, Client>,
    registry: HashMap<Designator, ClientId>,
    parked: HashMap<Designator, VecDeque<IntroId>>,
    intros: HashMap<IntroId, Intro<F>>,
    timers: BTreeSet<(Instant, Timer)>,
    actions: VecDeque<Action>,
    counters: Counters,
    unregistered: usize,
    per_uid: HashMap<u32, usize>,
    unregistered_per_uid: HashMap<u32, usize>,
    held_fds: usize,
    held_bytes: usize,
    paused: usize,
    next_client: u64,
    next_intro: u64,
}

impl<F> fmt::Debug for Router<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("clients", &self.clients.len())
            .field("registered", &self.registry.len())
            .field("intros", &self.intros.len())
            .field("timers", &self.timers.len())
            .finish()
    }
}

impl<F> Router<F> {
    /// A router enforcing `limits` and admitting clients by `policy`.
    pub fn new(limits: Limits, policy: Policy) -> Router<F> {
        Router {
            limits,
            policy,
            clients: HashMap::new(),
            registry: HashMap::new(),
            parked: HashMap::new(),
            intros: HashMap::new(),
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
            counters: Counters::default(),
            unregistered: 0,
            unregistered_per_uid: HashMap::new(),
            per_uid: HashMap::new(),
            held_fds: 0,
            held_bytes: 0,
            paused: 0,
            next_client: 1,
            next_intro: 1,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The counters since start (cheaper than [`Router::status`]).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a refusal the shell decided (a handshake failure, bytes that
    /// are not the protocol, a passed fd that is not a socket...). The
    /// shell closes that client and reports it with [`Router::closed`].
    pub fn count_refusal(&mut self, reason: Reason) {
        self.counters.refuse(reason);
    }

    /// Counts a connection refused before it could be admitted (its
    /// credentials could not be read).
    pub fn count_rejected(&mut self, reason: Reason) {
        self.counters.accepted += 1;
        self.counters.refuse(reason);
    }

    /// A new connection from a process with `creds`. `spawned` marks a
    /// child's private socket (`uds-introd spawn`), which the policy does not
    /// judge. On success the client has `registration_timeout` to register.
    pub fn accept(
        &mut self,
        now: Instant,
        creds: Credentials,
        spawned: bool,
    ) -> Result<ClientId, Reason> {
        self.counters.accepted += 1;
        let l = &self.limits;
        let per_uid = self.per_uid.get(&creds.uid).copied().unwrap_or(0);
        let refused = if !spawned && !self.policy.admits(creds.uid, creds.gid) {
            Some(Reason::Policy)
        } else if self.clients.len() >= l.max_clients {
            Some(Reason::MaxClients)
        } else if per_uid >= l.max_clients_per_uid {
            Some(Reason::MaxClientsPerUid)
        } else if self.unregistered >= l.max_unregistered {
            Some(Reason::MaxUnregistered)
        } else if self
            .unregistered_per_uid
            .get(&creds.uid)
            .is_some_and(|n| *n >= l.max_unregistered_per_uid)
        {
            Some(Reason::MaxUnregisteredPerUid)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.counters.refuse(reason);
            return Err(reason);
        }
        let id = ClientId(self.next_client);
        self.next_client += 1;
        let deadline = now + l.registration_timeout;
        self.clients.insert(
            id,
            Client {
                creds,
                designator: None,
                registered_at: None,
                registration_deadline: Some(deadline),
                queue: VecDeque::new(),
                in_flight: None,
                charge: Charge::default(),
                per_target: HashMap::new(),
                sent: Vec::new(),
                paused: false,
                refused_since: None,
                refused: 0,
                warned_extra_fds: false,
            },
        );
        self.timers.insert((deadline, Timer::Registration(id)));
        self.unregistered += 1;
        *self.unregistered_per_uid.entry(creds.uid).or_default() += 1;
        *self.per_uid.entry(creds.uid).or_default() += 1;
        Ok(id)
    }

    /// `client` proved it holds `designator`'s key. An older registration
    /// of the same designator is closed (`replaced`) and the intros queued
    /// for it, and those parked for the designator, are queued for this
    /// client. Ignored for unknown or already registered clients.
    pub fn registered(&mut self, now: Instant, client: ClientId, designator: Designator) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if c.designator.is_some() {
            return;
        }
        if let Some(deadline) = c.registration_deadline.take() {
            self.timers.remove(&(deadline, Timer::Registration(client)));
        }
        c.designator = Some(designator);
        c.registered_at = Some(now);
        self.unregistered -= 1;
        let uid = c.creds.uid;
        decrement(&mut self.unregistered_per_uid, uid);
        self.counters.registrations += 1;
        let pid = c.creds.pid;
        tracing::info!(conn = %client, pid, uid, peer = %designator, "registered");
        let mut moved: VecDeque<IntroId> = VecDeque::new();
        if let Some(old) = self.registry.insert(designator, client)
            && old != client
        {
            if let Some(o) = self.clients.get_mut(&old) {
                moved = std::mem::take(&mut o.queue);
            }
            self.close(
                now,
                old,
                Reason::Replaced,
                format!("a newer registration of {designator} (connection {client}) replaced it"),
            );
        }
        if let Some(parked) = self.parked.remove(&designator) {
            // Their expiry stays: an intro waits at most `park_timeout` in
            // all.
            moved.extend(parked);
        }
        if moved.is_empty() {
            return;
        }
        for id in &moved {
            if let Some(intro) = self.intros.get_mut(id) {
                intro.state = State::Queued;
            }
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.queue.extend(moved);
            self.actions.push_back(Action::Wake(client));
        }
    }

    /// `client` sent an intro (`record` and its first fd; `extra_fds`
    /// further fds came with it and were closed). The shell has checked that
    /// `fd` is a connected Unix stream socket. The intro is queued toward
    /// its target, parked until the target registers, or refused (its fd
    /// dropped); a sender that lies about `from` or is not registered is
    /// closed.
    pub fn intro(
        &mut self,
        now: Instant,
        client: ClientId,
        record: NewConnection,
        fd: F,
        extra_fds: usize,
    ) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if extra_fds > 0 {
            self.counters.extra_fds_closed += extra_fds as u64;
            if !std::mem::replace(&mut c.warned_extra_fds, true) {
                tracing::debug!(
                    conn = %client,
                    extra_fds,
                    "closed extra fds sent with an intro (forwarding the first); not logged again \
                     for this client"
                );
            }
        }
        let Some(me) = c.designator else {
            drop(fd);
            self.close(
                now,
                client,
                Reason::Protocol,
                "uds:new-connection before registering".into(),
            );
            return;
        };
        let from_ok =
            record.from.transport() == TRANSPORT && record.from.designator_key().ok() == Some(me);
        if !from_ok {
            drop(fd);
            let detail = format!(
                "intro claims to be from {} but this client registered as {me}",
                record.from.designator()
            );
            self.close(now, client, Reason::SpoofedFrom, detail);
            return;
        }
        let to = match record.to.designator_key() {
            Ok(to) => to,
            Err(e) => {
                drop(fd);
                self.close(
                    now,
                    client,
                    Reason::Protocol,
                    format!("bad intro target: {e}"),
                );
                return;
            }
        };
        self.counters.intros_received += 1;
        let forwarded = NewConnection {
            from: bounded(&record.from, self.limits.max_forwarded_hints),
            to: bounded(&record.to, self.limits.max_forwarded_hints),
        };
        let record = Bytes::from(forwarded.to_value().encode());
        let size = record.len() + SCM_RIGHTS_BODY.len();
        let l = self.limits;
        if self.held_fds + 1 > l.max_held_fds {
            let detail = format!(
                "the daemon already holds {} passed sockets (--max-held-fds)",
                self.held_fds
            );
            self.refuse(now, client, to, fd, Reason::HeldFds, detail, false);
            return;
        }
        if self.held_bytes + size > l.max_held_bytes {
            let detail = format!(
                "the daemon already holds {} bytes of intros (--max-held-bytes)",
                self.held_bytes
            );
            self.refuse(now, client, to, fd, Reason::HeldBytes, detail, false);
            return;
        }
        let target = self.registry.get(&to).copied();
        if target.is_none() {
            let waiting = self.parked.get(&to).map_or(0, VecDeque::len);
            if waiting >= l.max_parked_per_target {
                let detail = format!(
                    "{waiting} intros already wait for {to} to register (--max-parked-per-target)"
                );
                // Counted against the sender only if it holds some of the
                // slots itself: others filling them is not its doing.
                let own = self.clients[&client]
                    .per_target
                    .get(&to)
                    .is_some_and(|t| t.intros > 0);
                self.refuse(now, client, to, fd, Reason::ParkedLimit, detail, own);
                return;
            }
            let c = &self.clients[&client];
            let toward = c.per_target.get(&to).copied().unwrap_or_default();
            if c.charge
                .would_exceed(size, l.max_intros_per_sender, l.max_intro_bytes_per_sender)
                || toward.would_exceed(size, l.max_intros_per_target, l.max_intro_bytes_per_target)
            {
                let detail = format!(
                    "its target {to} is not registered and the sender already has {} intros \
                     ({} bytes) waiting, {} of them for {to} (--max-intros-per-sender, \
                     --max-intros-per-target)",
                    c.charge.intros, c.charge.bytes, toward.intros
                );
                self.refuse(now, client, to, fd, Reason::SenderQuota, detail, true);
                return;
            }
        }
        let id = IntroId(self.next_intro);
        self.next_intro += 1;
        let state = match target {
            Some(_) => State::Queued,
            None => State::Parked,
        };
        let expires = now + l.park_timeout;
        self.timers.insert((expires, Timer::Expire(id)));
        self.intros.insert(
            id,
            Intro {
                sender: Some(client),
                target: to,
                record,
                fd: Some(fd),
                size,
                state,
                expires,
            },
        );
        self.held_fds += 1;
        self.held_bytes += size;
        let over = {
            let c = self
                .clients
                .get_mut(&client)
                .expect("the sender exists: checked above");
            c.charge.add(size);
            c.per_target.entry(to).or_default().add(size);
            c.sent.push(id);
            !c.paused && c.over_budget(&l)
        };
        match target {
            Some(t) => {
                let tc = self.clients.get_mut(&t).expect("registered clients exist");
                tc.queue.push_back(id);
                if tc.queue.len() == 1 && tc.in_flight.is_none() {
                    self.actions.push_back(Action::Wake(t));
                }
                if over {
                    // Only deliverable intros pause a sender: those drain as
                    // fast as their targets read.
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.paused = true;
                    }
                    self.paused += 1;
                    self.counters.senders_paused += 1;
                    self.actions.push_back(Action::Pause(client));
                    tracing::debug!(conn = %client, "sender at its budget: reading from it paused until its intros drain");
                }
            }
            None => {
                self.parked.entry(to).or_default().push_back(id);
                self.counters.intros_parked += 1;
                tracing::debug!(conn = %client, target = %to, "intro parked until its target registers");
            }
        }
    }

    /// The next intro to send to `client`, if it has one and is not already
    /// sending one. The client then has `send_timeout` to take it; report
    /// completion with [`Router::sent`] and call this again.
    pub fn poll_transmit(&mut self, now: Instant, client: ClientId) -> Option<Transmit<F>> {
        let c = self.clients.get_mut(&client)?;
        if c.in_flight.is_some() {
            return None;
        }
        loop {
            let id = c.queue.pop_front()?;
            let Some(intro) = self.intros.get_mut(&id) else {
                continue;
            };
            let Some(fd) = intro.fd.take() else {
                continue;
            };
            intro.state = State::InFlight;
            // From now on the target's send deadline applies.
            self.timers.remove(&(intro.expires, Timer::Expire(id)));
            let deadline = now + self.limits.send_timeout;
            c.in_flight = Some(InFlight {
                intro: id,
                deadline,
            });
            self.timers.insert((deadline, Timer::Send(client)));
            return Some(Transmit {
                id,
                record: intro.record.clone(),
                fd,
            });
        }
    }

    /// Whether intros wait to be sent to `client` (besides one in flight).
    pub fn has_queued(&self, client: ClientId) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|c| !c.queue.is_empty())
    }

    /// The intro being sent to `client` is on the wire.
    pub fn sent(&mut self, _now: Instant, client: ClientId) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(f) = c.in_flight.take() else {
            return;
        };
        self.timers.remove(&(f.deadline, Timer::Send(client)));
        self.counters.intros_forwarded += 1;
        self.release(f.intro);
    }

    /// `client`'s connection ended (end of stream, error, shutdown). What
    /// was queued toward it is dropped; what it sent is still delivered
    /// where it is queued (until it expires, `park_timeout` after its
    /// arrival), and dropped where it waits for a target.
    pub fn closed(&mut self, _now: Instant, client: ClientId) {
        self.forget(client);
    }

    /// Fires every deadline up to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Registration(client) => {
                    let timeout = self.limits.registration_timeout;
                    self.close(
                        now,
                        client,
                        Reason::RegistrationTimeout,
                        format!("did not register within {timeout:?}"),
                    );
                }
                Timer::Send(client) => {
                    let timeout = self.limits.send_timeout;
                    self.close(
                        now,
                        client,
                        Reason::NotReading,
                        format!("it did not read an intro sent to it for {timeout:?}"),
                    );
                }
                Timer::Expire(id) => {
                    let Some(intro) = self.intros.get(&id) else {
                        continue;
                    };
                    let target = intro.target;
                    match intro.state {
                        State::Parked => {
                            self.unpark(id, target);
                            self.counters.refuse(Reason::ParkTimeout);
                            tracing::info!(
                                target = %target,
                                "closed an intro: its target did not register within {:?}",
                                self.limits.park_timeout
                            );
                        }
                        State::Queued => {
                            if let Some(c) = self
                                .registry
                                .get(&target)
                                .and_then(|t| self.clients.get_mut(t))
                            {
                                // Expiring intros are near the front.
                                if let Some(i) = c.queue.iter().position(|i| *i == id) {
                                    c.queue.remove(i);
                                }
                            }
                            self.counters.refuse(Reason::QueueTimeout);
                            tracing::info!(
                                target = %target,
                                "closed an intro: its target did not take it within {:?}",
                                self.limits.park_timeout
                            );
                        }
                        State::InFlight => continue,
                    }
                    self.release(id);
                }
            }
        }
    }

    /// When [`Router::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A snapshot of the state.
    pub fn status(&self) -> RouterStatus {
        RouterStatus {
            clients: self.clients.len(),
            unregistered: self.unregistered,
            registered: self.registry.len(),
            parked: self.parked.values().map(VecDeque::len).sum(),
            queued: self.clients.values().map(|c| c.queue.len()).sum(),
            held_fds: self.held_fds,
            held_bytes: self.held_bytes,
            paused: self.paused,
            counters: self.counters,
        }
    }

    /// The registered peers, in no particular order (the caller sorts, if
    /// it wants to, after releasing whatever lock guards the router).
    pub fn peers(&self, now: Instant) -> Vec<PeerStatus> {
        self.registry
            .iter()
            .filter_map(|(d, id)| {
                let c = self.clients.get(id)?;
                Some(PeerStatus {
                    designator: *d,
                    creds: c.creds,
                    registered_for: c
                        .registered_at
                        .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                })
            })
            .collect()
    }

    /// Counts a refusal, tells the shell to close `client`, and forgets it.
    fn close(&mut self, _now: Instant, client: ClientId, reason: Reason, detail: String) {
        if !self.clients.contains_key(&client) {
            return;
        }
        self.counters.refuse(reason);
        self.actions.push_back(Action::Close {
            client,
            reason,
            detail,
        });
        self.forget(client);
    }

    /// Refuses one intro of `client` (its fd is closed). A client refused
    /// too often within one park timeout for reasons of its own making
    /// (`own`: its budget, park slots it fills itself) is disconnected;
    /// limits shared by everyone (`--max-held-fds`, `--max-held-bytes`,
    /// park slots filled by others) never count against it.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        now: Instant,
        client: ClientId,
        target: Designator,
        fd: F,
        reason: Reason,
        detail: String,
        own: bool,
    ) {
        drop(fd);
        self.counters.refuse(reason);
        let window = self.limits.park_timeout;
        let max = self.limits.max_refused_per_sender;
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        // Logged sparingly: counted per reason daemon-wide when the refusal
        // is not the sender's doing, per sender and window when it is.
        let refused = if own {
            match c.refused_since {
                Some(since) if now.saturating_duration_since(since) < window => c.refused += 1,
                _ => {
                    c.refused_since = Some(now);
                    c.refused = 1;
                }
            }
            c.refused as u64
        } else {
            self.counters.refusals(reason)
        };
        warn_sparingly!(
            refused,
            conn = %client,
            target = %target,
            reason = reason.name(),
            refused,
            "refused an intro: {detail}"
        );
        if !own {
            return;
        }
        if c.refused > max {
            let n = c.refused;
            self.close(
                now,
                client,
                Reason::Flooding,
                format!(
                    "{n} of its intros were refused within {window:?} (--max-refused-per-sender)"
                ),
            );
        }
    }

    /// Drops an intro: releases what it held and what its sender was
    /// charged, resuming the sender if that brings it under its budget.
    fn release(&mut self, id: IntroId) {
        let Some(intro) = self.intros.remove(&id) else {
            return;
        };
        self.timers.remove(&(intro.expires, Timer::Expire(id)));
        self.held_fds -= 1;
        self.held_bytes -= intro.size;
        let Some(sender) = intro.sender else {
            return;
        };
        let Some(c) = self.clients.get_mut(&sender) else {
            return;
        };
        c.charge.sub(intro.size);
        if let Some(t) = c.per_target.get_mut(&intro.target) {
            t.sub(intro.size);
            if t.is_zero() {
                c.per_target.remove(&intro.target);
            }
        }
        if let Some(i) = c.sent.iter().position(|s| *s == id) {
            c.sent.swap_remove(i);
        }
        if c.paused && !c.over_budget(&self.limits) {
            c.paused = false;
            self.paused -= 1;
            self.actions.push_back(Action::Resume(sender));
        }
        // Dropping `intro` closes its fd, if the router still holds it.
    }

    /// Takes a parked intro out of the list of those waiting for `target`.
    fn unpark(&mut self, id: IntroId, target: Designator) {
        if let Some(q) = self.parked.get_mut(&target) {
            q.retain(|i| *i != id);
            if q.is_empty() {
                self.parked.remove(&target);
            }
        }
    }

    /// Removes every trace of a client.
    fn forget(&mut self, client: ClientId) {
        let Some(c) = self.clients.remove(&client) else {
            return;
        };
        decrement(&mut self.per_uid, c.creds.uid);
        if c.paused {
            self.paused -= 1;
        }
        if let Some(deadline) = c.registration_deadline {
            self.timers.remove(&(deadline, Timer::Registration(client)));
        }
        match c.designator {
            None => {
                self.unregistered -= 1;
                decrement(&mut self.unregistered_per_uid, c.creds.uid);
            }
            Some(d) => {
                if self.registry.get(&d) == Some(&client) {
                    self.registry.remove(&d);
                }
            }
        }
        if let Some(f) = c.in_flight {
            self.timers.remove(&(f.deadline, Timer::Send(client)));
            self.counters.intros_dropped += 1;
            self.release(f.intro);
        }
        for id in c.queue {
            if self.intros.contains_key(&id) {
                self.counters.intros_dropped += 1;
                self.release(id);
            }
        }
        for id in c.sent {
            let Some(intro) = self.intros.get_mut(&id) else {
                continue;
            };
            match intro.state {
                State::Parked => {
                    // Nobody is left to pay for it.
                    let target = intro.target;
                    self.unpark(id, target);
                    self.counters.intros_dropped += 1;
                    self.release(id);
                }
                // Deliverable: it goes on, charged to nobody, until its
                // target takes it or it expires.
                State::Queued | State::InFlight => intro.sender = None,
            }
        }
    }
}

/// Counts one less for `uid`, forgetting it at zero.
fn decrement(counts: &mut HashMap<u32, usize>, uid: u32) {
    if let Some(n) = counts.get_mut(&uid) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&uid);
        }
    }
}

/// `loc` with at most `max` hints, keeping only hints that are server
/// designators (what forwarded records may carry).
fn bounded(loc: &Locator, max: usize) -> Locator {
    let hints: Vec<Designator> = loc.hint_servers().take(max).collect();
    loc.without_hints().with_hints(hints)
}

#[cfg(test)]
mod tests;
