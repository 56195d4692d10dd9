//! Taking ownership of fds inherited from the parent process, and handing
//! fds down to child processes.
//!
//! Inherited fds arrive as bare numbers (`LISTEN_FDS` from systemd, or a
//! variable such as `OCAPN_UDS_INTRO_FD`). A number is only safe to own if
//! nothing else in the process owns it: owning it twice means one owner
//! closes the other's descriptor (or, worse, whatever reuses the number).
//!
//! # What these functions check, and what they cannot
//!
//! [`take_fd_from_env`] and [`listen_fds`] are safe functions, so they only
//! take a number they can verify. Before taking ownership they inspect the
//! fd through a *borrow* and refuse, **leaving it open**, anything that is
//!
//! * not open, or already taken by an earlier call in this process;
//! * not the kind of socket expected (a connected AF_UNIX stream socket, or
//!   for socket activation a listening one): a stale variable naming a log
//!   file or an epoll fd of this process is reported, never closed;
//! * marked close-on-exec: an inherited fd is not (it would not have
//!   survived `exec` otherwise), while every fd that Rust's standard library,
//!   tokio or this crate opens is, and so are the fds that `sd_listen_fds()`
//!   hands out. Such an fd was opened or claimed by this process.
//!
//! What remains is the caller's part of the contract: **call these early, at
//! startup, before anything else could adopt the same inherited number**
//! (for example C code reading the same variable without marking the fd
//! close-on-exec). Each number is handed out once per process; a second
//! claim is an error rather than a second owner. A socket inherited on
//! purpose and left unclaimed is therefore the only thing these functions
//! can take.
//!
//! Making them `unsafe fn` would move that contract to every caller, but the
//! callers (a netlayer started by its parent, a daemon started by systemd)
//! can vouch for it no better than these checks do, and the workspace keeps
//! `unsafe` in this crate alone.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::check::{SocketCheckError, check_listening_socket, check_stream_socket};
use crate::sys;

/// Why an inherited fd could not be taken. Whatever the reason, an fd that
/// was not taken is left open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InheritError {
    /// The variable is not a decimal fd number.
    #[error("{var}={value:?} is not a file descriptor number")]
    NotANumber {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
    },
    /// 0, 1 and 2 are stdin, stdout and stderr.
    #[error("{var}={fd} names a standard stream (0, 1, 2), not an inherited socket")]
    StandardStream {
        /// The variable.
        var: String,
        /// The number.
        fd: RawFd,
    },
    /// Nothing is open at that number.
    #[error(
        "{var}={fd}, but fd {fd} is not open in this process: start it with the fd inherited \
         (not close-on-exec), or unset {var}"
    )]
    NotOpen {
        /// The variable.
        var: String,
        /// The number.
        fd: RawFd,
    },
    /// The number was already taken by an earlier call.
    #[error("fd {0} was already taken by this process")]
    AlreadyClaimed(RawFd),
    /// The fd is not the socket expected: the variable is stale or wrong.
    #[error(
        "{var} names fd {fd}, which is {}, not {expected}; it was left open",
        .found.found()
    )]
    WrongKind {
        /// The variable.
        var: String,
        /// The number.
        fd: RawFd,
        /// What was expected ("a connected Unix stream socket", "a
        /// listening Unix stream socket").
        expected: &'static str,
        /// What the fd is instead.
        found: SocketCheckError,
    },
    /// The fd is close-on-exec, so it was not inherited: something in this
    /// process opened or claimed it.
    #[error(
        "{var} names fd {fd}, which is close-on-exec: this process opened or claimed it, it was \
         not inherited; it was left open"
    )]
    NotInherited {
        /// The variable.
        var: String,
        /// The number.
        fd: RawFd,
    },
    /// `LISTEN_FDS`/`LISTEN_PID` are malformed.
    #[error("socket activation: {0}")]
    Activation(String),
    /// A system call failed while taking the fd (marking it close-on-exec).
    /// Nothing was taken: this fd and any others of the same call are left
    /// open and unclaimed (those handled before it stay marked
    /// close-on-exec).
    #[error("inherited fd {fd}: {source}")]
    Io {
        /// The number.
        fd: RawFd,
        /// The error.
        source: io::Error,
    },
}

static CLAIMED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// What an inherited fd must be.
#[derive(Clone, Copy)]
enum Expect {
    Connected,
    Listening,
}

impl Expect {
    fn check(self, fd: BorrowedFd<'_>) -> Result<(), SocketCheckError> {
        match self {
            Expect::Connected => check_stream_socket(fd),
            Expect::Listening => check_listening_socket(fd),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Expect::Connected => "a connected Unix stream socket",
            Expect::Listening => "a listening Unix stream socket",
        }
    }
}

/// Checks, through a borrow, that `fd` may be taken (see the module docs).
/// Touches nothing.
fn verify(
    claimed: &BTreeSet<RawFd>,
    fd: RawFd,
    var: &str,
    expect: Expect,
) -> Result<(), InheritError> {
    if claimed.contains(&fd) {
        return Err(InheritError::AlreadyClaimed(fd));
    }
    let not_open = || InheritError::NotOpen {
        var: var.to_owned(),
        fd,
    };
    sys::inspect_raw(fd, |b| expect.check(b))
        .ok_or_else(not_open)?
        .map_err(|found| InheritError::WrongKind {
            var: var.to_owned(),
            fd,
            expected: expect.name(),
            found,
        })?;
    let flags = sys::fd_flags(fd).ok_or_else(not_open)?;
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(InheritError::NotInherited {
            var: var.to_owned(),
            fd,
        });
    }
    Ok(())
}

/// Takes ownership of `fds`, which [`verify`] accepted under the same lock:
/// all of them, or none (a failure leaves every one open and unclaimed).
fn adopt_all(claimed: &mut BTreeSet<RawFd>, fds: &[RawFd]) -> Result<Vec<OwnedFd>, InheritError> {
    let mut owned = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: `fd` is open, not close-on-exec (so not opened by Rust
        // code of this process, nor claimed by sd_listen_fds), the kind of
        // socket the caller expects, and not handed out before by this
        // module (checked under the lock still held); the functions'
        // documented contract (call at startup, before anything else adopts
        // inherited numbers) rules out other owners.
        match unsafe { sys::adopt(fd) } {
            Ok(taken) => owned.push(taken),
            Err(source) => {
                // Give back the ones taken so far: refused fds stay open.
                for taken in owned {
                    let _ = taken.into_raw_fd();
                }
                return Err(InheritError::Io { fd, source });
            }
        }
    }
    claimed.extend(fds);
    Ok(owned)
}

/// Takes the connected AF_UNIX stream socket whose number is in the
/// environment variable `var` (for example `OCAPN_UDS_INTRO_FD`), marking it
/// close-on-exec so it does not leak into further children. `Ok(None)` if
/// the variable is not set.
///
/// Anything else at that number (a file, a pipe, a listening socket, an fd
/// this process opened itself) is refused and **left open**; see the
/// [module docs](self) for what is checked and the caller's part of the
/// contract (call it early).
///
/// The variable itself is left in the environment; a process that starts
/// children of its own should remove it from theirs
/// (`Command::env_remove`), since the number means nothing there.
pub fn take_fd_from_env(var: &str) -> Result<Option<OwnedFd>, InheritError> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(None);
    };
    let value = value.to_string_lossy().into_owned();
    let fd: RawFd = value.trim().parse().map_err(|_| InheritError::NotANumber {
        var: var.to_owned(),
        value: value.clone(),
    })?;
    if fd < 0 {
        return Err(InheritError::NotANumber {
            var: var.to_owned(),
            value,
        });
    }
    if fd <= 2 {
        return Err(InheritError::StandardStream {
            var: var.to_owned(),
            fd,
        });
    }
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    verify(&claimed, fd, var, Expect::Connected)?;
    let mut owned = adopt_all(&mut claimed, &[fd])?;
    Ok(owned.pop())
}

/// The listening sockets passed by systemd socket activation: `LISTEN_FDS`
/// fds from number 3, if `LISTEN_PID` is this process. Empty when not
/// activated. The fds are marked close-on-exec.
///
/// Every one must be a listening AF_UNIX stream socket that this process
/// has not claimed; if one is not, none is taken (all are left open) and the
/// error names the first that failed. See the [module docs](self).
pub fn listen_fds() -> Result<Vec<OwnedFd>, InheritError> {
    let Some(pid) = std::env::var_os("LISTEN_PID") else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .to_string_lossy()
        .trim()
        .parse()
        .map_err(|_| InheritError::Activation(format!("LISTEN_PID={pid:?} is not a pid")))?;
    if pid != std::process::id() {
        // Meant for another process (a parent that exported it to us).
        return Ok(Vec::new());
    }
    let n = std::env::var("LISTEN_FDS").unwrap_or_default();
    let n: RawFd = n
        .trim()
        .parse()
        .map_err(|_| InheritError::Activation(format!("LISTEN_FDS={n:?} is not a count")))?;
    if !(0..=1024).contains(&n) {
        return Err(InheritError::Activation(format!(
            "LISTEN_FDS={n} is out of range"
        )));
    }
    let fds: Vec<RawFd> = (3..3 + n).collect();
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    for &fd in &fds {
        verify(&claimed, fd, "LISTEN_FDS", Expect::Listening)?;
    }
    adopt_all(&mut claimed, &fds)
}

/// A duplicate of `fd` that is **not** close-on-exec, so that a child
/// process started next (`std::process::Command::spawn`) inherits it. Pass
/// its number (`as_raw_fd()`) to the child, for example in an environment
/// variable, and drop the duplicate once the child is spawned.
///
/// Any child spawned while the duplicate is open inherits it too, so keep
/// the window short.
pub fn inheritable(fd: impl AsFd) -> io::Result<OwnedFd> {
    sys::dup_inheritable(fd.as_fd())
}
