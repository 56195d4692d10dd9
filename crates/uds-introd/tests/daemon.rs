//! The daemon's features, black-box: the real binary, clients speaking the
//! raw protocol.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_handshake::Identity;
use uds_syrup::{IntroMessage, Locator, WireProfile};

#[tokio::test]
async fn registration_in_both_profiles() {
    for (wire, draft_shape) in [("draft", true), ("goblins", false)] {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), &["--wire", wire]);
        for client_profile in [WireProfile::Draft, WireProfile::Goblins] {
            let mut c = Client::connect(&d.socket).await;
            let response = c.handshake(client_profile).await.unwrap();
            let IntroMessage::ServerResponse(r) = IntroMessage::from_value(&response).unwrap()
            else {
                panic!("not a server response");
            };
            assert_eq!(r.echoed_challenge.is_some(), draft_shape, "--wire {wire}");
            assert_eq!(c.server, Some(d.id));
        }
        d.wait_counter("registrations", 2).await;
        assert_eq!(d.counter("handshake").await, 0);
    }
}

/// With no options the daemon emits Goblins' shapes, which every known
/// client accepts: a strict Goblins-shaped client registers (it requires a
/// bare sig-val in `uds:server-response`) and gets intros.
#[tokio::test]
async fn the_default_shape_is_goblins() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let mut goblins = Client::connect(&d.socket).await;
    let response = goblins.handshake(WireProfile::Goblins).await.unwrap();
    let third = response
        .as_record_labeled("uds:server-response")
        .unwrap()
        .field(2)
        .unwrap()
        .clone();
    assert!(
        third.as_record_labeled("uds:signature").is_none(),
        "a bare sig-val, not a draft record: {third}"
    );
    let draft = Client::register(&d.socket, WireProfile::Draft).await;
    d.wait_counter("registered", 2).await;
    exchange(&draft, &mut goblins).await;
}

/// A client that gets the server-response and never answers (it does not
/// understand the shape) is closed at the registration timeout with a hint
/// naming the other `--wire`.
#[tokio::test]
async fn a_client_silent_after_the_response_gets_a_wire_hint_in_the_log() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--registration-timeout", "300ms"]);
    let mut c = Client::connect(&d.socket).await;
    let hs = uds_handshake::ClientHandshake::new(
        c.identity.clone(),
        uds_handshake::ClientConfig::default(),
    );
    c.send(&hs.register_message()).await;
    assert!(matches!(
        c.next().await,
        Some(uds_handshake::channel::ChannelEvent::Message { .. })
    ));
    c.expect_closed().await;
    d.wait_log("try --wire draft").await;
}

#[tokio::test]
async fn an_intro_is_forwarded_and_bytes_flow_over_the_passed_socket() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    // The record arrives exactly as it was sent.
    let mut ours = pair.a.intro_to(&pair.b.locator()).await;
    let event = pair.b.next().await.unwrap();
    let uds_handshake::channel::ChannelEvent::Introduction {
        record, raw, fd, ..
    } = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(
        raw.as_ref(),
        uds_syrup::NewConnection {
            from: pair.a.locator(),
            to: pair.b.locator()
        }
        .to_value()
        .encode()
    );
    assert_eq!(record.from, pair.a.locator());
    // The passed socket was created by a's process (ours), not the daemon.
    let creds = uds_fdpass::peer_credentials(&fd).unwrap();
    assert_eq!(creds.pid as u32, std::process::id());
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true).unwrap();
    let mut theirs = tokio::net::UnixStream::from_std(std).unwrap();
    ours.write_all(b"hello over a direct socket").await.unwrap();
    let mut buf = [0u8; 26];
    theirs.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello over a direct socket");
    pair.still_works().await;
    // The daemon kept no copy of any passed fd.
    d.wait_fds(baseline).await;
    assert!(d.counter("intros-forwarded").await >= 3);
}

#[tokio::test]
async fn killing_the_daemon_leaves_passed_sockets_working() {
    let dir = private_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let mut pair = Pair::new(&d).await;
    let mut ours = pair.a.intro_to(&pair.b.locator()).await;
    let (_, mut theirs) = pair.b.expect_intro().await;
    d.kill();
    pair.a.expect_closed().await;
    ours.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    theirs.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
    theirs.write_all(b"me too").await.unwrap();
    let mut buf = [0u8; 6];
    ours.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"me too");
}

/// SIGINT (Ctrl-C) and SIGHUP (the terminal closed) stop the daemon as
/// cleanly as SIGTERM: exit 0, socket files removed. SIGHUP used to kill
/// it outright, leaving both socket files behind.
#[tokio::test]
async fn sigint_and_sighup_are_clean_shutdowns_too() {
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGINT, Signal::SIGHUP] {
        let dir = private_dir();
        let mut d = Daemon::start(dir.path(), &[]);
        assert_eq!(d.stop_with(signal).code(), Some(0), "{signal}");
        assert!(!d.socket.exists(), "{signal}: the socket file is left");
        assert!(!d.admin.exists(), "{signal}: the admin socket file is left");
    }
}

/// Started with SIGHUP ignored (as by `nohup`), the daemon keeps ignoring
/// it: it still serves after a hangup, and stops on SIGTERM.
#[tokio::test]
async fn a_daemon_started_with_sighup_ignored_keeps_ignoring_it() {
    use std::io::BufRead;
    let dir = private_dir();
    let socket = dir.path().join("intro.sock");
    // A trap that ignores a signal is inherited as ignored across exec.
    let mut daemon = KillOnDrop(
        Command::new("sh")
            .arg("-c")
            .arg("trap '' HUP; exec \"$0\" --socket \"$1\"")
            .arg(&*BIN)
            .arg(&socket)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    std::io::BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("uds-introd ready"), "{ready:?}");
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    // Still there: it answers a status request, and has not exited.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = uds_introd::admin::default_admin_path(&socket);
    let status = uds_introd::admin::request(&admin, "status").await.unwrap();
    assert!(status.contains("id: "), "{status}");
    assert!(daemon.try_wait().unwrap().is_none(), "SIGHUP stopped it");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
    assert!(!socket.exists());
}

#[tokio::test]
async fn a_restart_with_the_same_key_keeps_the_same_id() {
    let dir = private_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let first = d.id;
    let mode = std::fs::metadata(dir.path().join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(d.terminate().code(), Some(0));
    assert!(!d.socket.exists(), "the socket file is removed on SIGTERM");
    assert!(
        !d.admin.exists(),
        "the admin socket file is removed on SIGTERM"
    );
    let d2 = Daemon::start(dir.path(), &[]);
    assert_eq!(d2.id, first);
    // Without --key, every start is a new identity.
    let other = private_dir();
    let sock = other.path().join("s");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket").arg(&sock);
    let d3 = Daemon::spawn(cmd, other.path(), sock);
    assert_ne!(d3.id, first);
}

#[tokio::test]
async fn an_intro_to_an_unknown_peer_waits_then_is_closed() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--park-timeout", "300ms"]);
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    let nobody = Locator::unix(Identity::generate().designator());
    let mut ours = pair.a.intro_to(&nobody).await;
    // The dialer sees end of stream once the intro expires.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(PATIENCE, ours.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    d.wait_counter("park-timeout", 1).await;
    d.wait_fds(baseline).await;
    pair.still_works().await;
}

#[tokio::test]
async fn an_intro_waits_for_its_target_to_register() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--park-timeout", "20s"]);
    let pair = Pair::new(&d).await;
    let late = std::sync::Arc::new(Identity::generate());
    let mut ours = pair.a.intro_to(&late.locator()).await;
    d.wait_counter("intros-waiting", 1).await;
    let mut c = Client::register_as(&d.socket, late, WireProfile::Draft).await;
    let (record, mut theirs) = c.expect_intro().await;
    assert_eq!(record.from, pair.a.locator());
    ours.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 1];
    theirs.read_exact(&mut buf).await.unwrap();
    assert_eq!(d.counter("intros-waiting").await, 0);
}

#[tokio::test]
async fn status_lists_registered_peers() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let pair = Pair::new(&d).await;
    let status = d.status().await;
    assert!(status.contains(&format!("id: {}", d.id)), "{status}");
    for c in [&pair.a, &pair.b] {
        let line = format!(
            "peer: {} pid={}",
            c.identity.designator(),
            std::process::id()
        );
        assert!(status.contains(&line), "{status}");
    }
    // In designator order (of the keys' bytes), with a few more peers so
    // that an unsorted list would show.
    let mut more = Vec::new();
    for _ in 0..4 {
        let id = std::sync::Arc::new(Identity::generate());
        more.push(Client::register_as(&d.socket, id, WireProfile::Draft).await);
    }
    // A client is done once it sent its signature; the daemon may not have
    // read it yet.
    d.wait_counter("registered", 6).await;
    let status = d.status().await;
    let mut by_key: Vec<_> = [&pair.a, &pair.b]
        .into_iter()
        .chain(&more)
        .map(|c| c.identity.designator())
        .collect();
    by_key.sort_by_key(|d| *d.key_bytes());
    let at = |d: &uds_syrup::Designator| status.find(&format!("peer: {d}")).unwrap();
    for w in by_key.windows(2) {
        assert!(at(&w[0]) < at(&w[1]), "{status}");
    }
    // The same through the command-line client.
    let out = Command::new(&*BIN)
        .arg("status")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("registered: 6"), "{text}");
    // A missing admin socket gives a clear error.
    let out = Command::new(&*BIN)
        .args(["status", "--admin"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot reach the admin socket"), "{err}");
}

#[tokio::test]
async fn a_second_registration_replaces_the_first() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    let id = std::sync::Arc::new(Identity::generate());
    let mut old = Client::register_as(&d.socket, id.clone(), WireProfile::Draft).await;
    d.wait_counter("registrations", 3).await;
    let mut new = Client::register_as(&d.socket, id, WireProfile::Goblins).await;
    old.expect_closed().await;
    d.wait_counter("replaced", 1).await;
    exchange(&pair.a, &mut new).await;
    pair.still_works().await;
    drop(new);
    d.wait_fds(baseline).await;
}

#[tokio::test]
async fn leftover_sockets_unsafe_directories_and_live_daemons() {
    // A leftover socket file nobody listens on is replaced.
    let dir = private_dir();
    let path = dir.path().join("intro.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let d = Daemon::start(dir.path(), &[]);
    // A second daemon on the same path refuses to start.
    let out = Command::new(&*BIN)
        .arg("--socket")
        .arg(&d.socket)
        .arg("--no-admin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("already listening"), "{err}");
    // A regular file in the way is never removed.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, b"data").unwrap();
    let out = Command::new(&*BIN)
        .arg("--socket")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("is not a socket")
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
    // A world-writable directory is refused; a missing one is created 0700.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(&*BIN)
        .arg("--socket")
        .arg(open.join("s"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("writable by everyone") && err.contains("chmod 700"),
        "{err}"
    );
    let fresh = dir.path().join("fresh");
    let sock = fresh.join("intro.sock");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket").arg(&sock);
    let d2 = Daemon::spawn(cmd, &fresh, sock);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(
        std::fs::metadata(&d2.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn abstract_socket_when_asked() {
    let name = format!("ocapn-uds-test-{}", std::process::id());
    let dir = private_dir();
    let admin = dir.path().join("admin");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--abstract").arg(&name).arg("--admin").arg(&admin);
    let d = Daemon::spawn(cmd, dir.path(), dir.path().join("unused"));
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let std = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
    let mut c = Client {
        stream: uds_fdpass::FdStream::try_from_std(std).unwrap(),
        chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
        identity: std::sync::Arc::new(Identity::generate()),
        server: None,
    };
    c.handshake(WireProfile::Draft).await.unwrap();
    assert_eq!(c.server, Some(d.id));
    let status = uds_introd::admin::request(&admin, "status").await.unwrap();
    assert!(
        status.contains("registrations: 1") || status.contains("clients: 1"),
        "{status}"
    );
}

#[tokio::test]
async fn systemd_socket_activation_and_readiness() {
    let dir = private_dir();
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let inherited = uds_fdpass::inherit::inheritable(listener.as_fd()).unwrap();
    // systemd sets LISTEN_PID to the service's pid after fork; the shell's
    // `exec` keeps its pid, and `3<&N` puts the socket at fd 3.
    let script = format!(
        "export LISTEN_PID=$$; exec 3<&{fd} {fd}<&-; exec \"$0\" \"$@\"",
        fd = inherited.as_raw_fd()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg(&*BIN)
        .arg("--admin")
        .arg(dir.path().join("admin"))
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", &notify_path);
    let d = Daemon::spawn(cmd, dir.path(), path.clone());
    drop(inherited);
    drop(listener);
    let mut buf = [0u8; 256];
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    let mut c = Client::connect(&path).await;
    c.handshake(WireProfile::Draft).await.unwrap();
    assert_eq!(c.server, Some(d.id));
}

#[tokio::test]
async fn help_explains_every_option() {
    let out = Command::new(&*BIN)
        .arg("--help")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for opt in [
        "--socket",
        "--abstract",
        "--key",
        "--wire",
        "--admin",
        "--no-admin",
        "--allow-uid",
        "--allow-gid",
        "--max-message",
        "--max-depth",
        "--registration-timeout",
        "--max-clients",
        "--max-clients-per-uid",
        "--max-unregistered",
        "--max-unregistered-per-uid",
        "--max-intros-per-sender",
        "--max-intro-bytes-per-sender",
        "--max-intros-per-target",
        "--max-intro-bytes-per-target",
        "--max-parked-per-target",
        "--max-held-fds",
        "--max-held-bytes",
        "--park-timeout",
        "--send-timeout",
        "--max-refused-per-sender",
        "--max-forwarded-hints",
        "--max-admin-connections",
        "keygen",
        "status",
        "spawn",
    ] {
        assert!(help.contains(opt), "--help does not mention {opt}");
    }
    let out = Command::new(&*BIN)
        .args(["--wire", "bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("use \"draft\" or \"goblins\"")
    );
    // Settings that could serve nobody are refused, naming the option,
    // before anything is created.
    for (opt, value, says) in [
        ("--max-message", "0", "must be at least 512"),
        ("--max-depth", "2", "must be at least 8"),
        ("--park-timeout", "0s", "must be longer than 0"),
        ("--max-intros-per-sender", "0", "must be at least 1"),
        (
            "--max-admin-connections",
            "0",
            "must be at least 1 (to have no admin socket, use --no-admin)",
        ),
    ] {
        let dir = private_dir();
        let out = Command::new(&*BIN)
            .arg("--socket")
            .arg(dir.path().join("run/intro.sock"))
            .arg("--key")
            .arg(dir.path().join("k"))
            .args([opt, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{opt} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{opt} {value}: {says}")), "{err}");
        assert!(!dir.path().join("k").exists(), "{opt}: a key was created");
        assert!(
            !dir.path().join("run").exists(),
            "{opt}: a directory was made"
        );
    }
    let out = Command::new(&*BIN)
        .args(["--park-timeout", "soon"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("not a duration")
    );
}

#[tokio::test]
async fn keygen_writes_a_private_key_once() {
    let dir = private_dir();
    let key = dir.path().join("k.pem");
    let out = Command::new(&*BIN)
        .arg("keygen")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let id = Identity::load(&key).unwrap().designator();
    assert!(text.contains(&format!("id={id}")), "{text}");
    let out = Command::new(&*BIN)
        .arg("keygen")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("refusing to overwrite")
    );
    // The daemon refuses a key file others can read, and says how to fix it.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(&*BIN)
        .arg("--socket")
        .arg(dir.path().join("s"))
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("chmod 600"));
    let _ = Duration::ZERO;
}
