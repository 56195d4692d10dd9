//! Where the daemon listens: a filesystem socket in a private directory, an
//! abstract name (opt-in), or sockets handed over by systemd.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener as StdListener};
use std::path::{Path, PathBuf};

use nix::sys::socket::SockType;

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
    /// A directory or symlink on the way to the socket's directory is
    /// controlled by another user, who could replace the directory or
    /// re-point the path.
    #[error(
        "refusing to listen in {dir}: {ancestor} is {problem}, so another user could replace \
         what the path leads to. Put the socket under directories that only you or root can \
         change (or that are sticky, like /tmp)"
    )]
    UnsafePath {
        /// The socket's directory.
        dir: PathBuf,
        /// The directory or symlink on its path that is not safe.
        ancestor: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Another process has held the socket directory's lock for
    /// `DIR_LOCK_WAIT` (5 s): another daemon binding there.
    #[error(
        "the socket directory {0} has been locked by another process for 5 s: is another daemon \
         starting there?"
    )]
    DirectoryLocked(PathBuf),
    /// Another daemon answers on the socket path.
    #[error("another process is already listening on {0}: stop it or choose another --socket")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket: refusing to remove it; choose another --socket")]
    NotASocket(PathBuf),
    /// An inherited socket is not a listening Unix stream socket.
    #[error("socket activation: {0}")]
    Activation(String),
    /// The path or abstract name is longer than a Unix socket address can
    /// hold ([`MAX_SOCKET_PATH`] bytes).
    #[error(
        "the socket address {path} is {len} bytes long; a Unix socket path or abstract name \
         can have at most {MAX_SOCKET_PATH} bytes: choose a shorter one"
    )]
    PathTooLong {
        /// The path, or `@` and the abstract name.
        path: PathBuf,
        /// Its length in bytes (without the `@`).
        len: usize,
    },
    /// The path has a control character (a newline would split the `ready`
    /// line and could forge its fields).
    #[error("refusing the socket path {0:?}: it contains a control character")]
    BadPath(PathBuf),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// The longest path (or abstract name) a Unix socket can be bound to or
/// reached at, in bytes ([`uds_fdpass::MAX_SOCKET_ADDR`]).
pub const MAX_SOCKET_PATH: usize = uds_fdpass::MAX_SOCKET_ADDR;

/// Refuses a socket path with a control character (see
/// [`ListenError::BadPath`]) or longer than [`MAX_SOCKET_PATH`] bytes, which
/// no socket can be bound to. Binding checks both too, but a caller can
/// check first, before it creates anything else.
pub fn check_socket_path(path: &Path) -> Result<(), ListenError> {
    if path.to_string_lossy().chars().any(char::is_control) {
        return Err(ListenError::BadPath(path.to_owned()));
    }
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(ListenError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    Ok(())
}

/// Refuses an abstract socket name (without the leading NUL) with a
/// control character or longer than [`MAX_SOCKET_PATH`] bytes.
pub fn check_abstract_name(name: &str) -> Result<(), ListenError> {
    if name.chars().any(char::is_control) {
        return Err(ListenError::BadPath(PathBuf::from(format!("@{name}"))));
    }
    if name.len() > MAX_SOCKET_PATH {
        return Err(ListenError::PathTooLong {
            path: PathBuf::from(format!("@{name}")),
            len: name.len(),
        });
    }
    Ok(())
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

/// Shown with control characters and backslashes escaped (`\n`,
/// `\x1b`, `\\`), so that an address can never split or forge a line.
impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Path(p) => f.write_str(&escape(&p.to_string_lossy())),
            ListenAddr::Abstract(n) => write!(f, "@{}", escape(&String::from_utf8_lossy(n))),
            ListenAddr::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

/// `s` with control characters and backslashes escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
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

/// A socket file this process bound, removed when dropped, but only if the
/// path still names the same inode (a newer daemon may have replaced it).
#[derive(Debug)]
pub(crate) struct BoundPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BoundPath {
    /// Records the inode now at `path` (just bound by us).
    pub(crate) fn new(path: &Path) -> io::Result<BoundPath> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(BoundPath {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundPath {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), "could not remove socket file: {e}");
                }
            }
            Ok(_) => tracing::info!(
                path = %self.path.display(),
                "not removing the socket file: another process has replaced it"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "could not check socket file: {e}")
            }
        }
    }
}

/// The directory a socket file at `path` is created in.
fn socket_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// How long a daemon waits for another one that is binding a socket in the
/// same directory.
const DIR_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A socket directory locked (`flock`) from the probe of a leftover socket
/// file to the bind of the new one; unlocked when dropped. Two daemons
/// starting at once on one path take turns: the second finds the first's
/// socket answering, instead of removing it as a leftover.
#[must_use = "the directory is unlocked when this is dropped"]
pub(crate) struct DirLock {
    _locked: Option<std::fs::File>,
}

fn lock_dir(dir: &Path) -> Result<DirLock, ListenError> {
    let file =
        std::fs::File::open(dir).map_err(io_err(format!("open directory {}", dir.display())))?;
    let deadline = std::time::Instant::now() + DIR_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(DirLock {
                    _locked: Some(file),
                });
            }
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ListenError::DirectoryLocked(dir.to_owned()));
            }
            // A filesystem without locks: go on unlocked.
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::debug!(dir = %dir.display(), "cannot lock the socket directory: {e}");
                return Ok(DirLock { _locked: None });
            }
        }
    }
}

/// Makes `path` ready to bind a socket of type `ty`, by the one rule for
/// every socket file the daemon creates: the path must fit a socket address
/// and be free of control characters ([`check_socket_path`]), the way to
/// the directory safe from other users (`check_path_to`), the directory
/// private ([`ensure_private_dir`]) and locked against another daemon
/// binding there (at most `DIR_LOCK_WAIT`; the thread sleeps meanwhile, so
/// never call this from async code), and a leftover file at `path` is
/// removed only if it is a socket on which a connection is refused (nobody
/// listens). A socket that answers is [`ListenError::InUse`]; anything that
/// is not a socket is never removed. The probe never blocks. The directory
/// stays locked until the returned guard is dropped: keep it until the new
/// socket listens.
pub(crate) fn prepare_socket_path(path: &Path, ty: SockType) -> Result<DirLock, ListenError> {
    // Before anything is created: bind would fail only after the
    // directory had been made.
    check_socket_path(path)?;
    let dir = socket_dir(path);
    // The way there first: nothing is created under a path others control.
    check_path_to(&dir)?;
    ensure_private_dir(&dir)?;
    let lock = lock_dir(&dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(ListenError::NotASocket(path.to_owned()));
            }
            match probe(path, ty) {
                Ok(()) => Err(ListenError::InUse(path.to_owned())),
                Err(nix::errno::Errno::ECONNREFUSED) => {
                    tracing::info!(path = %path.display(), "removing leftover socket file (nobody listens on it)");
                    std::fs::remove_file(path)
                        .map_err(io_err(format!("remove leftover socket {}", path.display())))?;
                    Ok(lock)
                }
                // A full backlog: someone listens.
                Err(nix::errno::Errno::EAGAIN) => Err(ListenError::InUse(path.to_owned())),
                Err(e) => Err(ListenError::Io {
                    what: format!("probe existing socket {}", path.display()),
                    source: e.into(),
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(lock),
        Err(e) => Err(io_err(format!("stat {}", path.display()))(e)),
    }
}

/// A non-blocking `connect` to the socket at `path`.
fn probe(path: &Path, ty: SockType) -> Result<(), nix::errno::Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)
}

/// A bound, listening socket that is not served yet.
///
/// Creating one needs no async runtime, so that the daemon can bind its
/// sockets, confine itself, and only then start its (multi-threaded)
/// runtime; [`activate`](Listener::activate) registers the socket with that
/// runtime. A filesystem socket that this daemon created is removed when the
/// `Listener` (or the [`ActiveListener`] made from it) is dropped (clean
/// shutdown), unless another process has replaced it since.
#[derive(Debug)]
pub struct Listener {
    inner: StdListener,
    addr: ListenAddr,
    bound: Option<BoundPath>,
}

/// A listening socket registered with a tokio runtime, made by
/// [`Listener::activate`]. Its socket file, if the daemon created one, is
/// removed when it is dropped (unless another process has replaced it).
#[derive(Debug)]
pub struct ActiveListener {
    inner: UnixListener,
    addr: ListenAddr,
    bound: Option<BoundPath>,
}

impl ActiveListener {
    /// The tokio listener.
    pub fn listener(&self) -> &UnixListener {
        &self.inner
    }

    /// Where it listens.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// The path of the socket file this listener created and will remove,
    /// if any.
    pub fn bound_path(&self) -> Option<&Path> {
        self.bound.as_ref().map(BoundPath::path)
    }
}

impl Listener {
    /// Where it listens.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// Registers the socket with the tokio runtime this is called in, to
    /// serve it ([`Server::serve`](crate::Server::serve)).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::net::UnixListener::from_std`).
    pub fn activate(self) -> Result<ActiveListener, ListenError> {
        let Listener { inner, addr, bound } = self;
        let inner =
            UnixListener::from_std(inner).map_err(io_err("register listener with tokio"))?;
        Ok(ActiveListener { inner, addr, bound })
    }

    fn from_std(std: StdListener, bound: Option<BoundPath>) -> Result<Listener, ListenError> {
        std.set_nonblocking(true)
            .map_err(io_err("set_nonblocking"))?;
        let addr = std
            .local_addr()
            .map(|a| ListenAddr::of(&a))
            .unwrap_or(ListenAddr::Unnamed);
        Ok(Listener {
            inner: std,
            addr,
            bound,
        })
    }

    /// Binds a filesystem socket at `path`.
    ///
    /// The directory is created (mode 0700) if missing; an existing one must
    /// be owned by this user and not writable by group or others, and the
    /// directories and symlinks on the way to it must be ones no other user
    /// controls ([`ListenError::UnsafePath`]). A leftover socket file is
    /// removed only if connecting to it is refused (nobody listens); anything
    /// else at `path` is an error. The directory is locked from that check
    /// to `listen`, so this may block the thread up to 5 s while another
    /// process binds there (call it before starting an async runtime, or
    /// from a blocking task). `mode` is applied to the socket file (0600 unless other users
    /// are admitted).
    ///
    /// When `mode` admits other users, they must also be able to enter the
    /// directory: one the daemon creates is made 0711 (others may traverse,
    /// not list it), and an existing one that neither group nor others may
    /// traverse gets a warning saying what to run.
    pub fn bind_path(path: &Path, mode: u32) -> Result<Listener, ListenError> {
        let dir = socket_dir(path);
        let dir_existed = std::fs::symlink_metadata(&dir).is_ok();
        let _lock = prepare_socket_path(path, SockType::Stream)?;
        if mode & 0o077 != 0 {
            if !dir_existed {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                    .map_err(io_err(format!("chmod {}", dir.display())))?;
            }
            warn_if_closed_to_others(&dir);
        }
        let std = StdListener::bind(path).map_err(io_err(format!("bind {}", path.display())))?;
        let bound = BoundPath::new(path).map_err(io_err(format!("stat {}", path.display())))?;
        let listener = Listener::from_std(std, Some(bound))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        Ok(listener)
    }

    /// Gives the socket file to group `gid` (for `--allow-gid`: clients of
    /// that group need it to reach the socket). A process may do this for
    /// a group it belongs to, or as root.
    pub fn set_group(&self, gid: u32) -> Result<(), ListenError> {
        let Some(bound) = &self.bound else {
            return Ok(());
        };
        std::os::unix::fs::lchown(bound.path(), None, Some(gid)).map_err(io_err(format!(
            "give {} to group {gid} (the daemon must be root or a member of that group)",
            bound.path().display()
        )))
    }

    /// Binds an abstract socket `name` (without the leading NUL).
    ///
    /// Abstract names have no permissions, are visible to every process in
    /// `/proc/net/unix`, and anyone can bind the name once this daemon exits:
    /// clients must not trust the name alone (pin the server's key).
    pub fn bind_abstract(name: &str) -> Result<Listener, ListenError> {
        check_abstract_name(name)?;
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

    /// The path of the socket file this listener created and will remove,
    /// if any.
    pub fn bound_path(&self) -> Option<&Path> {
        self.bound.as_ref().map(BoundPath::path)
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

/// Checks the way to `dir`: every symlink on the path as given, and every
/// directory above the real `dir`, must belong to root or to us, and a
/// directory others may write to must be sticky (like `/tmp`). Otherwise
/// another user could rename `dir` away or re-point a link, and clients
/// dialing the path would reach their socket instead.
///
/// In a user namespace that does not map root (systemd's `PrivateUsers=`,
/// rootless containers), root's files show as owned by the overflow uid;
/// that uid then counts as root.
fn check_path_to(dir: &Path) -> Result<(), ListenError> {
    let uid = nix::unistd::geteuid().as_raw();
    let unmapped_root = unmapped_root_uid();
    let trusted = |owner: u32| owner == 0 || owner == uid || Some(owner) == unmapped_root;
    let unsafe_path = |ancestor: &Path, problem: String| ListenError::UnsafePath {
        dir: dir.to_owned(),
        ancestor: ancestor.to_owned(),
        problem,
    };
    let absolute =
        std::path::absolute(dir).map_err(io_err(format!("resolve {}", dir.display())))?;
    for a in absolute.ancestors() {
        if let Ok(meta) = std::fs::symlink_metadata(a)
            && meta.file_type().is_symlink()
            && !trusted(meta.uid())
        {
            return Err(unsafe_path(
                a,
                format!("a symlink owned by uid {}", meta.uid()),
            ));
        }
    }
    // The directory itself is checked by `ensure_private_dir`; if it does
    // not exist yet, everything from its parent up is checked.
    let (real, skip) = match std::fs::canonicalize(dir) {
        Ok(real) => (real, 1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match absolute.parent().map(std::fs::canonicalize) {
                Some(Ok(parent)) => (parent, 0),
                // No parent either: creating the directory will fail and
                // say so.
                _ => return Ok(()),
            }
        }
        Err(e) => return Err(io_err(format!("resolve {}", dir.display()))(e)),
    };
    for a in real.ancestors().skip(skip) {
        let meta = std::fs::metadata(a).map_err(io_err(format!("stat {}", a.display())))?;
        if !trusted(meta.uid()) {
            return Err(unsafe_path(a, format!("owned by uid {}", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Err(unsafe_path(
                a,
                format!(
                    "writable by others and not sticky (mode {:04o})",
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// The uid that files of unmapped users (root among them) show as, if this
/// process is in a user namespace that does not map root; `None` in the
/// initial namespace or one that maps root.
fn unmapped_root_uid() -> Option<u32> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    let maps_root = map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // `inside outside count`: outside uid 0 is mapped.
        f.len() == 3 && f[1] == 0 && f[2] > 0
    });
    if maps_root {
        return None;
    }
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Warns if `dir` or one of its ancestors can be entered neither by its
/// group nor by others: then other users cannot reach a socket in it.
fn warn_if_closed_to_others(dir: &Path) {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return;
    };
    for d in dir.ancestors() {
        if let Ok(meta) = std::fs::metadata(d)
            && meta.mode() & 0o011 == 0
        {
            tracing::warn!(
                "other users are admitted but cannot enter {} (mode {:04o}), so they cannot \
                 reach the socket: run `chmod o+x {}` (or g+x for a group that owns it), or \
                 put the socket in a directory they can enter (--socket)",
                d.display(),
                meta.mode() & 0o7777,
                d.display()
            );
            return;
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
