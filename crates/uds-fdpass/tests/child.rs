//! Across processes: credentials of a socket created by a child, fds handed
//! to a child with `inherit::inheritable`, and taking inherited fds
//! (`take_fd_from_env`, `listen_fds`), including numbers that name
//! something other than the socket expected.
//!
//! The child is this test binary again, started with `--exact child_main
//! --ignored` and an environment variable that says what to do. `child_main`
//! is ignored in a normal run: it is not a test of its own, only the body of
//! the tests' child processes. Tests that need environment variables set
//! them on the child, never on this process.

mod common;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};

use bytes::BytesMut;
use uds_fdpass::inherit::{InheritError, inheritable, listen_fds, take_fd_from_env};
use uds_fdpass::{FdStream, check_stream_socket, socketpair};

const MODE: &str = "UDS_FDPASS_TEST_CHILD";

/// Prints what a take returned, and whether the fd is close-on-exec.
fn show(r: Result<Option<OwnedFd>, InheritError>) -> String {
    match r {
        Ok(Some(fd)) => {
            let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            format!("ok cloexec={}", flags & 1)
        }
        Ok(None) => "none".to_owned(),
        Err(e) => format!("err {e}"),
    }
}

/// Whether something is open at `fd` in this process.
fn is_open(fd: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok()
}

/// Moves `fd` to the number `wanted` (which must be free), close-on-exec.
#[allow(unsafe_code)] // the test must own an fd at a number of its choice
fn own_fd_at(fd: OwnedFd, wanted: RawFd) -> OwnedFd {
    let moved = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(wanted)).unwrap();
    assert_eq!(moved, wanted, "fd {wanted} is not free in the child");
    // SAFETY: F_DUPFD_CLOEXEC just created fd `moved`; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(moved) }
}

/// The body of the child processes; see the module docs.
#[test]
#[ignore = "runs only as the child process of the other tests of this file"]
fn child_main() {
    let Ok(mode) = std::env::var(MODE) else {
        println!("not a child process: nothing to do");
        return;
    };
    match mode.as_str() {
        // Create a socketpair here and send one end back to the parent over
        // the inherited socket.
        "send-socketpair" => {
            let fd = take_fd_from_env("TEST_FD").unwrap().expect("TEST_FD set");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let back = FdStream::try_from_fd(fd).unwrap();
                let (keep, give) = socketpair().unwrap();
                back.send(b"mine", &[give.as_fd()]).await.unwrap();
                drop(give);
                // Wait for the parent to finish with us.
                let mut buf = BytesMut::new();
                while !back.recv(&mut buf).await.unwrap().is_eof() {}
                drop(keep);
            });
        }
        // Report what take_fd_from_env says about TEST_FD, twice.
        "take" => {
            let first = take_fd_from_env("TEST_FD");
            let second = take_fd_from_env("TEST_FD");
            println!("RESULT1 {}", show(first));
            println!("RESULT2 {}", show(second));
            println!("LISTEN {}", listen_fds().map(|v| v.len()).unwrap_or(999));
        }
        // The "stale number" case: TEST_FD names something this process
        // owns (opened here, at the number TEST_FD says). A caller of
        // take_fd_from_env that checks what it got, finds the wrong thing
        // and drops it must not close it.
        "take-own-file" | "take-own-socket" => {
            let wanted: RawFd = std::env::var("TEST_FD").unwrap().parse().unwrap();
            let mine: OwnedFd = if mode == "take-own-file" {
                let path = std::env::var("TEST_FILE").unwrap();
                std::fs::File::open(&path).unwrap().into()
            } else {
                let (a, b) = socketpair().unwrap();
                std::mem::forget(b); // a connected socket; its peer stays open
                a
            };
            let mine = own_fd_at(mine, wanted);
            match take_fd_from_env("TEST_FD") {
                Ok(Some(fd)) => {
                    let check = check_stream_socket(&fd);
                    drop(fd);
                    println!("TAKEN check={check:?}");
                }
                Ok(None) => println!("TAKEN none"),
                Err(e) => println!("REFUSED {e}"),
            }
            if !is_open(wanted) {
                println!("CLOSED");
                // The fd is gone: do not close it a second time.
                std::mem::forget(mine);
            } else if mode == "take-own-file" {
                use std::io::{Read, Seek};
                let mut file = std::fs::File::from(mine);
                let mut text = String::new();
                file.rewind().unwrap();
                file.read_to_string(&mut text).unwrap();
                println!("STILL OPEN {text}");
            } else {
                check_stream_socket(&mine).unwrap();
                println!("STILL OPEN socket");
            }
        }
        // Socket activation: fds 3.. were set up by the shell that exec'd
        // us (with LISTEN_PID set to our pid).
        "listen" => {
            let n: RawFd = std::env::var("LISTEN_FDS").unwrap().parse().unwrap();
            match listen_fds() {
                Ok(fds) => {
                    let shown: Vec<String> = fds.into_iter().map(|f| show(Ok(Some(f)))).collect();
                    println!("LISTEN ok {}", shown.join(","));
                }
                Err(e) => println!("LISTEN err {e}"),
            }
            let open: Vec<bool> = (3..3 + n).map(is_open).collect();
            println!("OPEN {open:?}");
            println!("AGAIN {}", listen_fds().map(|v| v.len()).unwrap_or(999));
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_main",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MODE, mode)
    .stdin(Stdio::null());
    c
}

fn stdout_of(mut c: Command) -> String {
    let out = c.output().unwrap();
    format!(
        "{}\n(stderr: {})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn credentials_of_a_socket_created_by_a_child() {
    let _guard = common::lock();
    common::warm_up_tokio();
    let before = common::fd_count();
    let before_list = common::fd_list();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (ours, theirs) = FdStream::pair_with_owned().unwrap();
        let inherited = inheritable(&theirs).unwrap();
        let mut proc = child("send-socketpair")
            .env("TEST_FD", inherited.as_raw_fd().to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        drop(inherited);
        drop(theirs);
        let mut buf = BytesMut::new();
        let mut fds = Vec::new();
        while buf.len() < 4 {
            let got = ours.recv(&mut buf).await.unwrap();
            assert!(!got.is_eof(), "child ended early");
            fds.extend(got.fds);
        }
        assert_eq!(&buf[..], b"mine");
        let passed = fds.pop().expect("an fd from the child");
        check_stream_socket(&passed).unwrap();
        let creds = uds_fdpass::peer_credentials(&passed).unwrap();
        assert_eq!(creds.pid as u32, proc.id(), "the creator is the child");
        assert_eq!(creds.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(creds.gid, nix::unistd::getegid().as_raw());
        if let Some(pidfd) = uds_fdpass::peer_pidfd(&passed).unwrap() {
            // The pidfd names the child: its fdinfo carries the pid.
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
                .unwrap();
            assert!(info.contains(&format!("Pid:\t{}", proc.id())), "{info}");
        }
        drop(passed);
        drop(ours);
        assert!(proc.wait().unwrap().success());
    });
    drop(rt);
    assert_eq!(
        common::fd_count(),
        before,
        "file descriptors leaked: before {before_list:?} after {:?}",
        common::fd_list()
    );
}

fn take_in_child(value: Option<&str>, pass_fd: bool) -> String {
    let (a, _b) = socketpair().unwrap();
    let inherited = inheritable(&a).unwrap();
    let mut c = child("take");
    match value {
        Some(v) => {
            c.env(
                "TEST_FD",
                v.replace("{fd}", &inherited.as_raw_fd().to_string()),
            );
        }
        None => {
            c.env_remove("TEST_FD");
        }
    }
    c.env("LISTEN_PID", "1").env("LISTEN_FDS", "1");
    if !pass_fd {
        drop(inherited);
        return stdout_of(c);
    }
    let out = stdout_of(c);
    drop(inherited);
    out
}

#[test]
fn taking_inherited_fds() {
    let _guard = common::lock();
    let before = common::fd_count();
    let ok = take_in_child(Some("{fd}"), true);
    assert!(ok.contains("RESULT1 ok cloexec=1"), "{ok}");
    assert!(
        ok.contains("RESULT2 err fd") && ok.contains("already taken"),
        "{ok}"
    );
    assert!(
        ok.contains("LISTEN 0"),
        "LISTEN_PID of another process is ignored: {ok}"
    );

    let unset = take_in_child(None, true);
    assert!(unset.contains("RESULT1 none"), "{unset}");

    let bad = take_in_child(Some("seven"), true);
    assert!(
        bad.contains("RESULT1 err TEST_FD=\"seven\" is not a file descriptor number"),
        "{bad}"
    );

    let stdio = take_in_child(Some("1"), true);
    assert!(stdio.contains("names a standard stream"), "{stdio}");

    let closed = take_in_child(Some("{fd}"), false);
    assert!(closed.contains("is not open in this process"), "{closed}");
    assert_eq!(common::fd_count(), before, "file descriptors leaked");
}

/// A stale `TEST_FD` naming a file the process owns: the file stays open
/// and readable, and the error says what the number names.
#[test]
fn a_stale_number_naming_a_file_leaves_it_open() {
    let _guard = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    std::fs::write(&path, "log line").unwrap();
    let mut c = child("take-own-file");
    c.env("TEST_FD", "100").env("TEST_FILE", &path);
    let out = stdout_of(c);
    assert!(
        out.contains("STILL OPEN log line"),
        "the file was closed: {out}"
    );
    assert!(
        out.contains("REFUSED TEST_FD names fd 100, which is a regular file, not a connected Unix stream socket; it was left open"),
        "{out}"
    );
}

/// A stale `TEST_FD` naming a connected socket the process opened itself
/// (close-on-exec, so not inherited): refused and left open.
#[test]
fn a_stale_number_naming_an_own_socket_leaves_it_open() {
    let _guard = common::lock();
    let mut c = child("take-own-socket");
    c.env("TEST_FD", "100");
    let out = stdout_of(c);
    assert!(
        out.contains("STILL OPEN socket"),
        "the socket was closed: {out}"
    );
    assert!(
        out.contains("REFUSED TEST_FD names fd 100, which is close-on-exec"),
        "{out}"
    );
}

/// Runs the child in `listen` mode with `fds` at 3, 4, ... and the
/// variables of systemd socket activation set for it, through a shell that
/// sets them up and `exec`s the child (keeping its pid, so `LISTEN_PID=$$`
/// is the child's pid).
#[allow(unsafe_code)] // pre_exec, to place the fds in the child
fn listen_in_child(fds: &[&OwnedFd]) -> String {
    use std::os::unix::process::CommandExt;
    // Copies at high numbers, so that placing them at 3, 4, ... in the
    // child never overwrites one not yet placed.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(200)).unwrap();
            // SAFETY: F_DUPFD_CLOEXEC just created `raw`; nothing else owns it.
            unsafe { OwnedFd::from_raw_fd(raw) }
        })
        .collect();
    let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS={} exec \"$0\" \"$@\"",
            raw.len()
        ))
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_main",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, "listen")
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only
    // calls dup2, which is async-signal-safe; `raw` was allocated before
    // the fork. dup2 leaves the copies at 3, 4, ... inheritable.
    unsafe {
        c.pre_exec(move || {
            for (i, &fd) in raw.iter().enumerate() {
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = stdout_of(c);
    drop(high);
    out
}

#[test]
fn socket_activation_takes_only_listening_unix_sockets() {
    let _guard = common::lock();
    let before = common::fd_count();
    let dir = tempfile::tempdir().unwrap();
    let listener: OwnedFd = std::os::unix::net::UnixListener::bind(dir.path().join("s"))
        .unwrap()
        .into();
    let (connected, peer) = socketpair().unwrap();

    let ok = listen_in_child(&[&listener]);
    assert!(ok.contains("LISTEN ok ok cloexec=1"), "{ok}");
    assert!(ok.contains("AGAIN 999"), "a second claim is refused: {ok}");

    let wrong = listen_in_child(&[&listener, &connected]);
    assert!(
        wrong.contains(
            "LISTEN err LISTEN_FDS names fd 4, which is a socket that is not listening, not a \
             listening Unix stream socket; it was left open"
        ),
        "{wrong}"
    );
    assert!(
        wrong.contains("OPEN [true, true]") && wrong.contains("AGAIN 999"),
        "none taken, none closed: {wrong}"
    );
    drop((listener, connected, peer));
    assert_eq!(common::fd_count(), before, "file descriptors leaked");
}
