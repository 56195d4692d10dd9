//! The netlayer: dialing and accepting through the links.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uds_fdpass::Credentials;
use uds_handshake::Identity;
use uds_handshake::io::Outgoing;
use uds_syrup::{Designator, Locator, NewConnection};

#[cfg(feature = "e2ee")]
use crate::builder::Security;
use crate::builder::{Builder, Settings};
use crate::connection::{Connection, ConnectionInfo, Direction, Inner as Stream, into_tokio};
use crate::error::{Attempt, AttemptError, NetlayerError};
use crate::link::{Link, Registered, lock};

/// Counters of the netlayer (shared by its links).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    incoming_dropped: AtomicU64,
    incoming_refused: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_dropped: AtomicU64,
    link_failures: AtomicU64,
    registrations_cut_short: AtomicU64,
}

impl Stats {
    /// Counts one registration the server ended soon after accepting it;
    /// returns the total.
    pub(crate) fn registration_cut_short(&self) -> u64 {
        self.registrations_cut_short.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one incoming connection closed for lack of room; returns
    /// the total.
    pub(crate) fn incoming_dropped(&self) -> u64 {
        self.incoming_dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one intro refused (not for us, not a socket...).
    pub(crate) fn incoming_refused(&self) {
        self.incoming_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one incoming connection whose handshake failed; returns the
    /// total.
    pub(crate) fn handshake_failed(&self) -> u64 {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one failed attempt to reach or register with a server.
    pub(crate) fn link_failed(&self) {
        self.link_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one incoming connection closed because too many handshakes
    /// were in progress; returns the total.
    pub(crate) fn handshakes_dropped(&self) -> u64 {
        self.handshakes_dropped.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A snapshot of the netlayer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetlayerStats {
    /// Incoming connections closed because [`UdsNetlayer::accept`] was not
    /// keeping up (more than `incoming_capacity` waiting).
    pub incoming_dropped: u64,
    /// Intros refused because they were not for us or did not carry a
    /// usable socket.
    pub incoming_refused: u64,
    /// Incoming connections refused by their handshake: a failed e2ee
    /// handshake (wrong identity, bad signature, tampering), a plaintext
    /// connection to an encrypted netlayer, or no handshake in time.
    pub handshakes_failed: u64,
    /// Incoming connections closed because `max_handshakes` were in
    /// progress.
    pub handshakes_dropped: u64,
    /// Attempts to reach or register with a server that failed (the server
    /// was away, refused us, had the wrong key or uid, ...); the netlayer
    /// retries with backoff.
    pub link_failures: u64,
    /// Registrations that a server ended (closing the connection without an
    /// error) within twice the maximum backoff of accepting them, each the
    /// second or later of such registrations in a row. The usual
    /// cause is another process registered with the same identity: the
    /// server keeps the newer of two registrations of one designator, so
    /// the two replace each other. The netlayer then keeps backing off
    /// instead of re-registering at once, and warns.
    pub registrations_cut_short: u64,
}

pub(crate) struct Inner {
    #[cfg(feature = "e2ee")]
    pub(crate) local: Arc<uds_e2ee::LocalStatic>,
    pub(crate) identity: Arc<Identity>,
    #[cfg_attr(not(feature = "e2ee"), allow(dead_code))]
    pub(crate) settings: Settings,
    pub(crate) links: Vec<Arc<Link>>,
    pub(crate) incoming: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    pub(crate) changed: Arc<watch::Sender<u64>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) stats: Arc<Stats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The state of one configured introduction server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerState {
    /// How it is reached (a path, `@name`, or "inherited socket").
    pub address: String,
    /// Its designator, while we are registered with it.
    pub registered_as: Option<Designator>,
}

/// The Unix-domain-socket netlayer.
///
/// Build it with [`UdsNetlayer::builder`]; it registers with every
/// configured introduction server in the background, re-registering when a
/// server restarts. Dropping the last handle shuts it down (connections
/// already made stay open).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use uds_netlayer::UdsNetlayer;
///
/// let net = UdsNetlayer::builder().intro_path("/run/user/1000/ocapn/intro.sock").build()?;
/// net.registered().await;
/// println!("reach me at {}", net.location());
///
/// let peer: uds_syrup::Locator = "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket?hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga=1".parse()?;
/// let mut conn = net.connect(&peer).await?;
/// conn.write_all(b"hello").await?;
///
/// let mut incoming = net.accept().await?;
/// println!("{} dialed us via {}", incoming.peer(), incoming.info().via);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UdsNetlayer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for UdsNetlayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdsNetlayer")
            .field("location", &self.location())
            .field("servers", &self.servers())
            .finish()
    }
}

impl UdsNetlayer {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Our identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    /// Our locator, whose hints list the servers we are registered with
    /// right now.
    pub fn location(&self) -> Locator {
        Locator::unix(self.inner.identity.designator()).with_hints(self.registered_servers())
    }

    /// The designators of the servers we are registered with now.
    pub fn registered_servers(&self) -> Vec<Designator> {
        self.inner
            .links
            .iter()
            .filter_map(|l| lock(&l.state).as_ref().map(|r| r.server))
            .collect()
    }

    /// The state of every configured server.
    pub fn servers(&self) -> Vec<ServerState> {
        self.inner
            .links
            .iter()
            .map(|l| ServerState {
                address: l.describe.clone(),
                registered_as: lock(&l.state).as_ref().map(|r| r.server),
            })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> NetlayerStats {
        let s = &self.inner.stats;
        NetlayerStats {
            incoming_dropped: s.incoming_dropped.load(Ordering::Relaxed),
            incoming_refused: s.incoming_refused.load(Ordering::Relaxed),
            handshakes_failed: s.handshakes_failed.load(Ordering::Relaxed),
            handshakes_dropped: s.handshakes_dropped.load(Ordering::Relaxed),
            link_failures: s.link_failures.load(Ordering::Relaxed),
            registrations_cut_short: s.registrations_cut_short.load(Ordering::Relaxed),
        }
    }

    /// Resolves once we are registered with at least one server.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    pub async fn registered(&self) {
        let mut rx = self.inner.changed.subscribe();
        while self.registered_servers().is_empty() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// A receiver that is notified whenever a server's state changes
    /// (registered, lost); read [`UdsNetlayer::servers`] or
    /// [`UdsNetlayer::registered_servers`] after each notification. Unlike
    /// polling, no change is missed between two waits. Its value counts the
    /// changes, and is updated in the same step as the state: a change seen
    /// in `registered_servers` is already counted.
    pub fn server_changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Connects to `peer`.
    ///
    /// Picks a server we are registered with that is in the peer's hints
    /// (any of ours if the locator has no hints) and passes it one end of a
    /// new socketpair.
    ///
    /// * **Encrypted mode** (the default): runs the e2ee handshake and
    ///   returns once the peer has proven its designator, within the answer
    ///   timeout. If the server closes the socket instead (it could not
    ///   deliver it), or the handshake through it fails (a lying server), the
    ///   next shared server is tried, and the error lists every attempt.
    /// * **Plaintext mode**: returns once the server has taken the socket:
    ///   nothing can prove that a plaintext peer was reached until it sends
    ///   something (an accepting netlayer waits for the dialer's first byte
    ///   to tell plaintext from e2ee, so the dialer must not wait for the
    ///   acceptor's). If the server cannot deliver the socket, the
    ///   connection reads end of stream after the server's park timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future never corrupts a link: an intro is either sent
    /// whole by the link's writer or not at all. If it was sent, the peer's
    /// netlayer finds the connection closed and drops it; its `accept()`
    /// does not return it.
    pub async fn connect(&self, peer: &Locator) -> Result<Connection, NetlayerError> {
        self.open(peer).await
    }

    /// The next incoming connection.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a connection is taken from the queue only when this
    /// returns it.
    pub async fn accept(&self) -> Result<Connection, NetlayerError> {
        self.inner
            .incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(NetlayerError::Closed)
    }

    async fn open(&self, peer: &Locator) -> Result<Connection, NetlayerError> {
        let target = peer
            .designator_key()
            .map_err(|source| NetlayerError::BadLocator {
                locator: peer.to_string(),
                source,
            })?;
        let registered: Vec<Registered> = self
            .inner
            .links
            .iter()
            .filter_map(|l| lock(&l.state).clone())
            .collect();
        if registered.is_empty() {
            return Err(NetlayerError::NotRegistered {
                servers: self
                    .inner
                    .links
                    .iter()
                    .map(|l| l.describe.clone())
                    .collect(),
            });
        }
        let hinted: Vec<Designator> = peer.hint_servers().collect();
        let candidates: Vec<&Registered> = registered
            .iter()
            .filter(|r| hinted.is_empty() || hinted.contains(&r.server))
            .collect();
        if candidates.is_empty() {
            return Err(NetlayerError::NoSharedServer {
                target,
                theirs: hinted,
                ours: registered.iter().map(|r| r.server).collect(),
            });
        }
        let mut attempts = Vec::new();
        for reg in candidates {
            match self.open_via(reg, peer).await {
                Ok(c) => return Ok(c),
                Err(error) => {
                    tracing::info!(peer = %target, server = %reg.server, "connection attempt failed: {error}");
                    attempts.push(Attempt {
                        server: reg.server,
                        error,
                    });
                }
            }
        }
        Err(NetlayerError::Unreachable { target, attempts })
    }

    async fn open_via(&self, reg: &Registered, peer: &Locator) -> Result<Connection, AttemptError> {
        let (ours, theirs) =
            uds_fdpass::socketpair().map_err(|e| AttemptError::Socket(Arc::new(e)))?;
        let record = NewConnection {
            from: self.location(),
            to: peer.clone(),
        };
        reg.writer
            .send(Outgoing::Intro {
                record: Bytes::from(record.to_value().encode()),
                fd: theirs,
            })
            .await
            .map_err(AttemptError::Link)?;
        let stream = into_tokio(ours).map_err(|e| AttemptError::Socket(Arc::new(e)))?;
        let creator = Credentials {
            pid: std::process::id() as i32,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        #[cfg_attr(not(feature = "e2ee"), allow(unused_mut))]
        let mut info = ConnectionInfo {
            peer: peer.clone(),
            direction: Direction::Outgoing,
            via: reg.server,
            creator,
            relayed: false,
            encrypted: false,
            identity_proven: false,
            handshake_hash: None,
        };
        #[cfg(feature = "e2ee")]
        if self.inner.settings.security == Security::Encrypted {
            let timeout = self.inner.settings.answer_timeout;
            let to = peer.designator_key().map_err(|e| {
                AttemptError::Io(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e,
                )))
            })?;
            let stream = tokio::time::timeout(
                timeout,
                uds_e2ee::connect(stream, self.inner.local.clone(), to),
            )
            .await
            .map_err(|_| AttemptError::NoAnswer(timeout))?
            .map_err(AttemptError::from_handshake)?;
            info.encrypted = true;
            info.identity_proven = true;
            info.handshake_hash = Some(stream.info().handshake_hash);
            return Ok(Connection::new(Stream::Encrypted(Box::new(stream)), info));
        }
        Ok(Connection::new(Stream::Plain(stream), info))
    }
}

/// The first byte the peer sent (left unread), or `None` if it closed.
pub(crate) async fn peek_first_byte(stream: &UnixStream) -> std::io::Result<Option<u8>> {
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || crate::link::peek_now(stream)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            peeked => return peeked,
        }
    }
}
