//! What a call to `confine` put in force.

use std::fmt;
use std::path::PathBuf;

use crate::SandboxMode;

/// The state of Landlock after a call to
/// [`Policy::confine`](crate::Policy::confine).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Landlock {
    /// Not attempted ([`SandboxMode::Off`]).
    Off,
    /// The kernel has no Landlock (not built in).
    NotBuiltIn,
    /// The kernel has Landlock but it is not enabled (it is missing from the
    /// `lsm=` boot parameter).
    NotEnabled,
    /// Landlock's system calls failed as they do on a kernel without
    /// Landlock, and a seccomp filter is in force for this process
    /// (`Seccomp: 2` in `/proc/self/status`). Most likely the filter (a
    /// container runtime's, a service manager's `SystemCallFilter=`) refuses
    /// them; the kernel may also lack Landlock. Allowing
    /// `landlock_create_ruleset`, `landlock_add_rule` and
    /// `landlock_restrict_self` in the filter tells the two apart.
    Filtered,
    /// The kernel refused the domain ([`SandboxMode::Auto`] only; `Require`
    /// returns an error instead). Domains applied earlier stay in force.
    Failed(String),
    /// A Landlock domain is in force for this process, using this ABI
    /// version (the newest that both the kernel and this build know).
    Enforced {
        /// The Landlock ABI version in use.
        abi: u32,
    },
}

impl Landlock {
    /// The ABI version of the domain in force, if one was applied.
    pub fn abi(&self) -> Option<u32> {
        match self {
            Landlock::Enforced { abi } => Some(*abi),
            _ => None,
        }
    }
}

/// How much of the filesystem the process can still reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// No new access: opening, creating, removing (except beneath the
    /// policy's removal directories), renaming, linking, truncating and
    /// executing files all fail with `EACCES` (Landlock ABI 3 or newer).
    Denied,
    /// As `Denied`, except that `truncate(2)` on a path is still possible
    /// (Landlock ABI 1 and 2 do not mediate it).
    Partial,
    /// No Landlock domain was applied: the filesystem is as reachable as
    /// before.
    Unrestricted,
}

impl Filesystem {
    fn as_str(self) -> &'static str {
        match self {
            Filesystem::Denied => "denied",
            Filesystem::Partial => "partial",
            Filesystem::Unrestricted => "unrestricted",
        }
    }
}

/// What a call to [`Policy::confine`](crate::Policy::confine) put in force.
///
/// It describes the domain added by that call, and the process's
/// `no_new_privs` flag as read back from the kernel. Restrictions applied
/// earlier (by an earlier call, or inherited from the parent) stay in force
/// whatever this report says.
///
/// `Display` gives one line of `key=value` items, for a log line; see
/// [`status_line`](Report::status_line) for the `sandbox: ...` form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The mode that was asked for.
    pub mode: SandboxMode,
    /// Whether `no_new_privs` is set on the process (read back with
    /// `prctl(PR_GET_NO_NEW_PRIVS)`; may be inherited even in mode `off`).
    pub no_new_privs: bool,
    /// The Landlock domain.
    pub landlock: Landlock,
    /// How much of the filesystem is still reachable.
    pub filesystem: Filesystem,
    /// Directories beneath which files may still be removed (the parents of
    /// the policy's removable files); empty unless the filesystem is
    /// restricted.
    pub removable: Vec<PathBuf>,
    /// Whether `connect()`/`sendmsg()` to pathname Unix sockets is mediated
    /// (Landlock ABI 9 or newer): then only sockets beneath
    /// [`connectable`](Report::connectable) can be reached. When `false`,
    /// every pathname socket the process's uid may write to can be reached,
    /// including after the file was re-created by a restarted server.
    pub unix_connect_restricted: bool,
    /// Directories beneath which pathname sockets may be connected to, when
    /// [`unix_connect_restricted`](Report::unix_connect_restricted).
    pub connectable: Vec<PathBuf>,
    /// Whether binding and connecting TCP sockets is denied (ABI 4 or newer).
    pub tcp_denied: bool,
    /// Whether binding UDP sockets and sending UDP datagrams is denied (ABI
    /// 10 or newer).
    pub udp_denied: bool,
    /// Whether connecting to abstract Unix sockets created outside the
    /// domain is denied (`EPERM`; ABI 6 or newer). Incoming connections to
    /// the process's own abstract sockets are not affected.
    pub abstract_unix_scoped: bool,
    /// Whether signalling processes outside the domain is denied (`EPERM`;
    /// ABI 6 or newer). Signals sent to the process are not affected.
    pub signals_scoped: bool,
}

impl Report {
    pub(crate) fn unconfined(mode: SandboxMode, no_new_privs: bool, landlock: Landlock) -> Report {
        Report {
            mode,
            no_new_privs,
            landlock,
            filesystem: Filesystem::Unrestricted,
            removable: Vec::new(),
            unix_connect_restricted: false,
            connectable: Vec::new(),
            tcp_denied: false,
            udp_denied: false,
            abstract_unix_scoped: false,
            signals_scoped: false,
        }
    }

    /// The line for a status display: `sandbox: ` followed by this report's
    /// `Display`.
    pub fn status_line(&self) -> String {
        format!("sandbox: {self}")
    }
}

fn paths(list: &[PathBuf]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Report {
    /// `mode=auto landlock-abi=7 filesystem=denied remove-in=/run/user/1000/ocapn
    /// unix-connect=any network=denied(tcp) scope=abstract-unix,signal no-new-privs=yes`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mode={} landlock-abi=", self.mode)?;
        match &self.landlock {
            Landlock::Enforced { abi } => write!(f, "{abi}")?,
            Landlock::Off => f.write_str("none(off)")?,
            Landlock::NotBuiltIn => f.write_str("none(not-built-in)")?,
            Landlock::NotEnabled => f.write_str("none(not-enabled)")?,
            Landlock::Filtered => f.write_str("none(seccomp-filtered)")?,
            Landlock::Failed(_) => f.write_str("none(refused)")?,
        }
        write!(f, " filesystem={}", self.filesystem.as_str())?;
        if self.filesystem != Filesystem::Unrestricted {
            write!(f, " remove-in={}", paths(&self.removable))?;
        }
        if self.unix_connect_restricted {
            write!(f, " unix-connect=beneath({})", paths(&self.connectable))?;
        } else {
            f.write_str(" unix-connect=any")?;
        }
        match (self.tcp_denied, self.udp_denied) {
            (false, false) => f.write_str(" network=unrestricted")?,
            (true, false) => f.write_str(" network=denied(tcp)")?,
            (false, true) => f.write_str(" network=denied(udp)")?,
            (true, true) => f.write_str(" network=denied(tcp,udp)")?,
        }
        match (self.abstract_unix_scoped, self.signals_scoped) {
            (false, false) => f.write_str(" scope=none")?,
            (true, false) => f.write_str(" scope=abstract-unix")?,
            (false, true) => f.write_str(" scope=signal")?,
            (true, true) => f.write_str(" scope=abstract-unix,signal")?,
        }
        write!(
            f,
            " no-new-privs={}",
            if self.no_new_privs { "yes" } else { "no" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_item_in_a_fixed_order() {
        let mut r = Report::unconfined(SandboxMode::Off, false, Landlock::Off);
        assert_eq!(
            r.to_string(),
            "mode=off landlock-abi=none(off) filesystem=unrestricted unix-connect=any \
             network=unrestricted scope=none no-new-privs=no"
        );
        r.mode = SandboxMode::Require;
        r.landlock = Landlock::Enforced { abi: 9 };
        r.filesystem = Filesystem::Denied;
        r.removable = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        r.unix_connect_restricted = true;
        r.connectable = vec![PathBuf::from("/c")];
        r.tcp_denied = true;
        r.abstract_unix_scoped = true;
        r.signals_scoped = true;
        r.no_new_privs = true;
        assert_eq!(
            r.status_line(),
            "sandbox: mode=require landlock-abi=9 filesystem=denied remove-in=/a,/b \
             unix-connect=beneath(/c) network=denied(tcp) scope=abstract-unix,signal \
             no-new-privs=yes"
        );
        assert_eq!(r.landlock.abi(), Some(9));
        assert_eq!(Landlock::NotEnabled.abi(), None);
    }
}
