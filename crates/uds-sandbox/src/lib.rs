//! Self-confinement for the processes of the OCapN Unix-domain-socket
//! netlayer: the introduction server (`uds-introd`) and peers.
//!
//! Such a process needs the filesystem only while it starts: to read its key,
//! bind its sockets, connect to its intro servers, start children. After
//! that it lives on the file descriptors it holds, the socketpairs it
//! creates and the sockets passed to it. [`Policy::confine`] then takes the
//! rest away, for the process and everything it later creates:
//!
//! * `no_new_privs` (`prctl(PR_SET_NO_NEW_PRIVS)`): no execve can ever grant
//!   privileges again (set-uid bits, file capabilities);
//! * a [Landlock](https://docs.kernel.org/userspace-api/landlock.html)
//!   domain that handles every filesystem right the kernel knows and grants
//!   none, except removing files beneath the directories of the process's
//!   own sockets ([`Policy::allow_remove`]) and, on kernels that mediate it,
//!   connecting to the intro servers' pathname sockets
//!   ([`Policy::allow_connect`]): opening, creating, removing, renaming,
//!   linking, truncating and executing files fail with `EACCES`;
//! * TCP (and, from ABI 10, UDP) binds and connects denied;
//! * abstract-socket scoping: no connecting to abstract Unix sockets
//!   (`@name`) created outside the domain (`EPERM`);
//! * signal scoping: no signals to processes outside the domain (`EPERM`).
//!
//! What is **not** confined: file descriptors already open keep working
//! (that is the point: listening sockets, intro connections, stdin/stdout);
//! connecting to pathname Unix sockets is not mediated before Landlock ABI 9
//! (so a confined peer can reconnect to a restarted intro server by path);
//! creating socketpairs, passing fds with `SCM_RIGHTS`, reading peer
//! credentials; `stat`, `chmod`, `chown`, `chdir`, `readlink` and other
//! metadata operations on paths, which Landlock does not mediate; signals
//! *to* the process; memory, CPU and system calls in general (use seccomp,
//! for example systemd's `SystemCallFilter=`, for those).
//!
//! # Threads: confine first
//!
//! Landlock (before ABI 8) and `no_new_privs` apply to the calling thread
//! and to the threads and processes it creates afterwards. A thread that
//! already runs stays unconfined, so [`Policy::confine`] refuses to run in a
//! process with more than one thread ([`SandboxError::OtherThreads`]). Call
//! it from `main` before building a multi-threaded async runtime; do the
//! setup that needs the filesystem before, with blocking calls or a
//! current-thread runtime.
//!
//! # Modes
//!
//! [`SandboxMode`] is the command-line choice: `off`, `auto` (default:
//! apply what the kernel offers, report the rest) and `require` (apply the
//! whole policy or fail having applied nothing). The [`Report`] says what is
//! in force, in one line suitable for a log or a `status` display.
//!
//! # Example
//!
//! ```no_run
//! use uds_sandbox::{Policy, SandboxMode};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::path::Path::new("/run/user/1000/ocapn");
//! let socket = dir.join("intro.sock");
//! let listener = std::os::unix::net::UnixListener::bind(&socket)?;
//!
//! // Still single-threaded: no runtime yet.
//! let report = Policy::new()
//!     .allow_remove(&socket) // removed at shutdown
//!     .confine(SandboxMode::Auto)?;
//! eprintln!("{}", report.status_line());
//! // sandbox: mode=auto landlock-abi=7 filesystem=denied remove-in=/run/user/1000/ocapn ...
//!
//! // Threads (an async runtime's too) created now inherit the confinement.
//! let server = std::thread::spawn(move || {
//!     for conn in listener.incoming() { /* ... */ }
//!     let _ = std::fs::remove_file(&socket); // allowed by the policy
//! });
//! # server.join().unwrap();
//! # Ok(()) }
//! ```

mod error;
mod mode;
mod policy;
mod report;

pub use error::SandboxError;
pub use mode::{ParseModeError, SandboxMode};
pub use policy::Policy;
pub use report::{Filesystem, Landlock, Report};
