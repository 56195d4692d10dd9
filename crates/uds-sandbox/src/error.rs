//! Why confinement was refused.

use std::io;
use std::path::PathBuf;

/// Why [`Policy::confine`](crate::Policy::confine) did not confine the
/// process.
///
/// Unless stated otherwise, nothing has been applied when one of these is
/// returned: the process is exactly as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The process has more than one thread. Landlock and `no_new_privs`
    /// apply to the calling thread and to threads it creates afterwards;
    /// confining one thread of several would leave the others unconfined.
    #[error(
        "cannot confine: the process already has {threads} threads, and Landlock and \
         no_new_privs would apply only to the calling thread; confine at the start of main, \
         before starting an async runtime or any other thread"
    )]
    OtherThreads {
        /// How many threads were counted in `/proc/self/task`.
        threads: usize,
    },
    /// The threads of the process could not be counted.
    #[error(
        "cannot confine: cannot count this process's threads in /proc/self/task ({source}); \
         mount /proc, or turn the sandbox off"
    )]
    ThreadCount {
        /// The error reading `/proc/self/task`.
        source: io::Error,
    },
    /// A directory named by the policy (the parent of a socket to remove or
    /// to connect to) could not be opened.
    #[error("cannot confine: cannot open directory {dir} for a Landlock rule: {source}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why it could not be opened.
        source: io::Error,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("cannot set no_new_privs: {source}")]
    NoNewPrivs {
        /// The error from `prctl`.
        source: io::Error,
    },
    /// [`SandboxMode::Require`](crate::SandboxMode::Require): the kernel
    /// lacks a feature that the policy asks for.
    #[error(
        "the sandbox is required, but {what} needs Landlock ABI {min_abi} or newer and this \
         kernel does not provide it (Landlock may be missing, not enabled in the `lsm=` boot \
         parameter, too old, or refused by a seccomp filter such as a container runtime's); \
         use sandbox mode auto to run with what the kernel offers"
    )]
    Unsupported {
        /// The feature, in words.
        what: &'static str,
        /// The oldest Landlock ABI that has it.
        min_abi: u32,
    },
    /// [`SandboxMode::Require`](crate::SandboxMode::Require): building or
    /// enforcing the Landlock domain failed. `no_new_privs` is already set
    /// (it is set before the domain is built).
    #[error("the sandbox is required, but the kernel refused the Landlock domain: {source}")]
    Landlock {
        /// What the `landlock` crate reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
