//! Regression tests for the defects found by trying to break the daemon
//! from outside: costs charged to the wrong client, files it should not
//! touch, limits it did not have.

mod common;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;
use uds_handshake::Identity;
use uds_syrup::{Locator, NewConnection, SCM_RIGHTS_BODY, WireProfile};

/// A locator of `who` carrying `n` hints of about 1,000 bytes each (not
/// server designators).
fn bloated(who: &Locator, n: usize) -> Locator {
    let mut loc = who.clone();
    for i in 0..n {
        loc.add_hint(format!("{i:0>1000}"));
    }
    loc
}

/// Sends an intro with an arbitrary record; returns our end.
async fn raw_intro(c: &Client, from: &Locator, to: &Locator) -> tokio::net::UnixStream {
    use std::os::fd::AsFd;
    let (ours, theirs) = uds_fdpass::socketpair().unwrap();
    let record = NewConnection {
        from: from.clone(),
        to: to.clone(),
    };
    c.send(&record.to_value().encode()).await;
    c.stream
        .send(&SCM_RIGHTS_BODY, &[theirs.as_fd()])
        .await
        .unwrap();
    drop(theirs);
    to_tokio(ours)
}

fn to_tokio(fd: std::os::fd::OwnedFd) -> tokio::net::UnixStream {
    let s = std::os::unix::net::UnixStream::from(fd);
    s.set_nonblocking(true).unwrap();
    tokio::net::UnixStream::from_std(s).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Regression: a registered client parks intros with huge `from` hints for a
/// victim's designator, again and again; the victim registers and must stay
/// registered and reachable (the costs are the sender's).
#[tokio::test]
async fn a_client_cannot_keep_a_victim_from_staying_registered() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let attacker = Client::register(&d.socket, WireProfile::Draft).await;
    d.wait_counter("registered", 1).await;
    let victim_id = Arc::new(Identity::generate());
    let victim_loc = victim_id.locator();
    let fat = bloated(&attacker.locator(), 60);
    for _ in 0..20 {
        drop(raw_intro(&attacker, &fat, &victim_loc).await);
    }
    // At most 16 are kept (--max-intros-per-target), the rest refused. All
    // 20 must have been read before the victim registers: any read after
    // would be deliverable, and queued.
    d.wait_counter("intros-received", 20).await;
    assert_eq!(d.counter("intros-parked").await, 16);
    let mut victim = Client::register_as(&d.socket, victim_id, WireProfile::Draft).await;
    d.wait_counter("registered", 2).await;
    // Every intro that was accepted reaches the victim, each bounded.
    let accepted = d.counter("intros-parked").await;
    for _ in 0..accepted {
        let (record, _sock) = victim.expect_intro().await;
        assert_eq!(record.from, attacker.locator());
        assert_eq!(record.from.hints().len(), 0, "non-server hints are dropped");
    }
    // The attacker keeps going while the victim is registered.
    for _ in 0..3 {
        for _ in 0..20 {
            drop(raw_intro(&attacker, &fat, &victim_loc).await);
        }
        for _ in 0..20 {
            victim.expect_intro().await;
        }
    }
    let friend = Client::register(&d.socket, WireProfile::Goblins).await;
    d.wait_counter("registered", 3).await;
    exchange(&friend, &mut victim).await;
    let status = d.status().await;
    for zero in ["not-reading=0", "replaced=0", "protocol=0"] {
        assert!(status.contains(zero), "{zero}: {status}");
    }
}

/// Regression: one client sends 2000 intros in a burst to a peer that reads
/// steadily: the reader is never disconnected, and every intro arrives.
#[tokio::test]
async fn an_honest_burst_reaches_a_steady_reader() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let sender = Arc::new(Client::register(&d.socket, WireProfile::Draft).await);
    let mut reader = Client::register(&d.socket, WireProfile::Draft).await;
    d.wait_counter("registered", 2).await;
    let to = reader.locator();
    let s = sender.clone();
    let burst = tokio::spawn(async move {
        for _ in 0..2000 {
            drop(s.intro_to(&to).await);
        }
    });
    for i in 0..2000 {
        let (record, _sock) = reader.expect_intro().await;
        assert_eq!(record.from, sender.locator());
        if i % 100 == 0 {
            // A reader that takes its time now and then.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    burst.await.unwrap();
    d.wait_counter("intros-forwarded", 2000).await;
    let status = d.status().await;
    assert!(status.contains("registered: 2"), "{status}");
    assert!(status.contains("not-reading=0"), "{status}");
    assert!(status.contains("sender-quota=0"), "{status}");
}

/// Regression: parked intros are bounded in bytes: 20 senders x 64 intros
/// with ~60 KB of hints each for unregistered targets do not make the
/// daemon hold their bytes.
#[tokio::test]
async fn parked_intros_are_bounded_in_bytes() {
    raise_fd_limit();
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let mut senders = Vec::new();
    for _ in 0..20 {
        senders.push(Client::register(&d.socket, WireProfile::Draft).await);
    }
    d.wait_counter("registered", 20).await;
    let before = rss_kib(d.pid());
    let mut kept = Vec::new();
    for s in &senders {
        let fat = bloated(&s.locator(), 58);
        for _ in 0..64 {
            let nobody = Locator::unix(Identity::generate().designator());
            kept.push(raw_intro(s, &fat, &nobody).await);
        }
    }
    d.wait_counter("intros-parked", 20 * 64).await;
    let grown = rss_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < 24 << 10,
        "RSS grew by {grown} KiB for {} intros",
        20 * 64
    );
    let status = d.status().await;
    let held: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("intro-bytes-held: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(held <= 8 << 20, "intro-bytes-held {held}");
    assert!(
        held < 20 * 64 * 1000,
        "what is held is the bounded records, not what was sent: {held}"
    );
}

/// Regression: `--admin FILE` must not remove a regular file.
#[tokio::test]
async fn the_admin_path_never_removes_a_file() {
    let dir = private_dir();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"keep me").unwrap();
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(dir.path().join("intro.sock"))
        .arg("--admin")
        .arg(&notes);
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&notes).unwrap(), b"keep me");
}

/// A socket path longer than the kernel takes (107 bytes) is refused with
/// the limit named, before anything is created (key, directory, socket):
/// the socket's directory used to be made (and left behind) before `bind`
/// failed. An admin path pushed over the limit by its default `.admin`
/// suffix is refused the same way.
#[tokio::test]
async fn a_socket_path_too_long_for_the_kernel_is_refused_before_anything_is_created() {
    let dir = private_dir();
    let base = dir.path().as_os_str().len();
    // Too long by itself, in a directory that does not exist yet.
    let sub = dir.path().join("a".repeat(120 - base.min(100)));
    let socket = sub.join("intro.sock");
    assert!(socket.as_os_str().len() > 107);
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--key")
        .arg(dir.path().join("k"));
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 107"), "{err}");
    assert!(!sub.exists(), "the socket's directory was created: {err}");
    assert!(!dir.path().join("k").exists(), "a key was created: {err}");

    // The socket fits, its default admin path (+ ".admin") does not; the
    // socket's directory does not exist yet.
    let sub = dir.path().join("d");
    let name_len = 107 - base - 3;
    let socket = sub.join("s".repeat(name_len));
    assert_eq!(socket.as_os_str().len(), 107);
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--key")
        .arg(dir.path().join("k"));
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at most 107") && err.contains("--admin PATH"),
        "{err}"
    );
    assert!(!sub.exists(), "the socket's directory was created: {err}");
    assert!(!dir.path().join("k").exists(), "a key was created: {err}");

    // The same limit for an abstract name.
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--abstract").arg("x".repeat(108)).arg("--no-admin");
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is 108 bytes long") && err.contains("at most 107"),
        "{err}"
    );
}

/// Regression: `--admin` in a directory others can write to is refused, as
/// `--socket` is.
#[tokio::test]
async fn the_admin_socket_needs_a_private_directory() {
    let dir = private_dir();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(dir.path().join("intro.sock"))
        .arg("--admin")
        .arg(open.join("admin"));
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by everyone"), "{err}");
    assert!(!open.join("admin").exists());
}

/// The way to the socket's directory is checked too: a directory above it
/// that others may write to without the sticky bit (they could rename the
/// socket's directory and put their own in its place), or a symlink on the
/// path owned by another user (who could re-point it), is refused.
#[tokio::test]
async fn a_socket_directory_others_could_swap_is_refused() {
    let dir = private_dir();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("mine").join("intro.sock");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket").arg(&socket).arg("--no-admin");
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by others and not sticky (mode 0777)"),
        "{err}"
    );
    assert!(!open.join("mine").exists(), "nothing is created there");
    // Sticky, as /tmp is: others can no longer rename what is ours.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket").arg(&socket).arg("--no-admin");
    let d = Daemon::spawn(cmd, dir.path(), socket.clone());
    drop(d);

    if !nix::unistd::geteuid().is_root() {
        println!("skipped the symlink case: giving a symlink to another user needs root");
        return;
    }
    let safe = dir.path().join("safe");
    std::fs::create_dir(&safe).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&safe, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(4242), Some(4242)).unwrap();
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(link.join("intro.sock"))
        .arg("--no-admin");
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a symlink owned by uid 4242"), "{err}");
    assert!(!safe.join("intro.sock").exists());
}

/// Regression: a daemon that exits must not remove a socket file that a newer
/// daemon has bound at the same path.
#[tokio::test]
async fn an_exiting_daemon_leaves_a_newer_daemons_socket() {
    let dir = private_dir();
    let mut old = Daemon::start(dir.path(), &["--no-admin"]);
    // The path is taken over (the old file removed by hand, a new daemon
    // started there).
    std::fs::remove_file(&old.socket).unwrap();
    let new_dir = dir.path();
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(&old.socket)
        .arg("--key")
        .arg(new_dir.join("new.key"))
        .arg("--no-admin");
    let new = Daemon::spawn(cmd, new_dir, old.socket.clone());
    assert!(old.terminate().success());
    assert!(
        old.socket.exists(),
        "the newer daemon's socket is still there"
    );
    let mut c = Client::connect(&new.socket).await;
    c.handshake(WireProfile::Draft).await.unwrap();
    assert_eq!(c.server, Some(new.id));
}

/// Regression: probing a leftover socket never blocks, even when its backlog
/// is full (someone listens: it is in use).
#[test]
fn probing_a_socket_with_a_full_backlog_does_not_block() {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
    };
    use std::os::fd::AsRawFd;
    let dir = private_dir();
    let path = dir.path().join("busy.sock");
    let l = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(l.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
    listen(&l, Backlog::new(0).unwrap()).unwrap();
    // Fill the backlog with connections nobody accepts.
    let mut held = Vec::new();
    loop {
        let c = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let r = connect(c.as_raw_fd(), &UnixAddr::new(&path).unwrap());
        held.push(c);
        if r.is_err() {
            break;
        }
        assert!(held.len() < 64, "the backlog never filled");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(
            uds_introd::Listener::bind_path(&p, 0o600)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let result = rx
        .recv_timeout(PATIENCE)
        .expect("bind_path blocked on a socket with a full backlog");
    let err = result.expect_err("someone listens there");
    assert!(err.contains("already listening"), "{err}");
}

/// Regression: an intro whose `to` is written in upper case is forwarded in
/// the canonical lower case (Goblins rejects upper case).
#[tokio::test]
async fn an_upper_case_target_is_forwarded_in_lower_case() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let a = Client::register(&d.socket, WireProfile::Draft).await;
    let mut b = Client::register(&d.socket, WireProfile::Goblins).await;
    d.wait_counter("registered", 2).await;
    let upper = b.locator().designator().to_uppercase();
    let raw = format!(
        "<18'uds:new-connection{}<10'ocapn-peer18'unix-domain-socket52\"{upper}f>>",
        String::from_utf8(a.locator().encode()).unwrap()
    );
    let (_ours, theirs) = uds_fdpass::socketpair().unwrap();
    a.send(raw.as_bytes()).await;
    a.stream
        .send(&SCM_RIGHTS_BODY, &[std::os::fd::AsFd::as_fd(&theirs)])
        .await
        .unwrap();
    match b.next().await {
        Some(uds_handshake::channel::ChannelEvent::Introduction { raw, .. }) => {
            let text = String::from_utf8_lossy(&raw).into_owned();
            assert!(text.contains(b.locator().designator()), "{text}");
            assert!(!text.contains(&upper), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

/// Regression: admin connections are limited; idle ones beyond the limit are
/// closed at once instead of holding fds.
#[tokio::test]
async fn admin_connections_are_limited() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--max-admin-connections", "4"]);
    let baseline = d.baseline().await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(
            tokio_seqpacket::UnixSeqpacket::connect(&d.admin)
                .await
                .unwrap(),
        );
    }
    d.wait_log("--max-admin-connections").await;
    // At most 4 are held (plus those being refused right now).
    let start = Instant::now();
    while d.fd_count() > baseline + 4 {
        assert!(
            start.elapsed() < PATIENCE,
            "the daemon holds {} fds for idle admin connections (baseline {baseline})",
            d.fd_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(idle);
    d.wait_fds(baseline).await;
    assert!(d.status().await.contains("clients: 0"));
}

/// Regression: `uds-introd status` does not read an unbounded reply from
/// something that is not the daemon.
#[test]
fn status_refuses_an_endless_reply() {
    let dir = private_dir();
    let path = dir.path().join("fake.admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(async { tokio_seqpacket::UnixSeqpacketListener::bind(&path) });
    let mut listener = listener.unwrap();
    let server = std::thread::spawn(move || {
        rt.block_on(async move {
            let conn = listener.accept().await.unwrap();
            let mut req = [0u8; 64];
            let _ = conn.recv(&mut req).await;
            let packet = vec![b'x'; 16 << 10];
            while conn.send(&packet).await.is_ok() {}
        })
    });
    let mut child = Command::new(&*BIN)
        .args(["status", "--admin"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > PATIENCE * 3 {
            child.kill().unwrap();
            panic!("uds-introd status kept reading an endless reply");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("longer than"), "{err}");
    drop(server);
}

/// Regression: a key file that belongs to another user is refused, even with
/// mode 0600.
#[tokio::test]
async fn a_key_file_of_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: changing a file's owner needs root");
        return;
    }
    let dir = private_dir();
    let key = dir.path().join("their.key");
    Identity::generate().save(&key).unwrap();
    std::os::unix::fs::chown(&key, Some(65534), Some(65534)).unwrap();
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(dir.path().join("intro.sock"))
        .arg("--key")
        .arg(&key);
    let out = run_to_exit(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owned by uid 65534"), "{err}");
}

/// Regression: a newline in the socket path would split the `ready` line (and
/// could forge its `id=`): such paths are refused.
#[tokio::test]
async fn a_control_character_in_a_path_is_refused() {
    let dir = private_dir();
    let forged = dir.path().join(
        "x id=25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena\nuds-introd ready socket=y",
    );
    for args in [
        vec!["--socket".to_owned(), forged.to_string_lossy().into_owned()],
        vec![
            "--socket".to_owned(),
            dir.path().join("ok.sock").to_string_lossy().into_owned(),
            "--admin".to_owned(),
            forged.to_string_lossy().into_owned(),
        ],
        vec!["--abstract".to_owned(), "a\nb".to_owned()],
    ] {
        let mut cmd = Command::new(&*BIN);
        cmd.args(&args);
        let out = run_to_exit(cmd);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "no ready line: {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("control character"), "{err}");
        // Not on stderr either: the path is shown escaped.
        assert!(!err.contains("\nuds-introd ready"), "{err}");
    }
}

/// Regression: with `--allow-gid`, the socket file is given to that group
/// (mode 0660), or the group's members could not reach it.
#[tokio::test]
async fn allow_gid_gives_the_socket_to_the_group() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: giving a file to another group needs root");
        return;
    }
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--allow-gid", "4321"]);
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.gid(), 4321);
    assert_eq!(meta.mode() & 0o777, 0o660);
}

/// With other users admitted, a socket directory the daemon creates is 0711
/// so that they can enter it (it was 0700: the socket was unreachable for
/// exactly the users `--allow-uid` names), and a directory on the way that
/// they cannot enter is named in a warning.
#[tokio::test]
async fn a_socket_directory_made_for_other_users_lets_them_in() {
    let dir = private_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let start = |sub: &str| {
        let socket = dir.path().join(sub).join("intro.sock");
        let mut cmd = Command::new(&*BIN);
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(dir.path().join("server.key"))
            .args(["--allow-uid", "4242"]);
        Daemon::spawn(cmd, dir.path(), socket)
    };
    let d = start("shared");
    let meta = std::fs::metadata(dir.path().join("shared")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o711);
    assert_eq!(std::fs::metadata(&d.socket).unwrap().mode() & 0o777, 0o666);
    // The test's own directory, above it, is still closed to others.
    let closed = std::fs::canonicalize(dir.path()).unwrap();
    d.wait_log(&format!("cannot enter {} (mode 0700)", closed.display()))
        .await;
    drop(d);

    // Once the way is open, nothing to warn about.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let d = start("shared2");
    d.wait_log("listening").await;
    assert!(!d.log().contains("cannot enter"), "{}", d.log());
}

/// Two daemons started at the same moment on one path, over a leftover
/// socket file: they take turns (the directory is locked from the probe to
/// the bind), so exactly one serves and the other refuses because the path
/// is in use. Without the lock both could find the leftover refusing
/// connections, and the second would remove the first's new socket.
#[test]
fn two_daemons_starting_at_once_never_remove_each_others_socket() {
    use std::io::BufRead;
    for round in 0..20 {
        let dir = private_dir();
        let socket = dir.path().join("intro.sock");
        // A leftover: a socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let start = || {
            Command::new(&*BIN)
                .arg("--socket")
                .arg(&socket)
                .arg("--no-admin")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut daemons = vec![start(), start()];
        // Each prints its ready line, or exits.
        let ready: Vec<bool> = daemons
            .iter_mut()
            .map(|d| {
                let mut line = String::new();
                std::io::BufReader::new(d.stdout.take().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                line.starts_with("uds-introd ready")
            })
            .collect();
        assert_eq!(
            ready.iter().filter(|r| **r).count(),
            1,
            "round {round}: exactly one daemon serves: {ready:?}"
        );
        let loser = ready.iter().position(|r| !r).unwrap();
        let out = daemons.remove(loser).wait_with_output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("already listening on"), "round {round}: {err}");
        // The winner's socket is there and answers.
        std::os::unix::net::UnixStream::connect(&socket)
            .unwrap_or_else(|e| panic!("round {round}: the serving daemon's socket: {e}"));
        let mut winner = daemons.remove(0);
        let _ = winner.kill();
        let _ = winner.wait();
    }
}

/// A client connecting in a loop and refused each time does not flood the
/// log: the 1st, 2nd, 4th, 8th... refusal of a reason is a warning, the
/// others are at debug level.
#[tokio::test]
async fn refused_connections_are_logged_sparingly() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--max-clients", "1"]);
    let _first = Client::connect(&d.socket).await;
    d.wait_counter("unregistered", 1).await;
    for _ in 0..10 {
        let mut c = Client::connect(&d.socket).await;
        c.expect_closed().await;
    }
    d.wait_counter("max-clients", 10).await;
    d.wait_log("refused=10").await;
    assert_eq!(d.warnings("refused a client"), 4, "{}", d.log());
}

/// Clients closed again and again for one reason do not flood the log
/// either: the 1st, 2nd, 4th, 8th... of a reason is a warning, the others
/// are at debug level. Each used to be a warning (two processes with one
/// identity made one per replacement).
#[tokio::test]
async fn closed_clients_are_logged_sparingly() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &["--registration-timeout", "200ms"]);
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(Client::connect(&d.socket).await);
    }
    for c in &mut silent {
        c.expect_closed().await;
    }
    d.wait_counter("registration-timeout", 10).await;
    d.wait_log("refused=10").await;
    assert_eq!(d.warnings("closed a client"), 4, "{}", d.log());
}

/// Regression: the library's `Config::default()` admits the user running it
/// (it used to admit only root).
#[tokio::test]
async fn a_server_with_the_default_config_admits_its_own_user() {
    let dir = private_dir();
    let path = dir.path().join("lib.sock");
    let listener = uds_introd::Listener::bind_path(&path, 0o600).unwrap();
    let server = uds_introd::Server::new(
        Arc::new(Identity::generate()),
        uds_introd::Config::default(),
    );
    let s = server.clone();
    let listener = listener.activate().unwrap();
    let serving = tokio::spawn(async move { s.serve(listener.listener()).await });
    let mut c = Client::connect(&path).await;
    c.handshake(WireProfile::Goblins).await.unwrap();
    let start = Instant::now();
    while server.status().router.registered == 0 {
        assert!(start.elapsed() < PATIENCE, "never registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        server
            .status()
            .counters()
            .refusals(uds_introd::Reason::Policy),
        0
    );
    server.shutdown();
    serving.await.unwrap();
}

/// The intro's socket is closed when the sender leaves before its target
/// registers (nobody is left to pay for it).
#[tokio::test]
async fn a_parked_intro_is_closed_when_its_sender_leaves() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), &[]);
    let sender = Client::register(&d.socket, WireProfile::Draft).await;
    d.wait_counter("registered", 1).await;
    let nobody = Locator::unix(Identity::generate().designator());
    let mut ours = sender.intro_to(&nobody).await;
    d.wait_counter("intros-parked", 1).await;
    drop(sender);
    let mut b = [0u8; 1];
    assert_eq!(ours.read(&mut b).await.unwrap(), 0);
    d.wait_counter("intros-dropped", 1).await;
}
