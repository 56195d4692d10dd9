//! Taking ownership of fds inherited from the parent process, and handing
//! fds down to child processes.
//!
//! Inherited fds arrive as bare numbers (`LISTEN_FDS` from systemd, or a
//! variable such as `OCAPN_UDS_INTRO_FD`). Owning a number is only sound if
//! nothing else in the process owns it: call these functions early, at
//! startup. Each number can be claimed once per process; a second claim is
//! an error rather than a second owner.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::sys;

/// Why an inherited fd could not be taken.
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
    /// `LISTEN_FDS`/`LISTEN_PID` are malformed.
    #[error("socket activation: {0}")]
    Activation(String),
    /// A system call failed.
    #[error("inherited fd {fd}: {source}")]
    Io {
        /// The number.
        fd: RawFd,
        /// The error.
        source: io::Error,
    },
}

static CLAIMED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

fn claim(fd: RawFd, var: &str) -> Result<OwnedFd, InheritError> {
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    if claimed.contains(&fd) {
        return Err(InheritError::AlreadyClaimed(fd));
    }
    if !sys::is_open(fd) {
        return Err(InheritError::NotOpen {
            var: var.to_owned(),
            fd,
        });
    }
    // SAFETY: the fd is open, and the claimed set guarantees this module
    // hands each inherited number out once; the functions' contract (call at
    // startup) rules out other owners of inherited numbers.
    let owned = unsafe { sys::adopt(fd) }.map_err(|source| InheritError::Io { fd, source })?;
    claimed.insert(fd);
    Ok(owned)
}

/// Takes the fd whose number is in the environment variable `var` (for
/// example `OCAPN_UDS_INTRO_FD`), marking it close-on-exec so it does not
/// leak into further children. `Ok(None)` if the variable is not set.
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
    claim(fd, var).map(Some)
}

/// The sockets passed by systemd socket activation: `LISTEN_FDS` fds from
/// number 3, if `LISTEN_PID` is this process. Empty when not activated.
/// The fds are marked close-on-exec.
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
    (3..3 + n).map(|fd| claim(fd, "LISTEN_FDS")).collect()
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
