//! Where the daemon listens: a filesystem socket in a private directory, an
//! abstract name (opt-in), or sockets handed over by systemd.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Why a listening socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// No `--socket` and no `$XDG_RUNTIME_DIR`.
    #[error("XDG_RUNTIME_DIR is not set, so there is no default socket path: pass --socket PATH")]
    NoRuntimeDir,
    /// The socket's directory is not private.
    #[error(
        "refusing to listen in {dir}: it is {problem}; anyone who can write there could replace \
         the socket. Use a directory only you can write to (for example: chmod 700 {dir})"
    )]
    UnsafeDirectory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Another daemon answers on the socket path.
    #[error("another process is already listening on {0}: stop it or choose another --socket")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket: refusing to remove it; choose another --socket")]
    NotASocket(PathBuf),
    /// An inherited socket is not a listening Unix stream socket.
    #[error("socket activation: {0}")]
    Activation(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ListenError {
    let what = what.into();
    move |source| ListenError::Io { what, source }
}

/// The default socket path: `$XDG_RUNTIME_DIR/ocapn/intro.sock`.
pub fn default_socket_path() -> Result<PathBuf, ListenError> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join("ocapn").join("intro.sock")),
        _ => Err(ListenError::NoRuntimeDir),
    }
}

/// Where a listener is, as shown in the `ready` line: a path, or `@name`
/// for an abstract socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A filesystem socket.
    Path(PathBuf),
    /// An abstract socket name (without the leading NUL).
    Abstract(Vec<u8>),
    /// An unnamed socket (a socketpair end).
    Unnamed,
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Path(p) => write!(f, "{}", p.display()),
            ListenAddr::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
            ListenAddr::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

impl ListenAddr {
    fn of(addr: &SocketAddr) -> ListenAddr {
        if let Some(p) = addr.as_pathname() {
            ListenAddr::Path(p.to_owned())
        } else if let Some(n) = addr.as_abstract_name() {
            ListenAddr::Abstract(n.to_owned())
        } else {
            ListenAddr::Unnamed
        }
    }
}

/// A listening socket. A filesystem socket that this daemon created is
/// removed when the `Listener` is dropped (clean shutdown).
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    addr: ListenAddr,
    remove_on_drop: Option<PathBuf>,
}

impl Listener {
    /// The tokio listener.
    pub fn listener(&self) -> &UnixListener {
        &self.inner
    }

    /// Where it listens.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    fn from_std(
        std: StdListener,
        remove_on_drop: Option<PathBuf>,
    ) -> Result<Listener, ListenError> {
        std.set_nonblocking(true)
            .map_err(io_err("set_nonblocking"))?;
        let addr = std
            .local_addr()
            .map(|a| ListenAddr::of(&a))
            .unwrap_or(ListenAddr::Unnamed);
        let inner = UnixListener::from_std(std).map_err(io_err("register listener with tokio"))?;
        Ok(Listener {
            inner,
            addr,
            remove_on_drop,
        })
    }

    /// Binds a filesystem socket at `path`.
    ///
    /// The directory is created (mode 0700) if missing; an existing one must
    /// be owned by this user and not writable by group or others. A leftover
    /// socket file is removed only if connecting to it is refused (nobody
    /// listens); anything else at `path` is an error. `mode` is applied to
    /// the socket file (0600 unless other users are admitted).
    pub fn bind_path(path: &Path, mode: u32) -> Result<Listener, ListenError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        ensure_private_dir(&dir)?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(ListenError::NotASocket(path.to_owned()));
                }
                match StdStream::connect(path) {
                    Ok(_) => return Err(ListenError::InUse(path.to_owned())),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        tracing::info!(path = %path.display(), "removing leftover socket file (nobody listens on it)");
                        std::fs::remove_file(path).map_err(io_err(format!(
                            "remove leftover socket {}",
                            path.display()
                        )))?;
                    }
                    Err(e) => {
                        return Err(ListenError::Io {
                            what: format!("probe existing socket {}", path.display()),
                            source: e,
                        });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("stat {}", path.display()))(e)),
        }
        let std = StdListener::bind(path).map_err(io_err(format!("bind {}", path.display())))?;
        let listener = Listener::from_std(std, Some(path.to_owned()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        Ok(listener)
    }

    /// Binds an abstract socket `name` (without the leading NUL).
    ///
    /// Abstract names have no permissions, are visible to every process in
    /// `/proc/net/unix`, and anyone can bind the name once this daemon exits:
    /// clients must not trust the name alone (pin the server's key).
    pub fn bind_abstract(name: &str) -> Result<Listener, ListenError> {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(io_err(format!("abstract name @{name}")))?;
        let std = StdListener::bind_addr(&addr).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                ListenError::InUse(PathBuf::from(format!("@{name}")))
            } else {
                io_err(format!("bind @{name}"))(e)
            }
        })?;
        Listener::from_std(std, None)
    }

    /// The listening sockets passed by systemd socket activation
    /// (`LISTEN_FDS`/`LISTEN_PID`), or an empty list when there are none.
    /// Each must be a listening AF_UNIX stream socket.
    pub fn from_activation() -> Result<Vec<Listener>, ListenError> {
        let fds = uds_fdpass::inherit::listen_fds()
            .map_err(|e| ListenError::Activation(e.to_string()))?;
        fds.into_iter()
            .map(|fd| {
                uds_fdpass::check_listening_socket(&fd)
                    .map_err(|e| ListenError::Activation(e.to_string()))?;
                Listener::from_std(StdListener::from(fd), None)
            })
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = self.remove_on_drop.take()
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), "could not remove socket file: {e}");
        }
    }
}

/// Creates `dir` (0700) if missing; otherwise checks it is a directory owned
/// by us and not writable by group or others.
pub fn ensure_private_dir(dir: &Path) -> Result<(), ListenError> {
    let uid = nix::unistd::geteuid().as_raw();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(io_err(format!("create directory {}", dir.display())))?;
            Ok(())
        }
        Err(e) => Err(io_err(format!("stat {}", dir.display()))(e)),
        Ok(meta) => {
            let problem = if !meta.is_dir() {
                Some("not a directory".to_owned())
            } else if meta.uid() != uid {
                Some(format!(
                    "owned by uid {} (the daemon runs as uid {uid})",
                    meta.uid()
                ))
            } else if meta.mode() & 0o022 != 0 {
                Some(format!(
                    "writable by {} (mode {:04o})",
                    if meta.mode() & 0o002 != 0 {
                        "everyone"
                    } else {
                        "its group"
                    },
                    meta.mode() & 0o7777
                ))
            } else {
                None
            };
            match problem {
                Some(problem) => Err(ListenError::UnsafeDirectory {
                    dir: dir.to_owned(),
                    problem,
                }),
                None => Ok(()),
            }
        }
    }
}
