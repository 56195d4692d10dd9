//! The policy and the one call that applies it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    PathFdError, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::report::{Filesystem, Landlock, Report};
use crate::{SandboxError, SandboxMode};

/// The newest Landlock ABI this crate has been written and tested against;
/// in mode `auto` and `require` every right it defines is handled when the
/// kernel has it.
const NEWEST: ABI = ABI::V10;

/// What the confined process may still do, beyond using the file
/// descriptors it already holds.
///
/// The default policy is the strictest: no filesystem access at all, TCP and
/// UDP denied where the kernel can, abstract-socket and signal scoping on.
/// Loosen it only where the process needs it:
///
/// * [`allow_remove`](Policy::allow_remove) for socket files that the
///   process removes at shutdown;
/// * [`allow_connect`](Policy::allow_connect) for intro servers that the
///   process reconnects to by path;
/// * [`scope_abstract_unix(false)`](Policy::scope_abstract_unix) when it
///   must connect to an abstract socket (`@name`) created by a process
///   outside its domain, such as an intro server that may restart;
/// * [`scope_signals(false)`](Policy::scope_signals) when it must signal a
///   process started before confinement (for example a child it kills at
///   shutdown);
/// * [`deny_network(false)`](Policy::deny_network) when it uses TCP or UDP.
#[derive(Debug, Clone)]
pub struct Policy {
    remove: Vec<PathBuf>,
    connect: Vec<PathBuf>,
    scope_abstract_unix: bool,
    scope_signals: bool,
    deny_network: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            remove: Vec::new(),
            connect: Vec::new(),
            scope_abstract_unix: true,
            scope_signals: true,
            deny_network: true,
        }
    }
}

/// The directory a rule for `file` goes on: its parent (`.` for a bare
/// name).
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn push_unique(list: &mut Vec<PathBuf>, dir: PathBuf) {
    if !list.contains(&dir) {
        list.push(dir);
    }
}

impl Policy {
    /// The strictest policy (same as `Policy::default()`).
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Let the process remove `file` (for example its listening socket) after
    /// confinement.
    ///
    /// Landlock rules name directories, not files: this grants
    /// `LANDLOCK_ACCESS_FS_REMOVE_FILE` beneath `file`'s parent directory,
    /// so every file in that directory and below it can be removed (nothing
    /// can be created, renamed or opened there). Keep such sockets in a
    /// private directory. The directory is opened by
    /// [`confine`](Policy::confine), before confining, and must exist then.
    pub fn allow_remove(mut self, file: impl AsRef<Path>) -> Policy {
        push_unique(&mut self.remove, parent_dir(file.as_ref()));
        self
    }

    /// Let the process connect to the pathname socket `socket` (and to any
    /// other socket beneath its parent directory) after confinement, also
    /// after a restarted server has re-created the socket file.
    ///
    /// Landlock mediates `connect()` to pathname sockets only from ABI 9
    /// (`LANDLOCK_ACCESS_FS_RESOLVE_UNIX`); on older kernels a confined
    /// process can connect to every pathname socket its uid may write to,
    /// whether or not this is called. Call it for every intro server the
    /// process reconnects to by path, so that it keeps working on newer
    /// kernels.
    pub fn allow_connect(mut self, socket: impl AsRef<Path>) -> Policy {
        push_unique(&mut self.connect, parent_dir(socket.as_ref()));
        self
    }

    /// Whether to deny connecting to abstract Unix sockets (`@name`) created
    /// by processes outside the domain (default: yes; Landlock ABI 6).
    ///
    /// Turn it off in a process that must (re)connect to an abstract intro
    /// server, which is never in its domain. Scoping restricts only the
    /// confined process's own connections: unconfined clients can still
    /// connect to an abstract socket the confined process listens on.
    pub fn scope_abstract_unix(mut self, yes: bool) -> Policy {
        self.scope_abstract_unix = yes;
        self
    }

    /// Whether to deny sending signals to processes outside the domain
    /// (default: yes; Landlock ABI 6).
    ///
    /// Processes started before confinement (a child started by `spawn`)
    /// are outside the domain: a process that must signal them, for example
    /// to stop them at shutdown, needs this off. Signals sent *to* the
    /// confined process (`SIGTERM` from a service manager) are not affected.
    pub fn scope_signals(mut self, yes: bool) -> Policy {
        self.scope_signals = yes;
        self
    }

    /// Whether to deny binding and connecting TCP sockets (Landlock ABI 4)
    /// and binding UDP sockets and sending UDP datagrams (ABI 10) (default:
    /// yes). Unix sockets are not affected.
    pub fn deny_network(mut self, yes: bool) -> Policy {
        self.deny_network = yes;
        self
    }

    /// Confines the calling process according to this policy and `mode`,
    /// and says what is in force.
    ///
    /// In order: checks that the process has a single thread, opens the
    /// directories of the policy's rules, sets `no_new_privs`
    /// (`prctl(PR_SET_NO_NEW_PRIVS)`), then creates a Landlock domain that
    /// handles every filesystem right the kernel knows (and TCP/UDP rights
    /// unless [`deny_network(false)`](Policy::deny_network)), adds the
    /// removal and connection rules and the requested scopes, and restricts
    /// the process with it. From then on the process, and every thread and
    /// child it creates, can no longer open, create, remove, rename, link,
    /// truncate or execute files except as the rules allow; file
    /// descriptors it already holds keep working.
    ///
    /// **Call it on the main thread before any other thread exists** —
    /// before building a multi-threaded async runtime, and after everything
    /// that needs the filesystem (keys read, sockets bound, children
    /// started). Landlock and `no_new_privs` apply to the calling thread and
    /// to threads it creates later; threads that already exist would stay
    /// unconfined, so a process with more than one thread is refused in
    /// every mode except `Off`.
    ///
    /// * With [`SandboxMode::Off`] nothing is applied; the report gives the
    ///   current `no_new_privs` state.
    /// * With [`SandboxMode::Auto`] what the kernel supports is applied. A
    ///   kernel without Landlock (or one that refuses the domain) still gets
    ///   `no_new_privs`, and the report says so; a warning is logged for
    ///   each requested restriction that is not in force.
    /// * With [`SandboxMode::Require`] the call fails with
    ///   [`SandboxError::Unsupported`], having applied nothing, unless the
    ///   kernel can enforce the whole policy: filesystem (Landlock ABI 3),
    ///   TCP (ABI 4) if the network is denied, scopes (ABI 6) if requested;
    ///   and with [`SandboxError::Landlock`] if the kernel then refuses the
    ///   domain. Rights of newer ABIs (pathname-socket connects at 9, UDP at
    ///   10) are added when the kernel has them.
    ///
    /// Every mode except `Off` first refuses a process with more than one
    /// thread ([`SandboxError::OtherThreads`]) and a policy directory that
    /// cannot be opened ([`SandboxError::Directory`]), before anything is
    /// applied. The first call keeps `/proc/self/task` open (one
    /// close-on-exec fd) so that later calls can still count threads.
    ///
    /// The result is logged (tracing, target `uds_sandbox`) at info level.
    pub fn confine(&self, mode: SandboxMode) -> Result<Report, SandboxError> {
        if mode == SandboxMode::Off {
            let report = Report::unconfined(mode, no_new_privs_now(), Landlock::Off);
            tracing::info!("sandbox off: {report}");
            return Ok(report);
        }
        let threads = thread_count().map_err(|source| SandboxError::ThreadCount { source })?;
        if threads != 1 {
            return Err(SandboxError::OtherThreads { threads });
        }
        let remove = open_dirs(&self.remove)?;
        let connect = open_dirs(&self.connect)?;

        let restricted = self.restrict(mode, remove, connect);
        let status = match restricted {
            Ok(status) => Ok(status),
            Err(Failure::Unsupported { what, min_abi }) => {
                return Err(SandboxError::Unsupported { what, min_abi });
            }
            Err(Failure::NoNewPrivs(source)) => return Err(SandboxError::NoNewPrivs { source }),
            Err(Failure::Landlock(source)) => Err(source),
        };
        let no_new_privs = no_new_privs_now();
        let report = match status {
            Ok(status) => self.report(mode, no_new_privs, &status),
            Err(source) if mode == SandboxMode::Require => {
                return Err(SandboxError::Landlock { source });
            }
            Err(source) => {
                Report::unconfined(mode, no_new_privs, Landlock::Failed(source.to_string()))
            }
        };
        if mode == SandboxMode::Require {
            // The compatibility checks above make these impossible; they are
            // checked anyway so that `require` can never report less.
            if report.landlock.abi().is_none() || !report.no_new_privs {
                return Err(SandboxError::Landlock {
                    source: format!("the kernel did not enforce the domain: {report}").into(),
                });
            }
        } else {
            for missing in self.shortfalls(&report) {
                tracing::warn!("sandbox: not in force: {missing}");
            }
        }
        tracing::info!("sandbox applied: {report}");
        Ok(report)
    }

    /// Builds the ruleset and restricts the process. `Unsupported` failures
    /// happen before anything is applied; `no_new_privs` is set right after
    /// those checks, before the Landlock domain is created (so `auto` keeps
    /// it even if that fails).
    fn restrict(
        &self,
        mode: SandboxMode,
        remove: Vec<PathFd>,
        connect: Vec<PathFd>,
    ) -> Result<RestrictionStatus, Failure> {
        let required = if mode == SandboxMode::Require {
            CompatLevel::HardRequirement
        } else {
            CompatLevel::BestEffort
        };
        let need = |what: &'static str, min_abi: u32| {
            move |e: landlock::RulesetError| match mode {
                SandboxMode::Require => Failure::Unsupported { what, min_abi },
                _ => Failure::Landlock(e.into()),
            }
        };
        let mut ruleset = Ruleset::default()
            .set_compatibility(required)
            .handle_access(AccessFs::from_all(ABI::V1))
            .map_err(need("denying filesystem access", 1))?
            .handle_access(AccessFs::Truncate)
            .map_err(need("denying truncate(2)", 3))?;
        if self.deny_network {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(ABI::V4))
                .map_err(need("denying TCP", 4))?;
        }
        if self.scope_abstract_unix {
            ruleset = ruleset
                .scope(Scope::AbstractUnixSocket)
                .map_err(need("abstract Unix socket scoping", 6))?;
        }
        if self.scope_signals {
            ruleset = ruleset
                .scope(Scope::Signal)
                .map_err(need("signal scoping", 6))?;
        }
        // From here on every step may fail for reasons other than a missing
        // feature (no memory, no fd): no_new_privs first, so that `auto`
        // keeps it whatever happens to the Landlock domain.
        nix::sys::prctl::set_no_new_privs().map_err(|e| Failure::NoNewPrivs(e.into()))?;
        // Whatever newer kernels add, when this one has it.
        ruleset = ruleset
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(NEWEST))
            .map_err(|e| Failure::Landlock(e.into()))?;
        if self.deny_network {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(NEWEST))
                .map_err(|e| Failure::Landlock(e.into()))?;
        }
        let mut created = ruleset
            .create()
            .map_err(|e| Failure::Landlock(e.into()))?
            // Set below with nix, so that it is in force (and reported) even
            // when the kernel has no Landlock.
            .no_new_privs(false);
        for dir in remove {
            created = created
                .add_rule(PathBeneath::new(dir, AccessFs::RemoveFile))
                .map_err(|e| Failure::Landlock(e.into()))?;
        }
        for dir in connect {
            created = created
                .add_rule(PathBeneath::new(dir, AccessFs::ResolveUnix))
                .map_err(|e| Failure::Landlock(e.into()))?;
        }
        created
            .restrict_self()
            .map_err(|e| Failure::Landlock(e.into()))
    }

    /// What is in force, given the kernel's answer.
    fn report(&self, mode: SandboxMode, no_new_privs: bool, status: &RestrictionStatus) -> Report {
        let abi = match (&status.ruleset, &status.landlock) {
            (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => {
                return Report::unconfined(mode, no_new_privs, Landlock::NotEnabled);
            }
            (RulesetStatus::NotEnforced, LandlockStatus::Available { .. }) => {
                return Report::unconfined(
                    mode,
                    no_new_privs,
                    Landlock::Failed("the kernel enforced none of the requested rights".into()),
                );
            }
            (RulesetStatus::NotEnforced, _) | (_, LandlockStatus::NotImplemented) => {
                // The `landlock` crate reports every failure of its probe
                // other than EOPNOTSUPP as "not implemented", so an EPERM
                // or ENOSYS from a seccomp filter looks the same as a
                // kernel without Landlock. No domain is in force here, so
                // /proc can still be read to tell which is likelier.
                let why = if seccomp_filtered() {
                    Landlock::Filtered
                } else {
                    Landlock::NotBuiltIn
                };
                return Report::unconfined(mode, no_new_privs, why);
            }
            (_, LandlockStatus::NotEnabled) => {
                return Report::unconfined(mode, no_new_privs, Landlock::NotEnabled);
            }
            (_, LandlockStatus::Available { effective_abi, .. }) => *effective_abi as u32,
        };
        Report {
            mode,
            no_new_privs,
            landlock: Landlock::Enforced { abi },
            filesystem: if abi >= 3 {
                Filesystem::Denied
            } else {
                Filesystem::Partial
            },
            removable: self.remove.clone(),
            unix_connect_restricted: abi >= 9,
            connectable: if abi >= 9 {
                self.connect.clone()
            } else {
                Vec::new()
            },
            tcp_denied: self.deny_network && abi >= 4,
            udp_denied: self.deny_network && abi >= 10,
            abstract_unix_scoped: self.scope_abstract_unix && abi >= 6,
            signals_scoped: self.scope_signals && abi >= 6,
        }
    }

    /// What the policy asked for that the report does not show in force.
    fn shortfalls(&self, report: &Report) -> Vec<String> {
        let mut missing = Vec::new();
        match &report.landlock {
            Landlock::Enforced { .. } => {}
            Landlock::NotBuiltIn => missing
                .push("any Landlock restriction (the kernel is built without Landlock)".to_owned()),
            Landlock::Filtered => missing.push(
                "any Landlock restriction (its system calls fail, and a seccomp filter is in \
                 force for this process: allow landlock_create_ruleset, landlock_add_rule and \
                 landlock_restrict_self in it, e.g. with SystemCallFilter= in a systemd unit or \
                 in the container's seccomp profile; or the kernel is built without Landlock)"
                    .to_owned(),
            ),
            Landlock::NotEnabled => missing.push(
                "any Landlock restriction (Landlock is not enabled: add it to the lsm= boot \
                 parameter)"
                    .to_owned(),
            ),
            Landlock::Failed(why) => {
                missing.push(format!(
                    "any Landlock restriction (the kernel refused: {why})"
                ));
            }
            Landlock::Off => {}
        }
        if report.landlock.abi().is_some() {
            if report.filesystem == Filesystem::Partial {
                missing.push("denying truncate(2) (needs Landlock ABI 3)".to_owned());
            }
            if self.deny_network && !report.tcp_denied {
                missing.push("denying TCP (needs Landlock ABI 4)".to_owned());
            }
            if self.scope_abstract_unix && !report.abstract_unix_scoped {
                missing.push("abstract Unix socket scoping (needs Landlock ABI 6)".to_owned());
            }
            if self.scope_signals && !report.signals_scoped {
                missing.push("signal scoping (needs Landlock ABI 6)".to_owned());
            }
        }
        if !report.no_new_privs {
            missing.push("no_new_privs".to_owned());
        }
        missing
    }
}

/// Why `restrict` stopped.
enum Failure {
    Unsupported { what: &'static str, min_abi: u32 },
    NoNewPrivs(io::Error),
    Landlock(Box<dyn std::error::Error + Send + Sync>),
}

/// Whether a seccomp filter is in force for this process (`Seccomp: 2` in
/// `/proc/self/status`); false when that cannot be read.
fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| seccomp_filtered_in(&status))
        .unwrap_or(false)
}

/// Whether a `/proc/PID/status` text shows seccomp in filter mode.
fn seccomp_filtered_in(status: &str) -> bool {
    status.lines().any(|l| {
        l.strip_prefix("Seccomp:")
            .is_some_and(|mode| mode.trim() == "2")
    })
}

fn no_new_privs_now() -> bool {
    nix::sys::prctl::get_no_new_privs().unwrap_or(false)
}

/// `/proc/self/task` of this process, opened by the first count and kept
/// open (close-on-exec) so that a later call can still count threads once
/// the process is confined and could no longer open it.
static TASKS: Mutex<Option<(u32, Dir)>> = Mutex::new(None);

/// The number of threads of this process.
fn thread_count() -> io::Result<usize> {
    let pid = std::process::id();
    let mut tasks = TASKS.lock().unwrap_or_else(|p| p.into_inner());
    // A forked child inherits the parent's directory: open its own.
    if tasks.as_ref().map(|(p, _)| *p) != Some(pid) {
        let dir = Dir::open(
            "/proc/self/task",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        *tasks = Some((pid, dir));
    }
    let Some((_, dir)) = tasks.as_mut() else {
        unreachable!("set above");
    };
    let mut n = 0;
    // Each iteration starts from the beginning (the iterator rewinds the
    // directory when dropped).
    for entry in dir.iter() {
        let name = entry?.file_name().to_bytes().to_owned();
        if name != b"." && name != b".." {
            n += 1;
        }
    }
    Ok(n)
}

fn open_dirs(dirs: &[PathBuf]) -> Result<Vec<PathFd>, SandboxError> {
    dirs.iter()
        .map(|dir| {
            let fd = PathFd::new(dir).map_err(|e| SandboxError::Directory {
                dir: dir.clone(),
                source: match e {
                    PathFdError::OpenCall { source, .. } => source,
                    other => io::Error::other(other.to_string()),
                },
            })?;
            // A rule on a file would be refused by the kernel after
            // no_new_privs is set; refuse it here, before anything changes.
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => Ok(fd),
                Ok(_) => Err(SandboxError::Directory {
                    dir: dir.clone(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                }),
                Err(source) => Err(SandboxError::Directory {
                    dir: dir.clone(),
                    source,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_go_on_parent_directories_once_each() {
        let p = Policy::new()
            .allow_remove("/run/x/intro.sock")
            .allow_remove("/run/x/intro.sock.admin")
            .allow_remove("bare.sock")
            .allow_connect("/srv/a.sock")
            .allow_connect("/srv/b.sock");
        assert_eq!(p.remove, [PathBuf::from("/run/x"), PathBuf::from(".")]);
        assert_eq!(p.connect, [PathBuf::from("/srv")]);
        let d = Policy::default();
        assert!(d.scope_abstract_unix && d.scope_signals && d.deny_network);
        assert!(d.remove.is_empty() && d.connect.is_empty());
    }

    #[test]
    fn seccomp_filter_mode_is_read_from_the_status_text() {
        let status = |mode: &str| {
            format!("Name:\tx\nNoNewPrivs:\t1\nSeccomp:\t{mode}\nSeccomp_filters:\t1\n")
        };
        assert!(seccomp_filtered_in(&status("2")));
        assert!(!seccomp_filtered_in(&status("0")));
        assert!(!seccomp_filtered_in(&status("1")));
        assert!(!seccomp_filtered_in("Name:\tx\n"));
        // `Seccomp_filters:` alone is not the mode.
        assert!(!seccomp_filtered_in("Seccomp_filters:\t2\n"));
    }
}
