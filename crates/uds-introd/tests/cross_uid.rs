//! The admission policy against a client really running as another user.
//!
//! Runs without libtest's harness: the same binary is the test and, with
//! `UDS_INTROD_TEST_UID_CLIENT` set, the client started under another uid.
//! Without root (needed to start a process as another user) it prints that
//! it skipped.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;

use common::*;
use uds_handshake::Identity;
use uds_syrup::WireProfile;

const MODE: &str = "UDS_INTROD_TEST_UID_CLIENT";

fn main() {
    if let Ok(socket) = std::env::var(MODE) {
        return client(&socket);
    }
    let tests: [(&str, fn()); 2] = [
        ("a_client_from_a_disallowed_uid", || {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(a_client_from_a_disallowed_uid());
            println!("ok");
        }),
        (
            "a_daemon_in_a_user_namespace_without_root_starts",
            a_daemon_in_a_user_namespace_without_root_starts,
        ),
    ];
    let Some(tests) = select_tests(&tests) else {
        return;
    };
    for (name, test) in tests {
        print!("test {name} ... ");
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: running a process as another user needs root");
            continue;
        }
        test();
    }
}

/// In a user namespace that does not map root (systemd's `PrivateUsers=`,
/// rootless containers), root's directories show as owned by the overflow
/// uid: the check of the way to the socket's directory must still accept
/// `/tmp`, or the shipped unit could not start.
fn a_daemon_in_a_user_namespace_without_root_starts() {
    use std::io::BufRead;
    if Command::new("unshare").arg("--version").output().is_err() {
        println!("skipped: no unshare(1)");
        return;
    }
    let dir = private_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mine = dir.path().join("uid-4242");
    std::fs::create_dir(&mine).unwrap();
    std::os::unix::fs::chown(&mine, Some(4242), Some(4242)).unwrap();
    let socket = mine.join("sub").join("intro.sock");
    let mut daemon = Command::new("unshare")
        .args(["--user", "--map-current-user", "--"])
        .arg(&*BIN)
        .arg("--socket")
        .arg(&socket)
        .uid(4242)
        .gid(4242)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = daemon.kill();
    let out = daemon.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if line.is_empty() && err.contains("unshare failed") {
        println!("skipped: user namespaces are not available here: {err}");
        return;
    }
    assert!(line.starts_with("uds-introd ready"), "{line}{err}");
    println!("ok");
}

/// The client: tries to register and prints what happened.
fn client(socket: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let std = match std::os::unix::net::UnixStream::connect(socket) {
            Ok(s) => s,
            Err(e) => {
                println!("RESULT connect-failed {e}");
                return;
            }
        };
        std.set_nonblocking(true).unwrap();
        let mut c = Client {
            stream: uds_fdpass::FdStream::try_from_std(std).unwrap(),
            chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
            identity: Arc::new(Identity::generate()),
            server: None,
        };
        match tokio::time::timeout(PATIENCE, c.handshake(WireProfile::Draft)).await {
            Ok(Ok(_)) => println!("RESULT registered"),
            Ok(Err(e)) => println!("RESULT refused {e}"),
            Err(_) => println!("RESULT timeout"),
        }
    });
}

fn client_as(uid: u32, socket: &std::path::Path) -> String {
    // This binary in the test's directory, so that the other user can
    // execute it wherever the checkout lives: a hard link where the
    // temporary directory is on the same filesystem, a copy otherwise.
    let exe = socket.parent().unwrap().join("uid-client");
    if !exe.exists() {
        executable_by_all(&std::env::current_exe().unwrap(), &exe);
    }
    let out = Command::new(&exe)
        .env(MODE, socket)
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = text.find("RESULT").unwrap_or_else(|| {
        panic!(
            "no result from the uid {uid} client: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    text[at..].lines().next().unwrap_or_default().to_owned()
}

async fn a_client_from_a_disallowed_uid() {
    let dir = private_dir();
    // Others must be able to reach the socket for the policy to matter.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let d = Daemon::start(dir.path(), &["--allow-uid", "4242"]);
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    let socket = d.socket.clone();
    let refused = tokio::task::spawn_blocking(move || client_as(65534, &socket))
        .await
        .unwrap();
    assert!(
        refused.starts_with("RESULT refused") || refused.starts_with("RESULT connect"),
        "{refused}"
    );
    d.wait_counter("policy", 1).await;
    // Refusals are logged with the credentials.
    d.wait_log("uid=65534").await;
    let socket = d.socket.clone();
    let admitted = tokio::task::spawn_blocking(move || client_as(4242, &socket))
        .await
        .unwrap();
    assert_eq!(admitted, "RESULT registered");
    pair.still_works().await;
    d.wait_fds(baseline).await;
    // `status` from another user: the admin socket is private, and the
    // error says so rather than asking whether the daemon runs.
    let bin = dir.path().join("uds-introd");
    executable_by_all(std::path::Path::new(&*BIN), &bin);
    let out = Command::new(&bin)
        .arg("status")
        .arg("--socket")
        .arg(&d.socket)
        .uid(4242)
        .gid(4242)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Permission denied") && err.contains("run this as that user"),
        "{err}"
    );
    drop(d);

    // A socket directory the daemon creates lets the admitted user in.
    let socket = dir.path().join("made-by-the-daemon").join("intro.sock");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--key")
        .arg(dir.path().join("server.key"))
        .args(["--allow-uid", "4242"]);
    let _d = Daemon::spawn(cmd, dir.path(), socket.clone());
    let admitted = tokio::task::spawn_blocking(move || client_as(4242, &socket))
        .await
        .unwrap();
    assert_eq!(admitted, "RESULT registered");
}
