//! Links to introduction servers: connect, register, read intros, and
//! reconnect when a server goes away.
//!
//! Each link is one task that owns the connection's reading; writes go
//! through the connection's [`IntroWriter`] task, so `connect()` futures
//! can be dropped at any point without leaving half an intro on the wire.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uds_fdpass::{Credentials, FdStream};
use uds_handshake::channel::ChannelEvent;
use uds_handshake::io::{IntroReader, IntroWriter, Outgoing, UnitWriter};
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::{Designator, NewConnection};

use crate::builder::{IntroServer, Security, ServerAddr, Settings};
use crate::connection::{Connection, ConnectionInfo, Direction, Inner, into_tokio};
use crate::error::LinkError;
use crate::netlayer::Stats;

/// Units that may wait for a link's writer.
const WRITER_QUEUE: usize = 64;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One introduction server, as the netlayer sees it.
pub(crate) struct Link {
    pub(crate) describe: String,
    addr: ServerAddr,
    pin: Option<Designator>,
    /// A connection to the server opened before the process confined itself
    /// ([`Builder::confine`](crate::Builder::confine)), used by the first
    /// attempt.
    preconnected: Mutex<Option<OwnedFd>>,
    pub(crate) state: Mutex<Option<Registered>>,
    /// Failed attempts since the last registration (the first is logged as
    /// a warning, the others quietly, and the recovery again as a warning).
    failures: std::sync::atomic::AtomicU32,
}

/// A link that is registered: the server's name and the way to write to it.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) server: Designator,
    pub(crate) writer: IntroWriter,
    /// When the server accepted the registration.
    pub(crate) since: std::time::Instant,
}

pub(crate) struct LinkCtx {
    #[cfg(feature = "e2ee")]
    pub(crate) local: Arc<uds_e2ee::LocalStatic>,
    /// Permits for incoming handshakes (`max_handshakes`).
    pub(crate) handshakes: Arc<tokio::sync::Semaphore>,
    pub(crate) identity: Arc<Identity>,
    pub(crate) settings: Settings,
    pub(crate) incoming: mpsc::Sender<Connection>,
    pub(crate) changed: Arc<watch::Sender<u64>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) stats: Arc<Stats>,
}

impl Link {
    pub(crate) fn new(server: IntroServer) -> Arc<Link> {
        Arc::new(Link {
            describe: server.describe(),
            addr: server.addr,
            pin: server.pin,
            preconnected: Mutex::new(server.preconnected),
            state: Mutex::new(None),
            failures: std::sync::atomic::AtomicU32::new(0),
        })
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps one server link alive: connect, register, serve, reconnect.
pub(crate) async fn run_link(link: Arc<Link>, ctx: LinkCtx) {
    let mut delay = ctx.settings.backoff_min;
    // Registrations in a row that the server ended soon after accepting.
    let mut cut_short_run = 0u32;
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let outcome = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = session(&link, &ctx) => r,
        };
        // The change and its notification in one step (see below).
        let mut registered_for = None;
        ctx.changed.send_if_modified(|generation| {
            registered_for = lock(&link.state).take().map(|r| r.since.elapsed());
            if registered_for.is_some() {
                *generation += 1;
            }
            registered_for.is_some()
        });
        // Registrations the server ends soon after accepting them, without
        // an error, again and again (the reconnect in between succeeding):
        // most likely another process registered with the same identity,
        // and the two replace each other at the server. Going on backing
        // off (instead of re-registering at once) keeps the two from taking
        // turns ten times a second. One such end alone is not counted: a
        // server restarting soon after we registered looks the same.
        let ended_soon = matches!(outcome, Ok(()))
            && registered_for.is_some_and(|t| t < ctx.settings.backoff_max.saturating_mul(2));
        cut_short_run = if ended_soon {
            cut_short_run.saturating_add(1)
        } else {
            0
        };
        let cut_short = cut_short_run >= 2;
        if cut_short {
            let n = ctx.stats.registration_cut_short();
            let lasted = registered_for.unwrap_or_default();
            warn_sparingly!(
                n,
                server = %link.describe,
                times = n,
                "the introduction server ended our registration {lasted:.1?} after accepting \
                 it, again. Most often another process is registered with the same identity \
                 (key): the server keeps only the newer of two registrations of one \
                 identity, so the two replace each other. Otherwise the server's log says \
                 why it disconnected us. Reconnecting with backoff"
            );
        } else if registered_for.is_some() {
            // A session that registered starts the backoff over, however
            // it ended: the server was fine until now.
            delay = ctx.settings.backoff_min;
        }
        match outcome {
            Ok(()) if cut_short => {}
            Ok(()) => {
                tracing::info!(server = %link.describe, "the introduction server went away; reconnecting");
            }
            Err(e) => {
                ctx.stats.link_failed();
                let failures = link
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if failures == 0 {
                    tracing::warn!(
                        server = %link.describe,
                        "introduction server: {e}; retrying in the background (quietly: \
                         RUST_LOG=uds_netlayer=debug shows each attempt)"
                    );
                } else {
                    tracing::debug!(server = %link.describe, attempt = failures + 1, "introduction server: {e}");
                }
            }
        }
        if matches!(link.addr, ServerAddr::Fd(_)) {
            tracing::warn!(server = %link.describe, "the inherited intro socket is gone and cannot be reopened");
            return;
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(ctx.settings.backoff_max);
    }
}

/// Connects to the server without blocking the runtime.
async fn open_link(link: &Link) -> Result<FdStream, LinkError> {
    let connect_err = |source| LinkError::Connect {
        address: link.describe.clone(),
        source,
    };
    if let Some(fd) = lock(&link.preconnected).take() {
        return FdStream::try_from_fd(fd).map_err(|e| connect_err(std::io::Error::other(e)));
    }
    match &link.addr {
        ServerAddr::Path(p) => tokio::net::UnixStream::connect(p)
            .await
            .map(FdStream::from)
            .map_err(connect_err),
        ServerAddr::Abstract(name) => {
            let fd = connect_abstract(name).map_err(connect_err)?;
            FdStream::try_from_fd(fd).map_err(|e| connect_err(std::io::Error::other(e)))
        }
        ServerAddr::Fd(slot) => {
            let fd = lock(slot).take().ok_or(LinkError::InheritedUsed)?;
            FdStream::try_from_fd(fd).map_err(|e| LinkError::InheritedUnusable(e.to_string()))
        }
    }
}

/// A non-blocking `connect` to an abstract socket.
fn connect_abstract(name: &str) -> std::io::Result<OwnedFd> {
    connect_now(&nix::sys::socket::UnixAddr::new_abstract(name.as_bytes())?)
}

/// A non-blocking `connect` to a Unix stream socket, which needs no async
/// runtime. Unix sockets connect at once or fail; a full backlog (`EAGAIN`)
/// is an error the link retries.
pub(crate) fn connect_now(addr: &nix::sys::socket::UnixAddr) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), addr) {
        Ok(()) => Ok(fd),
        Err(nix::errno::Errno::EAGAIN) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the server's listen backlog is full",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Writes one unit directly (before the writer task exists).
async fn write_now(stream: &FdStream, bytes: Vec<u8>) -> Result<(), LinkError> {
    UnitWriter::new(Outgoing::Message(Bytes::from(bytes)))
        .write(stream)
        .await
        .map_err(|e| {
            LinkError::Write(uds_handshake::io::WriteError::Io(Arc::new(
                std::io::Error::other(e),
            )))
        })
}

/// One connection to a server: returns `Ok` when a registered connection
/// ends normally, `Err` with the reason otherwise.
async fn session(link: &Link, ctx: &LinkCtx) -> Result<(), LinkError> {
    let stream = open_link(link).await?;
    let server_creds = stream.peer_credentials().map_err(LinkError::Credentials)?;
    if !ctx.settings.server_uids.contains(&server_creds.uid) {
        return Err(LinkError::UntrustedServer {
            uid: server_creds.uid,
            pid: server_creds.pid,
            trusted: ctx.settings.server_uids.clone(),
        });
    }
    let mut reader = IntroReader::new(ctx.settings.limits);
    let mut hs = ClientHandshake::new(
        ctx.identity.clone(),
        ClientConfig {
            profile: ctx.settings.profile,
            pinned_server: link.pin,
        },
    );
    let registration = async {
        write_now(&stream, hs.register_message()).await?;
        let response = match reader.next(&stream).await? {
            Some(ChannelEvent::Message { value, .. }) => value,
            Some(ChannelEvent::Introduction { .. }) => {
                return Err(LinkError::Unexpected(
                    "an intro before we registered".into(),
                ));
            }
            None => return Err(LinkError::ClosedDuringRegistration),
        };
        let done = hs.receive(&response)?;
        write_now(&stream, done.signature_message).await?;
        Ok::<_, LinkError>((done.server, done.profile))
    };
    let timeout = ctx.settings.registration_timeout;
    let (server, shape) = tokio::time::timeout(timeout, registration)
        .await
        .map_err(|_| LinkError::RegistrationTimeout(timeout))??;
    let stream = Arc::new(stream);
    let (writer, writer_task) =
        IntroWriter::spawn(stream.clone(), WRITER_QUEUE, ctx.settings.send_timeout);
    let mut writer_task = AbortOnDrop(writer_task);
    // Registered and notified in one step: whoever sees this server in
    // `registered_servers()` also sees the `server_changes()` value that
    // announced it. The watch's lock is taken first and `link.state` inside
    // it, the order in which a caller holding a `server_changes()` borrow
    // would take them: the other order could deadlock with that caller.
    ctx.changed.send_modify(|generation| {
        *lock(&link.state) = Some(Registered {
            server,
            writer,
            since: std::time::Instant::now(),
        });
        *generation += 1;
    });
    tracing::debug!(server = %server, shape = %shape, "answered the server in its shape");
    let failed = link.failures.swap(0, std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        tracing::warn!(server = %server, via = %link.describe, "registered, after {failed} failed attempts");
    } else {
        tracing::info!(server = %server, via = %link.describe, "registered");
    }
    let ours = ctx.identity.designator();
    loop {
        let event = tokio::select! {
            e = reader.next(&stream) => e?,
            r = &mut writer_task.0 => {
                return match r {
                    Ok(Err(e)) => Err(LinkError::Write(e)),
                    Ok(Ok(())) => Ok(()),
                    Err(e) => Err(LinkError::Unexpected(format!("the link's writer task failed: {e}"))),
                };
            }
        };
        match event {
            None => return Ok(()),
            Some(ChannelEvent::Message { value, .. }) => {
                return Err(LinkError::Unexpected(format!("a message: {value}")));
            }
            Some(ChannelEvent::Introduction {
                record,
                fd,
                extra_fds,
                ..
            }) => {
                if extra_fds > 0 {
                    tracing::debug!(server = %server, extra_fds, "closed extra fds sent with an intro (using the first)");
                }
                match incoming(record, fd, server, server_creds, ours) {
                    Ok(pending) => admit(pending, ctx),
                    Err(why) => {
                        ctx.stats.incoming_refused();
                        tracing::warn!(server = %server, "refused an incoming connection: {why}")
                    }
                }
            }
        }
    }
}

/// An incoming connection whose first bytes have not been looked at.
pub(crate) struct Pending {
    stream: tokio::net::UnixStream,
    info: ConnectionInfo,
}

/// What to do with an incoming connection, given its first byte (`None`:
/// the dialer closed it before sending one). The one place that tells
/// e2ee from plaintext and applies the security mode to it.
enum Plan {
    /// Plaintext, and this netlayer accepts plaintext.
    Deliver,
    /// An e2ee handshake starts: run it (with the `e2ee` feature).
    #[cfg(feature = "e2ee")]
    Handshake,
    /// Closed, or not acceptable in this mode.
    Refuse(Refusal),
}

fn plan(first: Option<u8>, security: Security) -> Plan {
    match first {
        None => Plan::Refuse(Refusal::Closed),
        #[cfg(feature = "e2ee")]
        Some(b) if is_e2ee(b) => Plan::Handshake,
        #[cfg(not(feature = "e2ee"))]
        Some(b) if is_e2ee(b) => Plan::Refuse(Refusal::E2eeUnsupported),
        Some(_) => match security {
            Security::Plaintext => Plan::Deliver,
            #[allow(unreachable_patterns)]
            _ => Plan::Refuse(Refusal::Plaintext),
        },
    }
}

/// Starts the handshake of an incoming connection in a task of its own
/// (bounded in number and in time); once it is done the connection waits
/// for `accept()`, or is closed if too many already wait.
fn admit(pending: Pending, ctx: &LinkCtx) {
    // Most dialers have spoken by the time their socket arrives: a
    // plaintext or closed connection is settled here, without a task of its
    // own, and an e2ee one takes the byte seen here into its task.
    // `None`: nothing there yet (or an error, which the task meets again).
    let first = peek_now(&pending.stream).ok();
    match first.map(|first| plan(first, ctx.settings.security)) {
        Some(Plan::Deliver) => {
            deliver(
                Connection::new(Inner::Plain(pending.stream), pending.info),
                &ctx.incoming,
                &ctx.stats,
            );
            return;
        }
        Some(Plan::Refuse(why)) => {
            refused(pending.info.peer.designator(), why, &ctx.stats);
            return;
        }
        // e2ee, or nothing yet: a task waits for it.
        _ => {}
    }
    let Ok(permit) = ctx.handshakes.clone().try_acquire_owned() else {
        let n = ctx.stats.handshakes_dropped();
        warn_sparingly!(
            n,
            peer = %pending.info.peer.designator(),
            dropped = n,
            "closed an incoming connection: too many handshakes in progress (max_handshakes)"
        );
        return;
    };
    let settings = ctx.settings.clone();
    let incoming = ctx.incoming.clone();
    let stats = ctx.stats.clone();
    #[cfg(feature = "e2ee")]
    let local = ctx.local.clone();
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let peer = pending.info.peer.designator().to_owned();
        let timeout = settings.handshake_timeout;
        let handshake = async {
            let first = match first {
                Some(first) => first,
                None => crate::netlayer::peek_first_byte(&pending.stream).await?,
            };
            match plan(first, settings.security) {
                #[cfg(feature = "e2ee")]
                Plan::Handshake => {
                    let from = pending
                        .info
                        .peer
                        .designator_key()
                        .map_err(|e| Refusal::Other(e.to_string()))?;
                    let stream = uds_e2ee::accept(pending.stream, local, from)
                        .await
                        .map_err(Refusal::Handshake)?;
                    let mut info = pending.info;
                    info.encrypted = true;
                    info.identity_proven = true;
                    info.handshake_hash = Some(stream.info().handshake_hash);
                    Ok(Connection::new(Inner::Encrypted(Box::new(stream)), info))
                }
                Plan::Deliver => Ok(Connection::new(Inner::Plain(pending.stream), pending.info)),
                Plan::Refuse(why) => Err(why),
            }
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, handshake) => r.unwrap_or(Err(Refusal::Timeout(timeout))),
        };
        drop(permit);
        match outcome {
            Ok(conn) => deliver(conn, &incoming, &stats),
            Err(why) => refused(&peer, why, &stats),
        }
    });
}

/// Queues an accepted connection for `accept()`, or closes it if too many
/// already wait.
fn deliver(conn: Connection, incoming: &mpsc::Sender<Connection>, stats: &Stats) {
    match incoming.try_send(conn) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(conn)) => {
            let dropped = stats.incoming_dropped();
            warn_sparingly!(
                dropped,
                peer = %conn.peer().designator(),
                dropped,
                "closed an incoming connection: accept() is not keeping up \
                 (incoming_capacity is full)"
            );
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Counts and logs an incoming connection that was refused; one the dialer
/// closed before its first byte is only noted.
fn refused(peer: &str, why: Refusal, stats: &Stats) {
    if let Refusal::Closed = why {
        tracing::debug!(peer, "an incoming connection closed before its first byte");
        return;
    }
    let failed = stats.handshake_failed();
    warn_sparingly!(
        failed,
        peer,
        failed,
        "refused an incoming connection: {why}"
    );
}

/// Whether a first byte starts an e2ee stream (what
/// `uds_e2ee::is_e2ee_first_byte` says, known here without the feature so
/// that a build without it can name what it refuses).
fn is_e2ee(b: u8) -> bool {
    b == 0
}

/// The first byte waiting on `stream`, without taking it or waiting:
/// `Ok(None)` at end of stream, `WouldBlock` if nothing is there yet.
pub(crate) fn peek_now(stream: &tokio::net::UnixStream) -> std::io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    match nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(stream),
        &mut byte,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(byte[0])),
        Err(e) => Err(e.into()),
    }
}

/// Why an incoming connection was not accepted.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the dialer closed it")]
    Closed,
    #[error("nothing or no complete handshake within {0:?}")]
    Timeout(std::time::Duration),
    #[error(
        "it is plaintext, and this netlayer accepts only end-to-end encrypted connections (no downgrade; plaintext mode accepts both)"
    )]
    Plaintext,
    #[cfg(not(feature = "e2ee"))]
    #[error("it is end-to-end encrypted, and this netlayer was built without the e2ee feature")]
    E2eeUnsupported,
    #[cfg(feature = "e2ee")]
    #[error("its e2ee handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[cfg(feature = "e2ee")]
    #[error("{0}")]
    Other(String),
}

/// Checks an intro delivered to us and makes it a connection.
fn incoming(
    record: NewConnection,
    fd: OwnedFd,
    server: Designator,
    server_creds: Credentials,
    ours: Designator,
) -> Result<Pending, String> {
    match record.to.designator_key() {
        Ok(to) if to == ours => {}
        _ => {
            return Err(format!(
                "it is addressed to {}, not to us",
                record.to.designator()
            ));
        }
    }
    if let Err(e) = record.from.designator_key() {
        return Err(format!("its `from` is not a peer of this netlayer: {e}"));
    }
    uds_fdpass::check_stream_socket(&fd).map_err(|e| format!("the passed fd is unusable: {e}"))?;
    let creator = uds_fdpass::peer_credentials(&fd)
        .map_err(|e| format!("cannot read the passed socket's creator: {e}"))?;
    let relayed = creator.pid == server_creds.pid && server_creds.pid != 0;
    if relayed {
        tracing::warn!(
            server = %server,
            from = %record.from.designator(),
            "the server passed a socket it created itself (a relay): unless the connection is \
             end-to-end encrypted, it can read and change it"
        );
    }
    let stream = into_tokio(fd).map_err(|e| format!("socket: {e}"))?;
    Ok(Pending {
        stream,
        info: ConnectionInfo {
            peer: record.from,
            direction: Direction::Incoming,
            via: server,
            creator,
            relayed,
            encrypted: false,
            identity_proven: false,
            handshake_hash: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "e2ee")]
    #[test]
    fn the_first_byte_rule_is_the_e2ee_crates() {
        for b in 0..=u8::MAX {
            assert_eq!(is_e2ee(b), uds_e2ee::is_e2ee_first_byte(b), "{b}");
        }
    }

    #[test]
    fn the_plan_follows_the_first_byte_and_the_mode() {
        assert!(matches!(
            plan(None, Security::Plaintext),
            Plan::Refuse(Refusal::Closed)
        ));
        assert!(matches!(
            plan(Some(b'<'), Security::Plaintext),
            Plan::Deliver
        ));
        #[cfg(feature = "e2ee")]
        {
            assert!(matches!(
                plan(Some(0), Security::Plaintext),
                Plan::Handshake
            ));
            assert!(matches!(
                plan(Some(0), Security::Encrypted),
                Plan::Handshake
            ));
            assert!(matches!(
                plan(Some(b'<'), Security::Encrypted),
                Plan::Refuse(Refusal::Plaintext)
            ));
            assert!(matches!(
                plan(None, Security::Encrypted),
                Plan::Refuse(Refusal::Closed)
            ));
        }
        #[cfg(not(feature = "e2ee"))]
        assert!(matches!(
            plan(Some(0), Security::Plaintext),
            Plan::Refuse(Refusal::E2eeUnsupported)
        ));
    }
}
