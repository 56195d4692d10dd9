//! Async file-descriptor passing (SCM_RIGHTS) on Unix stream sockets, for
//! tokio, that never loses or leaks a descriptor.
//!
//! The kernel's rules for passing fds over stream sockets are unforgiving:
//!
//! * a plain `read()` silently **closes** any fd that arrives;
//! * a control buffer too small for what was sent makes the kernel close
//!   the excess and set `MSG_CTRUNC`, and the fds that did arrive leak unless
//!   the reader closes them;
//! * fds travel with the first byte of the `sendmsg` that carried them, and
//!   a read that reaches that segment **ends right after it**: the fds belong
//!   to the end of the read that brought them;
//! * at most 253 fds per message (`SCM_MAX_FD`), and at least one data byte.
//!
//! [`FdStream`] owns all of that: every receive is a `recvmsg` with
//! `MSG_CMSG_CLOEXEC` and room for 253 fds, returning the bytes and the fds
//! that came with them ([`Received`]); truncation closes what arrived and is
//! an error that can be matched ([`RecvError::Truncated`]); sends refuse what
//! the kernel would drop.
//!
//! Around it: [`socketpair`], [`check_stream_socket`] (is this fd really a
//! connected AF_UNIX stream socket? if not, what is it?), peer credentials
//! ([`peer_credentials`], [`peer_pidfd`]), refusing fds on a socket that must
//! never receive them ([`refuse_fds`]), and the [`inherit`] module for fds
//! inherited from a parent process or handed to a child.
//!
//! This is the only crate of the workspace with `unsafe` code: the system
//! calls in one private module, and two call sites (taking an inherited fd,
//! and setting a buffer's length after `recvmsg` filled it), every block with
//! a `// SAFETY:` comment. No safe function
//! relies on a condition it does not check, with one documented exception:
//! adopting an inherited fd number is only sound if nothing else in the
//! process owns it, which the [`inherit`] functions check as far as it can
//! be checked and otherwise ask of their caller (call them at startup).
//!
//! # Linux only
//!
//! The crate builds on Linux only, and says so with a compile error
//! elsewhere. What it promises rests on Linux behaviour that other kernels do
//! not share or spell differently:
//!
//! * **when fds arrive** on a stream socket: with the first byte of the
//!   `sendmsg` that carried them, ending the read that reaches them (the rule
//!   the intro channel's fd-to-record pairing is built on). Other systems
//!   attach them to reads differently;
//! * `MSG_CMSG_CLOEXEC`, so no received fd is ever inheritable, even briefly;
//! * `SO_PEERCRED` with `struct ucred`, `SCM_CREDENTIALS`, `SO_PEERPIDFD`,
//!   `SO_PASSRIGHTS`, and `SO_DOMAIN`/`SO_ACCEPTCONN` for checking what an fd
//!   is (BSDs have `LOCAL_PEERCRED`/`getpeereid` and other layouts);
//! * `SCM_MAX_FD` = 253 fds per message.
//!
//! # Cancel safety
//!
//! [`FdStream::recv`] is cancel-safe: bytes and fds are taken in one step.
//! [`FdStream::send`] is not: a dropped send may have written part of its
//! data and its fds. Each async function says so in its docs.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! use std::io::{Read, Write};
//! use std::os::fd::AsFd;
//! use bytes::BytesMut;
//! use uds_fdpass::{check_stream_socket, socketpair, FdStream};
//!
//! // A channel between two parties, and a connection to hand over on it.
//! let (tx, rx) = FdStream::pair()?;
//! let (keep, give) = socketpair()?;
//! tx.send(b"take this", &[give.as_fd()]).await.unwrap();
//! drop(give); // the receiver has its own copy now
//!
//! let mut buf = BytesMut::new();
//! let got = rx.recv(&mut buf).await?;
//! assert_eq!(&buf[..], b"take this");
//! let passed = got.fds.into_iter().next().unwrap();
//! check_stream_socket(&passed).unwrap();
//!
//! // The two ends now talk directly.
//! let mut mine = std::os::unix::net::UnixStream::from(keep);
//! let mut theirs = std::os::unix::net::UnixStream::from(passed);
//! mine.write_all(b"hi")?;
//! let mut two = [0u8; 2];
//! theirs.read_exact(&mut two)?;
//! assert_eq!(&two, b"hi");
//! # Ok(()) }
//! ```
#![allow(unsafe_code)] // the only crate that may: it wraps the kernel's fd-passing interface

#[cfg(not(target_os = "linux"))]
compile_error!(
    "uds-fdpass supports Linux only: it relies on Linux's SCM_RIGHTS semantics on stream \
     sockets, MSG_CMSG_CLOEXEC, SO_PEERCRED/SO_PEERPIDFD and SO_PASSRIGHTS (see the crate docs)"
);

#[cfg(target_os = "linux")]
mod check;
#[cfg(target_os = "linux")]
pub mod inherit;
#[cfg(target_os = "linux")]
mod socket;
#[cfg(target_os = "linux")]
mod stream;
#[cfg(target_os = "linux")]
mod sys;

#[cfg(target_os = "linux")]
pub use check::{SocketCheckError, check_listening_socket, check_stream_socket};
#[cfg(target_os = "linux")]
pub use socket::{
    Credentials, MAX_SOCKET_ADDR, PassRights, peer_credentials, peer_pidfd, refuse_fds,
    set_pass_credentials, socketpair,
};
#[cfg(target_os = "linux")]
pub use stream::{FdStream, Received, RecvError, SendError};
#[cfg(target_os = "linux")]
pub use sys::MAX_FDS;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
