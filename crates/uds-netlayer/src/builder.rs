//! Configuring a netlayer: its introduction servers and settings.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uds_handshake::Identity;
use uds_sandbox::{Policy, Report, SandboxMode};
use uds_syrup::{Designator, Limits, WireProfile};

use crate::error::NetlayerError;
use crate::link::{Link, LinkCtx, connect_now, run_link};
use crate::netlayer::{Inner, Stats, UdsNetlayer};

/// The variable holding the number of an inherited, connected intro socket.
pub const INTRO_FD_ENV: &str = "OCAPN_UDS_INTRO_FD";
/// The variable holding the designator of the server behind that socket
/// (set by `uds-introd spawn`); used to pin it.
pub const INTRO_ID_ENV: &str = "OCAPN_UDS_INTRO_ID";

/// How to reach one introduction server.
#[derive(Debug)]
pub struct IntroServer {
    pub(crate) addr: ServerAddr,
    pub(crate) pin: Option<Designator>,
    /// Connected by [`Builder::confine`] before confining.
    pub(crate) preconnected: Option<OwnedFd>,
}

#[derive(Debug)]
pub(crate) enum ServerAddr {
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
            preconnected: None,
        }
    }

    /// A server listening on an abstract socket (`@name`, without the `@`).
    /// Abstract names can be taken over by anyone: pin the server's key.
    pub fn abstract_name(name: impl Into<String>) -> IntroServer {
        IntroServer {
            addr: ServerAddr::Abstract(name.into()),
            pin: None,
            preconnected: None,
        }
    }

    /// An already-connected socket to a server (for example inherited from
    /// a parent). It cannot be re-opened if the server goes away.
    pub fn fd(fd: OwnedFd) -> IntroServer {
        IntroServer {
            addr: ServerAddr::Fd(Mutex::new(Some(fd))),
            pin: None,
            preconnected: None,
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

    pub(crate) fn describe(&self) -> String {
        match &self.addr {
            ServerAddr::Path(p) => p.display().to_string(),
            ServerAddr::Abstract(n) => format!("@{n}"),
            ServerAddr::Fd(_) => "inherited socket".to_owned(),
        }
    }
}

/// The shortest delay [`Builder::backoff`] accepts between attempts to
/// reach a server.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// How a netlayer protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// End-to-end encrypted (Noise XX keyed to the peers' designators):
    /// dials with e2ee and refuses plaintext incoming connections (no
    /// downgrade). The default with the `e2ee` feature.
    #[cfg(feature = "e2ee")]
    Encrypted,
    /// Dials plaintext, as the draft and Goblins do, and accepts both
    /// plaintext and (with the `e2ee` feature) encrypted connections.
    Plaintext,
}

impl Default for Security {
    fn default() -> Security {
        #[cfg(feature = "e2ee")]
        return Security::Encrypted;
        #[cfg(not(feature = "e2ee"))]
        return Security::Plaintext;
    }
}

/// Settings shared by the links.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) security: Security,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) profile: Option<WireProfile>,
    pub(crate) server_uids: Vec<u32>,
    pub(crate) answer_timeout: Duration,
    pub(crate) registration_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) limits: Limits,
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
    pub(crate) fn new() -> Builder {
        let uid = nix::unistd::geteuid().as_raw();
        Builder {
            identity: None,
            servers: Vec::new(),
            settings: Settings {
                security: Security::default(),
                handshake_timeout: Duration::from_secs(10),
                max_handshakes: 64,
                profile: None,
                server_uids: vec![uid, 0],
                answer_timeout: Duration::from_secs(10),
                registration_timeout: Duration::from_secs(10),
                send_timeout: Duration::from_secs(10),
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(5),
                limits: Limits::intro_channel(),
            },
            incoming_capacity: 64,
        }
    }

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

    /// Plaintext mode: dial without encryption (as the draft and Goblins
    /// do) and accept both plaintext and encrypted connections. The default
    /// (with the `e2ee` feature) is encrypted: a lying introduction server
    /// can then drop and delay connections, never read, change or
    /// impersonate.
    pub fn plaintext(mut self) -> Builder {
        self.settings.security = Security::Plaintext;
        self
    }

    /// Encrypted mode (the default with the `e2ee` feature): dial with
    /// e2ee and refuse plaintext incoming connections.
    #[cfg(feature = "e2ee")]
    pub fn encrypted(mut self) -> Builder {
        self.settings.security = Security::Encrypted;
        self
    }

    /// The mode, as a value.
    pub fn security(mut self, security: Security) -> Builder {
        self.settings.security = security;
        self
    }

    /// How long an incoming connection may take to show what it is and, if
    /// encrypted, to complete its handshake (default 10 s); slower ones are
    /// closed. Handshakes run concurrently: a slow or silent dialer delays
    /// nobody else.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// How many incoming connections may be in their handshake at once
    /// (default 64); beyond that new ones are closed at once (counted in
    /// [`UdsNetlayer::stats`]).
    pub fn max_handshakes(mut self, n: usize) -> Builder {
        self.settings.max_handshakes = n.max(1);
        self
    }

    /// The shape of the messages we send to introduction servers. By
    /// default (`None`) the netlayer answers each server in the shape that
    /// server used (Goblins' servers require Goblins' shape, draft-only
    /// servers the draft's); `Some` forces one shape for every server.
    pub fn wire(mut self, profile: impl Into<Option<WireProfile>>) -> Builder {
        self.settings.profile = profile.into();
        self
    }

    /// Also trust introduction servers running as this uid. By default
    /// only servers running as our own uid or as root are trusted (checked
    /// with `SO_PEERCRED` before registering).
    pub fn allow_server_uid(mut self, uid: u32) -> Builder {
        self.settings.server_uids.push(uid);
        self
    }

    /// How long [`UdsNetlayer::connect`] waits for the peer's handshake in
    /// encrypted mode (default 10 s).
    pub fn answer_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.answer_timeout = timeout;
        self
    }

    /// How long registration with a server may take (default 10 s).
    pub fn registration_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.registration_timeout = timeout;
        self
    }

    /// How long a server may take to read one intro we send it (default
    /// 10 s). A server that reads nothing for that long is considered gone:
    /// the link is closed and reopened, and the intros waiting on it fail.
    pub fn send_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.send_timeout = timeout;
        self
    }

    /// The limits on messages from introduction servers (default
    /// [`Limits::intro_channel`], the same as `uds-introd`'s defaults;
    /// raise them to match a server started with a larger `--max-message`
    /// or `--max-depth`).
    pub fn intro_limits(mut self, limits: Limits) -> Builder {
        self.settings.limits = limits;
        self
    }

    /// Delays between attempts to reach a server that is away: from `min`,
    /// doubling up to `max` (default 100 ms to 5 s). `min` is at least
    /// [`MIN_BACKOFF`] (10 ms), so that a server that is away is never
    /// retried in a busy loop; `max` is at least `min`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Builder {
        let min = min.max(MIN_BACKOFF);
        self.settings.backoff_min = min;
        self.settings.backoff_max = max.max(min);
        self
    }

    /// How many incoming connections may wait for [`UdsNetlayer::accept`]
    /// (default 64). Intros keep being read when `accept` is slow; those
    /// beyond this number are closed at once (the dialer reads end of
    /// stream), counted in [`UdsNetlayer::stats`] and logged.
    pub fn incoming_capacity(mut self, n: usize) -> Builder {
        self.incoming_capacity = n.max(1);
        self
    }

    /// Confines this process (`no_new_privs`, Landlock) with `base` plus
    /// what the netlayer needs to keep reaching its introduction servers,
    /// and says what is in force. Call it once every server is added, on the
    /// main thread **before starting a multi-threaded async runtime** (and
    /// before any other thread exists), after everything else that needs the
    /// filesystem (keys read, files opened, children started); then start
    /// the runtime and [`build`](Builder::build). Threads and processes
    /// created afterwards inherit the confinement.
    ///
    /// `base` is the application's own policy (`Policy::new()`, the
    /// strictest, denies every file, TCP and UDP, abstract sockets and
    /// signals outside the process); for each introduction server this adds:
    ///
    /// * a path: the right to connect to sockets in its directory
    ///   ([`Policy::allow_connect`], which the kernel enforces from Landlock
    ///   ABI 9; older kernels do not restrict connecting to pathname sockets
    ///   at all), so that the netlayer reconnects after the server restarts.
    ///   The directory must exist now: in mode `auto` a missing one gets no
    ///   rule (a warning is logged: from ABI 9 the server would then be out
    ///   of reach), in mode `require` it is an error;
    /// * an abstract name (`@name`): abstract-socket scoping off
    ///   ([`Policy::scope_abstract_unix`]`(false)`), since a server (re)started
    ///   by another process is outside this process's domain;
    /// * an inherited socket: nothing (it is already open).
    ///
    /// Before confining it also connects to every path and abstract server
    /// that accepts connections now; the first registration uses that
    /// connection, later reconnects connect again.
    ///
    /// With [`SandboxMode::Off`] nothing is connected or applied and the
    /// report says so. Errors ([`NetlayerError::Sandbox`]): another thread
    /// exists, a rule's directory cannot be opened, or (mode `require`) the
    /// kernel cannot enforce the whole policy; nothing was applied then,
    /// except as [`SandboxError::Landlock`](uds_sandbox::SandboxError::Landlock)
    /// says.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use uds_netlayer::UdsNetlayer;
    /// use uds_netlayer::sandbox::{Policy, SandboxMode};
    ///
    /// let mut builder = UdsNetlayer::builder().intro_path("/run/user/1000/ocapn/intro.sock");
    /// let report = builder.confine(SandboxMode::Auto, Policy::new())?;
    /// eprintln!("{}", report.status_line());
    /// let runtime = tokio::runtime::Runtime::new()?; // its threads are confined too
    /// runtime.block_on(async {
    ///     let net = builder.build()?;
    ///     net.registered().await;
    ///     // ...
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn confine(&mut self, mode: SandboxMode, base: Policy) -> Result<Report, NetlayerError> {
        if mode == SandboxMode::Off {
            return base.confine(mode).map_err(NetlayerError::Sandbox);
        }
        let mut policy = base;
        for server in &mut self.servers {
            let addr = match &server.addr {
                ServerAddr::Path(path) => {
                    let dir = match path.parent() {
                        Some(d) if !d.as_os_str().is_empty() => d,
                        _ => Path::new("."),
                    };
                    if mode == SandboxMode::Require || dir.is_dir() {
                        policy = policy.allow_connect(path);
                    } else {
                        tracing::warn!(
                            server = %path.display(),
                            "the introduction server's directory does not exist yet: no Landlock \
                             rule for it; on kernels that mediate pathname sockets (Landlock ABI \
                             9) this process will not be able to reach the server"
                        );
                    }
                    nix::sys::socket::UnixAddr::new(path.as_path())
                }
                ServerAddr::Abstract(name) => {
                    policy = policy.scope_abstract_unix(false);
                    nix::sys::socket::UnixAddr::new_abstract(name.as_bytes())
                }
                ServerAddr::Fd(_) => continue,
            };
            if server.preconnected.is_some() {
                continue;
            }
            match addr
                .map_err(std::io::Error::from)
                .and_then(|a| connect_now(&a))
            {
                Ok(fd) => server.preconnected = Some(fd),
                Err(e) => tracing::debug!(
                    server = %server.describe(),
                    "not connected before confining ({e}); the netlayer connects later"
                ),
            }
        }
        policy.confine(mode).map_err(NetlayerError::Sandbox)
    }

    /// Starts the netlayer: one background task per server connects,
    /// registers, accepts intros, and reconnects when the server goes away.
    /// Returns at once; see [`UdsNetlayer::registered`]. Must be called
    /// inside a tokio runtime.
    ///
    /// Fails, before any I/O, when no server was given
    /// ([`NetlayerError::NoIntroServer`]) or a server's path or abstract
    /// name is longer than a socket address can hold
    /// ([`NetlayerError::IntroAddressTooLong`]); a server that cannot be
    /// reached yet is not an error (it is retried in the background).
    pub fn build(self) -> Result<UdsNetlayer, NetlayerError> {
        if self.servers.is_empty() {
            return Err(NetlayerError::NoIntroServer);
        }
        // An address no socket can have would be retried for ever.
        for server in &self.servers {
            let len = match &server.addr {
                ServerAddr::Path(p) => p.as_os_str().len(),
                ServerAddr::Abstract(name) => name.len(),
                ServerAddr::Fd(_) => continue,
            };
            if len > crate::error::MAX_SOCKET_ADDR {
                return Err(NetlayerError::IntroAddressTooLong {
                    server: server.describe(),
                    len,
                });
            }
        }
        let identity = self
            .identity
            .unwrap_or_else(|| Arc::new(Identity::generate()));
        let (tx, rx) = mpsc::channel(self.incoming_capacity);
        let (changed, _) = watch::channel(0u64);
        let changed = Arc::new(changed);
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        #[cfg(feature = "e2ee")]
        let local = Arc::new(uds_e2ee::LocalStatic::generate(&identity));
        let handshakes = Arc::new(tokio::sync::Semaphore::new(self.settings.max_handshakes));
        let links: Vec<Arc<Link>> = self.servers.into_iter().map(Link::new).collect();
        for link in &links {
            let ctx = LinkCtx {
                #[cfg(feature = "e2ee")]
                local: local.clone(),
                handshakes: handshakes.clone(),
                identity: identity.clone(),
                settings: self.settings.clone(),
                incoming: tx.clone(),
                changed: changed.clone(),
                shutdown: shutdown.clone(),
                stats: stats.clone(),
            };
            tokio::spawn(run_link(link.clone(), ctx));
        }
        Ok(UdsNetlayer {
            inner: Arc::new(Inner {
                #[cfg(feature = "e2ee")]
                local,
                identity,
                settings: self.settings,
                links,
                incoming: tokio::sync::Mutex::new(rx),
                changed,
                shutdown,
                stats,
            }),
        })
    }
}
