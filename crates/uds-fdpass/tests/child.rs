//! Across processes: credentials of a socket created by a child, fds handed
//! to a child with `inherit::inheritable`, and taking inherited fds.
//!
//! The child is this test binary again, started with `--exact child_main`
//! and an environment variable that says what to do (`child_main` does
//! nothing in a normal run).

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};

use bytes::BytesMut;
use uds_fdpass::inherit::{InheritError, inheritable, listen_fds, take_fd_from_env};
use uds_fdpass::{FdStream, check_stream_socket, socketpair};

const MODE: &str = "UDS_FDPASS_TEST_CHILD";

/// Runs in the child process.
#[test]
fn child_main() {
    let Ok(mode) = std::env::var(MODE) else {
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
            let show = |r: Result<Option<std::os::fd::OwnedFd>, InheritError>| match r {
                Ok(Some(fd)) => {
                    let cloexec = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
                    format!("ok cloexec={}", cloexec & 1)
                }
                Ok(None) => "none".to_owned(),
                Err(e) => format!("err {e}"),
            };
            println!("RESULT1 {}", show(first));
            println!("RESULT2 {}", show(second));
            println!("LISTEN {}", listen_fds().map(|v| v.len()).unwrap_or(999));
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .stdin(Stdio::null());
    c
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
        let out = c.output().unwrap();
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let out = c.output().unwrap();
    drop(inherited);
    String::from_utf8_lossy(&out.stdout).into_owned()
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
