//! The system calls: `recvmsg`/`sendmsg` with control messages, and the
//! integer socket options. Every `unsafe` block of the crate that touches
//! the kernel interface is in this module or in `inherit`.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::socket::Credentials;

/// The most fds one `sendmsg` may carry on Linux (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// `SCM_PIDFD`: a control message carrying a pidfd (Linux 6.5+, sent when
/// `SO_PASSPIDFD` is on). It holds an fd, which must be closed.
///
/// Control-message types of `SOL_SOCKET` are defined once for every
/// architecture (`include/linux/socket.h`: `SCM_RIGHTS` 1, `SCM_CREDENTIALS`
/// 2, `SCM_SECURITY` 3, `SCM_PIDFD` 4); libc 0.2 does not name this one yet.
const SCM_PIDFD: libc::c_int = 0x04;

/// `SO_PEERPIDFD` (Linux 6.5+). Socket-option numbers differ between
/// architectures (alpha, mips, parisc and sparc number `SOL_SOCKET` options
/// their own way); libc has the right one for each target.
pub(crate) const SO_PEERPIDFD: libc::c_int = libc::SO_PEERPIDFD;

/// `SO_PASSPIDFD` (Linux 6.5+); see [`SO_PEERPIDFD`].
#[cfg(test)]
pub(crate) const SO_PASSPIDFD: libc::c_int = libc::SO_PASSPIDFD;

/// `SO_PASSRIGHTS` (Linux 6.16+), which libc 0.2 does not name yet: the
/// numbers of `arch/*/include/uapi/asm/socket.h`. sparc has its own
/// numbering (0x5c); the generic header (`include/uapi/asm-generic/
/// socket.h`), alpha, mips and powerpc use 83 (parisc uses 0x4051, but Rust
/// has no parisc target).
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
pub(crate) const SO_PASSRIGHTS: libc::c_int = 0x5c;
/// `SO_PASSRIGHTS` (Linux 6.16+); see the sparc definition above.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
pub(crate) const SO_PASSRIGHTS: libc::c_int = 83;

const fn align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// `CMSG_SPACE(len)`, computed the way Linux does.
const fn cmsg_space(len: usize) -> usize {
    align(size_of::<libc::cmsghdr>()) + align(len)
}

/// `CMSG_LEN(len)`.
const fn cmsg_len(len: usize) -> usize {
    align(size_of::<libc::cmsghdr>()) + len
}

/// Room for 253 fds, credentials and a pidfd in one receive.
const CONTROL_LEN: usize = cmsg_space(MAX_FDS * size_of::<RawFd>())
    + cmsg_space(size_of::<libc::ucred>())
    + cmsg_space(size_of::<RawFd>());

/// A control buffer aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuf([MaybeUninit<u8>; CONTROL_LEN]);

impl ControlBuf {
    fn new() -> ControlBuf {
        ControlBuf([MaybeUninit::uninit(); CONTROL_LEN])
    }
}

/// What one `recvmsg` brought.
pub(crate) struct RecvOut {
    /// Bytes written into the buffer.
    pub(crate) len: usize,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) credentials: Option<Credentials>,
    /// `Some(closed)` if the kernel truncated the control data (`MSG_CTRUNC`):
    /// then `fds` is empty, and the `closed` fds that did arrive have been
    /// closed.
    pub(crate) truncated: Option<usize>,
}

/// One `recvmsg(MSG_CMSG_CLOEXEC)` into `buf`, with room for `room_fds`
/// fds (at most [`MAX_FDS`]). Every fd that arrives is owned before this
/// returns; on `MSG_CTRUNC` they are all closed and the result says so.
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    room_fds: usize,
) -> io::Result<RecvOut> {
    let room_fds = room_fds.min(MAX_FDS);
    let mut control = ControlBuf::new();
    // The full buffer also has room for credentials and a pidfd; a reduced
    // one holds exactly `room_fds` fds and nothing else: CMSG_LEN, not
    // CMSG_SPACE, whose padding would fit one more fd when `room_fds` is odd
    // (the kernel fits as many fds as the bytes after the header hold).
    let control_len = if room_fds == MAX_FDS {
        CONTROL_LEN
    } else {
        cmsg_len(room_fds * size_of::<RawFd>())
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;
    // SAFETY: `msg` points at `iov` (describing `buf`, valid for writes of
    // its length) and at `control` (valid for writes of msg_controllen
    // bytes); both outlive the call. The kernel writes at most that much.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    let mut credentials = None;
    let mut closed_others = 0usize;
    // SAFETY: after a successful recvmsg, msg_control/msg_controllen
    // describe the control data the kernel wrote; CMSG_FIRSTHDR/NXTHDR
    // only return headers that lie entirely within it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and within the control buffer (above).
        let hdr = unsafe { &*cmsg };
        let payload = (hdr.cmsg_len as usize).saturating_sub(cmsg_len(0));
        // SAFETY: CMSG_DATA of a valid header points at its payload.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        if hdr.cmsg_level == libc::SOL_SOCKET {
            match hdr.cmsg_type {
                libc::SCM_RIGHTS | SCM_PIDFD => {
                    for i in 0..payload / size_of::<RawFd>() {
                        // SAFETY: the payload holds `payload / 4` ints; the
                        // read is unaligned-safe.
                        let raw: RawFd = unsafe {
                            std::ptr::read_unaligned(data.add(i * size_of::<RawFd>()).cast())
                        };
                        // SAFETY: the kernel just installed this fd in our
                        // table for us; nothing else owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        if hdr.cmsg_type == libc::SCM_RIGHTS {
                            fds.push(owned);
                        } else {
                            closed_others += 1;
                            drop(owned);
                        }
                    }
                }
                libc::SCM_CREDENTIALS if payload >= size_of::<libc::ucred>() => {
                    // SAFETY: the payload holds a ucred; read unaligned.
                    let c: libc::ucred = unsafe { std::ptr::read_unaligned(data.cast()) };
                    credentials = Some(Credentials {
                        pid: c.pid,
                        uid: c.uid,
                        gid: c.gid,
                    });
                }
                _ => {}
            }
        }
        // SAFETY: `msg` and `cmsg` are valid as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    let truncated = if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        let closed = fds.len() + closed_others;
        fds.clear();
        Some(closed)
    } else {
        None
    };
    Ok(RecvOut {
        len: n as usize,
        fds,
        credentials,
        truncated,
    })
}

/// One `sendmsg(MSG_NOSIGNAL)` of `data`, with `fds` as SCM_RIGHTS when
/// non-empty. Returns the bytes written.
pub(crate) fn send(fd: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_FDS);
    let mut control = ControlBuf::new();
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = fds.len() * size_of::<RawFd>();
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(payload) as _;
        // SAFETY: the control buffer is aligned and at least
        // CMSG_SPACE(payload) long (payload ≤ 253 fds), so the first header
        // and its data lie within it; we write the header and payload only.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = cmsg_len(payload) as _;
            let dst = libc::CMSG_DATA(cmsg);
            for (i, f) in fds.iter().enumerate() {
                std::ptr::write_unaligned(dst.add(i * size_of::<RawFd>()).cast(), f.as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` describes `data` (valid for reads; the kernel does not
    // write through iov on send) and the initialised control buffer; both
    // outlive the call.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads an integer socket option.
pub(crate) fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes; the kernel writes at
    // most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is valid for reads of its size for the whole call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(SO_PEERPIDFD)`: `Ok(None)` where the kernel does not have it.
pub(crate) fn peer_pidfd(fd: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    match getsockopt_int(fd, libc::SOL_SOCKET, SO_PEERPIDFD) {
        // SAFETY: SO_PEERPIDFD returns a new pidfd installed for us.
        Ok(raw) if raw >= 0 => Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) })),
        Ok(raw) => Err(io::Error::other(format!("SO_PEERPIDFD returned {raw}"))),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fcntl(F_DUPFD, 3)`: a duplicate of `fd` WITHOUT close-on-exec.
pub(crate) fn dup_inheritable(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD takes an int argument and returns a new fd.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 3) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The fd flags of `raw` (`F_GETFD`), or `None` if nothing is open at that
/// number in this process.
pub(crate) fn fd_flags(raw: RawFd) -> Option<libc::c_int> {
    // SAFETY: F_GETFD on any integer is harmless: it only reads the flags
    // of whatever is open at that number, or fails with EBADF.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    (flags >= 0).then_some(flags)
}

/// Runs `inspect` on the fd open at `raw`, without taking ownership of it:
/// `None` if nothing is open there. `inspect` must only query the fd
/// (`fstat`, `getsockopt`, `getpeername`), never close, read or change it.
pub(crate) fn inspect_raw<R>(raw: RawFd, inspect: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
    fd_flags(raw)?;
    // SAFETY: `raw` is open (checked just above), and the borrow does not
    // outlive this call. The fd may belong to something else in this
    // process; the borrow is only used for queries that leave it as it is.
    // Should its owner close it concurrently, those queries fail (EBADF) or
    // describe whatever reuses the number, which the caller's checks then
    // judge; nothing is done to the fd either way.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    Some(inspect(fd))
}

/// Takes ownership of an inherited fd number and marks it close-on-exec.
///
/// # Safety
///
/// `raw` must be open and owned by nothing else in this process: from here
/// on, dropping the returned `OwnedFd` closes it.
/// On error nothing is owned and `raw` is left open.
pub(crate) unsafe fn adopt(raw: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_SETFD with FD_CLOEXEC only changes the fd's flags; on a
    // number that is not open it fails with EBADF and changes nothing. It
    // runs before `raw` is owned, so that a failure leaves it open.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller guarantees `raw` is open and unowned.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn fd_count() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// With `SO_PASSPIDFD` on, every message carries an `SCM_PIDFD` control
    /// message holding an fd: the receive must close it and not report it
    /// as a passed fd (kernels without the option skip this test).
    #[test]
    fn pidfd_control_messages_are_closed() {
        let (a, b) = crate::socket::socketpair().unwrap();
        if setsockopt_int(b.as_fd(), libc::SOL_SOCKET, SO_PASSPIDFD, 1).is_err() {
            println!("SO_PASSPIDFD not supported by this kernel: skipped");
            return;
        }
        let before = fd_count();
        for _ in 0..100 {
            send(a.as_fd(), b"x", &[]).unwrap();
            let mut buf = [MaybeUninit::uninit(); 8];
            let out = recv(b.as_fd(), &mut buf, MAX_FDS).unwrap();
            assert_eq!(out.len, 1);
            assert!(out.fds.is_empty(), "a pidfd is not a passed fd");
        }
        assert_eq!(fd_count(), before, "every pidfd was closed");
    }
}
