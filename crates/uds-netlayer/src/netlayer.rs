//! The netlayer: links to introduction servers, dialing and accepting.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uds_fdpass::{Credentials, FdStream};
use uds_handshake::channel::{ChannelError, ChannelEvent, IntroChannel, introduction_bytes};
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::{Designator, Limits, Locator, NewConnection, WireProfile};

use crate::connection::{Connection, ConnectionInfo, Direction};
use crate::error::{NetlayerError, list};

/// The variable holding the number of an inherited, connected intro socket.
pub const INTRO_FD_ENV: &str = "OCAPN_UDS_INTRO_FD";
/// The variable holding the designator of the server behind that socket
/// (set by `uds-introd spawn`); used to pin it.
pub const INTRO_ID_ENV: &str = "OCAPN_UDS_INTRO_ID";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How to reach one introduction server.
#[derive(Debug)]
pub struct IntroServer {
    addr: ServerAddr,
    pin: Option<Designator>,
}

#[derive(Debug)]
enum ServerAddr {
    Path(PathBuf),
    Abstract(String),
    /// An inherited connected socket: usable once, never reconnected.
    Fd(Mutex<Option<OwnedFd>>),
}

impl IntroServer {
    /// A server listening on a filesystem socket.
    pub fn path(path: impl Into<PathBuf>) -> IntroServer {
        IntroServer {
            addr: ServerAddr::Path(path.into()),
            pin: None,
        }
    }

    /// A server listening on an abstract socket (`@name`, without the `@`).
    /// Abstract names can be taken over by anyone: pin the server's key.
    pub fn abstract_name(name: impl Into<String>) -> IntroServer {
        IntroServer {
            addr: ServerAddr::Abstract(name.into()),
            pin: None,
        }
    }

    /// An already-connected socket to a server (for example inherited from
    /// a parent). It cannot be re-opened if the server goes away.
    pub fn fd(fd: OwnedFd) -> IntroServer {
        IntroServer {
            addr: ServerAddr::Fd(Mutex::new(Some(fd))),
            pin: None,
        }
    }

    /// The socket inherited in `OCAPN_UDS_INTRO_FD`, pinned to the key in
    /// `OCAPN_UDS_INTRO_ID` if that is set; `Ok(None)` if there is none.
    pub fn from_env() -> Result<Option<IntroServer>, NetlayerError> {
        let Some(fd) = uds_fdpass::inherit::take_fd_from_env(INTRO_FD_ENV)
            .map_err(|e| NetlayerError::Inherited(e.to_string()))?
        else {
            return Ok(None);
        };
        uds_fdpass::check_stream_socket(&fd)
            .map_err(|e| NetlayerError::Inherited(format!("{INTRO_FD_ENV}: {e}")))?;
        let mut server = IntroServer::fd(fd);
        if let Ok(id) = std::env::var(INTRO_ID_ENV) {
            let pin = id
                .parse()
                .map_err(|e| NetlayerError::Inherited(format!("{INTRO_ID_ENV}: {e}")))?;
            server = server.pinned(pin);
        }
        Ok(Some(server))
    }

    /// Accept only a server with this key.
    pub fn pinned(mut self, server: Designator) -> IntroServer {
        self.pin = Some(server);
        self
    }

    fn describe(&self) -> String {
        match &self.addr {
            ServerAddr::Path(p) => p.display().to_string(),
            ServerAddr::Abstract(n) => format!("@{n}"),
            ServerAddr::Fd(_) => "inherited socket".to_owned(),
        }
    }
}

/// Settings shared by the links.
#[derive(Debug, Clone)]
struct Settings {
    profile: WireProfile,
    server_uids: Vec<u32>,
    answer_timeout: Duration,
    registration_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

/// Builds a [`UdsNetlayer`].
#[derive(Debug)]
pub struct Builder {
    identity: Option<Arc<Identity>>,
    servers: Vec<IntroServer>,
    settings: Settings,
    incoming_capacity: usize,
}

impl Builder {
    /// The identity (default: a new random one).
    pub fn identity(mut self, identity: Arc<Identity>) -> Builder {
        self.identity = Some(identity);
        self
    }

    /// Adds an introduction server.
    pub fn intro(mut self, server: IntroServer) -> Builder {
        self.servers.push(server);
        self
    }

    /// Adds a server listening on a filesystem socket.
    pub fn intro_path(self, path: impl Into<PathBuf>) -> Builder {
        self.intro(IntroServer::path(path))
    }

    /// Adds a server listening on an abstract socket name.
    pub fn intro_abstract(self, name: impl Into<String>) -> Builder {
        self.intro(IntroServer::abstract_name(name))
    }

    /// Adds an already-connected socket to a server.
    pub fn intro_fd(self, fd: OwnedFd) -> Builder {
        self.intro(IntroServer::fd(fd))
    }

    /// Adds the socket inherited in `OCAPN_UDS_INTRO_FD`, if any.
    pub fn intro_from_env(self) -> Result<Builder, NetlayerError> {
        Ok(match IntroServer::from_env()? {
            Some(s) => self.intro(s),
            None => self,
        })
    }

    /// The shape of the messages we send (default: the draft's).
    pub fn wire(mut self, profile: WireProfile) -> Builder {
        self.settings.profile = profile;
        self
    }

    /// Also trust introduction servers running as this uid. By default
    /// only servers running as our own uid or as root are trusted (checked
    /// with `SO_PEERCRED` before registering).
    pub fn allow_server_uid(mut self, uid: u32) -> Builder {
        self.settings.server_uids.push(uid);
        self
    }

    /// How long [`UdsNetlayer::connect`] waits for the peer's first byte
    /// (default 10 s).
    pub fn answer_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.answer_timeout = timeout;
        self
    }

    /// How long registration with a server may take (default 10 s).
    pub fn registration_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.registration_timeout = timeout;
        self
    }

    /// Delays between attempts to reach a server that is away: from `min`,
    /// doubling up to `max` (default 100 ms to 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Builder {
        self.settings.backoff_min = min;
        self.settings.backoff_max = max.max(min);
        self
    }

    /// How many accepted connections may wait for [`UdsNetlayer::accept`]
    /// (default 64). Beyond that, reading intros pauses.
    pub fn incoming_capacity(mut self, n: usize) -> Builder {
        self.incoming_capacity = n.max(1);
        self
    }

    /// Starts the netlayer: one background task per server connects,
    /// registers, accepts intros, and reconnects when the server goes away.
    /// Returns at once; see [`UdsNetlayer::registered`]. Must be called
    /// inside a tokio runtime.
    pub fn build(self) -> Result<UdsNetlayer, NetlayerError> {
        if self.servers.is_empty() {
            return Err(NetlayerError::NoIntroServer);
        }
        let identity = self
            .identity
            .unwrap_or_else(|| Arc::new(Identity::generate()));
        let (tx, rx) = mpsc::channel(self.incoming_capacity);
        let (changed, _) = watch::channel(0u64);
        let changed = Arc::new(changed);
        let shutdown = CancellationToken::new();
        let links: Vec<Arc<Link>> = self
            .servers
            .into_iter()
            .map(|s| {
                Arc::new(Link {
                    describe: s.describe(),
                    addr: s.addr,
                    pin: s.pin,
                    state: Mutex::new(None),
                    write: tokio::sync::Mutex::new(()),
                })
            })
            .collect();
        for link in &links {
            let ctx = LinkCtx {
                identity: identity.clone(),
                settings: self.settings.clone(),
                incoming: tx.clone(),
                changed: changed.clone(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(run_link(link.clone(), ctx));
        }
        Ok(UdsNetlayer {
            inner: Arc::new(Inner {
                identity,
                settings: self.settings,
                links,
                incoming: tokio::sync::Mutex::new(rx),
                changed,
                shutdown,
            }),
        })
    }
}

/// One introduction server, as the netlayer sees it.
struct Link {
    describe: String,
    addr: ServerAddr,
    pin: Option<Designator>,
    state: Mutex<Option<Registered>>,
    /// Held across the two sends of an intro.
    write: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Registered {
    server: Designator,
    stream: Arc<FdStream>,
}

struct LinkCtx {
    identity: Arc<Identity>,
    settings: Settings,
    incoming: mpsc::Sender<Connection>,
    changed: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
}

impl LinkCtx {
    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }
}

struct Inner {
    identity: Arc<Identity>,
    settings: Settings,
    links: Vec<Arc<Link>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    changed: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The state of one configured introduction server.
#[derive(Debug, Clone, PartialEq, Eq)]
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
/// let mut conn = net.dial(&peer).await?;
/// conn.write_all(b"hello").await?;
///
/// let mut incoming = net.accept().await?;
/// println!("{} dialed us via {}", incoming.peer(), incoming.info().via);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UdsNetlayer {
    inner: Arc<Inner>,
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
        let uid = nix::unistd::geteuid().as_raw();
        Builder {
            identity: None,
            servers: Vec::new(),
            settings: Settings {
                profile: WireProfile::Draft,
                server_uids: vec![uid, 0],
                answer_timeout: Duration::from_secs(10),
                registration_timeout: Duration::from_secs(10),
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(5),
            },
            incoming_capacity: 64,
        }
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

    /// Resolves once we are registered with at least one server.
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
    /// polling, no change is missed between two waits.
    pub fn server_changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Connects to `peer` and waits until it answers.
    ///
    /// Picks a server we are registered with that is in the peer's hints
    /// (any of ours if the locator has no hints), passes it one end of a new
    /// socketpair, and waits up to the answer timeout for the peer's first
    /// byte (the byte stays unread). OCapN peers both speak first
    /// (`op:start-session`), so an answer comes at once; if the server
    /// closes the socket instead (it could not deliver it), the next shared
    /// server is tried. For protocols where only the dialer speaks first,
    /// use [`UdsNetlayer::dial`].
    pub async fn connect(&self, peer: &Locator) -> Result<Connection, NetlayerError> {
        self.open(peer, true).await
    }

    /// Connects to `peer` without waiting for an answer: returns once a
    /// server has taken the socket. If that server cannot deliver it, the
    /// connection reads end of stream after the server's park timeout.
    pub async fn dial(&self, peer: &Locator) -> Result<Connection, NetlayerError> {
        self.open(peer, false).await
    }

    /// The next incoming connection.
    pub async fn accept(&self) -> Result<Connection, NetlayerError> {
        self.inner
            .incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(NetlayerError::Closed)
    }

    async fn open(&self, peer: &Locator, wait_answer: bool) -> Result<Connection, NetlayerError> {
        let target = peer
            .designator_key()
            .map_err(|source| NetlayerError::BadLocator {
                locator: peer.to_string(),
                source,
            })?;
        let registered: Vec<(Arc<Link>, Registered)> = self
            .inner
            .links
            .iter()
            .filter_map(|l| lock(&l.state).clone().map(|r| (l.clone(), r)))
            .collect();
        if registered.is_empty() {
            return Err(NetlayerError::NotRegistered {
                servers: self
                    .inner
                    .links
                    .iter()
                    .map(|l| l.describe.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let hinted: Vec<Designator> = peer.hint_servers().collect();
        let candidates: Vec<_> = registered
            .iter()
            .filter(|(_, r)| hinted.is_empty() || hinted.contains(&r.server))
            .collect();
        if candidates.is_empty() {
            return Err(NetlayerError::NoSharedServer {
                target,
                theirs: list(hinted),
                ours: list(registered.iter().map(|(_, r)| r.server)),
            });
        }
        let mut attempts = Vec::new();
        for (link, reg) in candidates {
            match self.open_via(link, reg, peer, wait_answer).await {
                Ok(c) => return Ok(c),
                Err(why) => {
                    tracing::info!(peer = %target, server = %reg.server, "connection attempt failed: {why}");
                    attempts.push(format!("via {}: {why}", reg.server));
                }
            }
        }
        Err(NetlayerError::Unreachable {
            target,
            attempts: attempts.join("; "),
        })
    }

    async fn open_via(
        &self,
        link: &Link,
        reg: &Registered,
        peer: &Locator,
        wait_answer: bool,
    ) -> Result<Connection, String> {
        let (ours, theirs) = uds_fdpass::socketpair().map_err(|e| format!("socketpair: {e}"))?;
        let record = NewConnection {
            from: self.location(),
            to: peer.clone(),
        };
        let (record, body) = introduction_bytes(&record);
        {
            let _guard = link.write.lock().await;
            reg.stream
                .send(&record, &[])
                .await
                .map_err(|e| format!("the server connection failed: {e}"))?;
            reg.stream
                .send(&body, &[theirs.as_fd()])
                .await
                .map_err(|e| format!("the server connection failed: {e}"))?;
        }
        drop(theirs);
        let stream = into_tokio(ours).map_err(|e| format!("socket: {e}"))?;
        if wait_answer {
            let answer =
                tokio::time::timeout(self.inner.settings.answer_timeout, wait_for_answer(&stream))
                    .await
                    .map_err(|_| {
                        format!(
                            "the peer did not answer within {:?}",
                            self.inner.settings.answer_timeout
                        )
                    })?;
            answer?;
        }
        let creator = Credentials {
            pid: std::process::id() as i32,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        Ok(Connection::new(
            stream,
            ConnectionInfo {
                peer: peer.clone(),
                direction: Direction::Outgoing,
                via: reg.server,
                creator,
                relayed: false,
            },
        ))
    }
}

/// Makes a passed or created socket end a tokio stream that refuses fds.
fn into_tokio(fd: OwnedFd) -> std::io::Result<UnixStream> {
    // Peers have no reason to pass fds over a connection: where the kernel
    // can, refuse them (a plain read would close them anyway).
    let _ = uds_fdpass::refuse_fds(&fd);
    let std = StdStream::from(fd);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

/// Waits until the peer has sent a byte (left unread) or closed.
async fn wait_for_answer(stream: &UnixStream) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    loop {
        stream
            .readable()
            .await
            .map_err(|e| format!("waiting for the answer: {e}"))?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let mut byte = [0u8; 1];
            nix::sys::socket::recv(
                stream.as_raw_fd(),
                &mut byte,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)
        });
        match peeked {
            Ok(0) => {
                return Err(
                    "the server closed the connection before the peer answered (is the peer \
                     registered there?)"
                        .to_owned(),
                );
            }
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("waiting for the answer: {e}")),
        }
    }
}

/// Keeps one server link alive: connect, register, serve, reconnect.
async fn run_link(link: Arc<Link>, ctx: LinkCtx) {
    let mut delay = ctx.settings.backoff_min;
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let outcome = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = session(&link, &ctx) => r,
        };
        let was_registered = lock(&link.state).take().is_some();
        if was_registered {
            ctx.bump();
        }
        match outcome {
            Ok(()) => {
                tracing::info!(server = %link.describe, "the introduction server went away; reconnecting");
                delay = ctx.settings.backoff_min;
            }
            Err(e) => tracing::warn!(server = %link.describe, "introduction server: {e}"),
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

async fn open_link(link: &Link) -> Result<FdStream, String> {
    match &link.addr {
        ServerAddr::Path(p) => UnixStream::connect(p)
            .await
            .map(FdStream::from)
            .map_err(|e| format!("cannot connect to {}: {e}", p.display())),
        ServerAddr::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|e| format!("@{name}: {e}"))?;
            let std = StdStream::connect_addr(&addr)
                .map_err(|e| format!("cannot connect to @{name}: {e}"))?;
            FdStream::try_from_std(std).map_err(|e| format!("@{name}: {e}"))
        }
        ServerAddr::Fd(slot) => {
            let fd = lock(slot)
                .take()
                .ok_or_else(|| "the inherited socket was already used".to_owned())?;
            FdStream::try_from_fd(fd).map_err(|e| e.to_string())
        }
    }
}

/// One connection to a server: returns `Ok` when a registered connection
/// ends normally, `Err` with the reason otherwise.
async fn session(link: &Link, ctx: &LinkCtx) -> Result<(), String> {
    let stream = open_link(link).await?;
    let server_creds = stream
        .peer_credentials()
        .map_err(|e| format!("cannot read the server's credentials: {e}"))?;
    if !ctx.settings.server_uids.contains(&server_creds.uid) {
        return Err(format!(
            "refusing to register: the server runs as uid {} (pid {}), trusted are {:?} \
             (see allow_server_uid)",
            server_creds.uid, server_creds.pid, ctx.settings.server_uids
        ));
    }
    let mut chan: IntroChannel<OwnedFd> = IntroChannel::new(Limits::intro_channel());
    let mut hs = ClientHandshake::new(
        ctx.identity.clone(),
        ClientConfig {
            profile: ctx.settings.profile,
            pinned_server: link.pin,
        },
    );
    let registration = async {
        stream
            .send(&hs.register_message(), &[])
            .await
            .map_err(|e| format!("register: {e}"))?;
        let response = match next_event(&stream, &mut chan).await? {
            Some(ChannelEvent::Message { value, .. }) => value,
            Some(ChannelEvent::Introduction { .. }) => {
                return Err("the server sent an intro before we registered".to_owned());
            }
            None => return Err("the server closed the connection during registration".to_owned()),
        };
        let done = hs.receive(&response).map_err(|e| e.to_string())?;
        stream
            .send(&done.signature_message, &[])
            .await
            .map_err(|e| format!("register: {e}"))?;
        Ok::<_, String>(done.server)
    };
    let server = tokio::time::timeout(ctx.settings.registration_timeout, registration)
        .await
        .map_err(|_| "registration timed out".to_owned())??;
    let stream = Arc::new(stream);
    *lock(&link.state) = Some(Registered {
        server,
        stream: stream.clone(),
    });
    tracing::info!(server = %server, via = %link.describe, "registered");
    ctx.bump();
    let ours = ctx.identity.designator();
    loop {
        match next_event(&stream, &mut chan).await? {
            None => return Ok(()),
            Some(ChannelEvent::Message { value, .. }) => {
                return Err(format!("unexpected message from the server: {value}"));
            }
            Some(ChannelEvent::Introduction {
                record,
                fd,
                extra_fds,
                ..
            }) => {
                if extra_fds > 0 {
                    tracing::debug!(server = %server, extra_fds, "closed extra fds sent with an intro");
                }
                match incoming(record, fd, server, server_creds, ours) {
                    Ok(conn) => {
                        if ctx.incoming.send(conn).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(why) => {
                        tracing::warn!(server = %server, "refused an incoming connection: {why}")
                    }
                }
            }
        }
    }
}

async fn next_event(
    stream: &FdStream,
    chan: &mut IntroChannel<OwnedFd>,
) -> Result<Option<ChannelEvent<OwnedFd>>, String> {
    loop {
        match chan.next_event() {
            Ok(Some(e)) => return Ok(Some(e)),
            Ok(None) => {}
            Err(e) => return Err(channel_error(e)),
        }
        let got = stream
            .recv(chan.buffer_mut())
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if got.is_eof() {
            chan.finish().map_err(channel_error)?;
            return Ok(None);
        }
        chan.push_fds(got.fds);
    }
}

fn channel_error(e: ChannelError) -> String {
    format!("bad input from the server: {e}")
}

/// Checks an intro delivered to us and makes it a connection.
fn incoming(
    record: NewConnection,
    fd: OwnedFd,
    server: Designator,
    server_creds: Credentials,
    ours: Designator,
) -> Result<Connection, String> {
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
            "the server passed a socket it created itself: it can read and change this connection"
        );
    }
    let stream = into_tokio(fd).map_err(|e| format!("socket: {e}"))?;
    Ok(Connection::new(
        stream,
        ConnectionInfo {
            peer: record.from,
            direction: Direction::Incoming,
            via: server,
            creator,
            relayed,
        },
    ))
}
