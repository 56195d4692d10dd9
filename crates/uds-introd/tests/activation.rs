//! The systemd units in `contrib/systemd`: the daemon started the way the
//! socket unit starts it (by `systemd-socket-activate`, with the service's
//! own command line), and the unit files checked against the CLI and, where
//! `systemd-analyze` is installed, against systemd.

mod common;

use std::io::Read;
use std::os::unix::net::{UnixDatagram, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use uds_handshake::Identity;
use uds_handshake::channel::IntroChannel;
use uds_syrup::WireProfile;

fn unit_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/systemd")
        .join(name)
}

/// The value of `key=` in a unit file (the first occurrence).
fn unit_value(name: &str, key: &str) -> String {
    let text = std::fs::read_to_string(unit_file(name)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{name} has no {key}="))
        .trim()
        .to_owned()
}

/// The service's `ExecStart=` with the binary replaced by the one under test
/// and `%S` (the state directory root) by `state`. Any other specifier fails
/// the test, so that a change to the unit is noticed here.
fn exec_start(state: &Path) -> Vec<String> {
    let line = unit_value("ocapn-introd.service", "ExecStart");
    let mut words = line.split_whitespace();
    let program = words.next().unwrap();
    assert!(
        program.ends_with("/uds-introd"),
        "ExecStart runs {program}, not uds-introd"
    );
    let mut out = vec![BIN.to_owned()];
    for w in words {
        let w = w.replace("%S", &state.display().to_string());
        assert!(!w.contains('%'), "unknown specifier in ExecStart: {w}");
        out.push(w);
    }
    out
}

/// A program on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn own_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The tests of this file run one at a time, so that counting this
/// process's fds is not disturbed by another test's child processes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn socket_activation_starts_the_units_command_and_introduces_two_peers() {
    let Some(activate) = find_program("systemd-socket-activate") else {
        println!("skipped: systemd-socket-activate is not installed");
        return;
    };
    let _serial = SERIAL.lock().await;
    let fds_before = own_fd_count();
    let dir = private_dir();
    // The socket unit's %t/ocapn/intro.sock, and the service's
    // StateDirectory=ocapn below %S.
    let socket = dir.path().join("intro.sock");
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("ocapn")).unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let args = exec_start(&state);
    let mut cmd = Command::new(activate);
    // Without --accept: one daemon for every connection, started (exec'd in
    // place of systemd-socket-activate) when the first client connects.
    cmd.arg("--listen")
        .arg(&socket)
        .arg("--fdname=intro")
        .args(["-E", "RUST_LOG"])
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .args(&args);

    // The first client: connects as soon as the socket listens (it is
    // bound a moment before), which starts the daemon.
    let first = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            loop {
                match StdStream::connect(&socket) {
                    Ok(s) => return s,
                    Err(e) => assert!(
                        start.elapsed() < PATIENCE,
                        "the activated socket never listened: {e}"
                    ),
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    let mut d = Daemon::spawn(cmd, dir.path(), socket.clone());
    let first = first.join().unwrap();

    // It is the daemon, in place of the activator.
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", d.pid())).unwrap(),
        std::fs::canonicalize(&*BIN).unwrap()
    );
    assert!(
        state.join("ocapn/introd.key").exists(),
        "the key is created where the unit says"
    );
    notify
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    // The connection that triggered the start is served like any other.
    first.set_nonblocking(true).unwrap();
    let mut a = Client {
        stream: uds_fdpass::FdStream::from(tokio::net::UnixStream::from_std(first).unwrap()),
        chan: IntroChannel::new(uds_syrup::Limits::intro_channel()),
        identity: Arc::new(Identity::generate()),
        server: None,
    };
    a.handshake(WireProfile::Draft).await.unwrap();
    assert_eq!(a.server, Some(d.id));
    let mut b = Client::register(&socket, WireProfile::Goblins).await;
    d.wait_counter("registered", 2).await;
    let baseline = d.baseline().await;
    exchange(&a, &mut b).await;
    exchange(&b, &mut a).await;
    assert_eq!(d.counter("intros-forwarded").await, 2);
    d.wait_fds(baseline).await;
    // The admin socket is found at its default place next to the activated
    // socket (Daemon::admin is the socket path + ".admin").
    assert!(d.status().await.contains("registered: 2"));

    drop(a);
    drop(b);
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(!d.admin.exists(), "the daemon removes its admin socket");
    assert!(
        socket.exists(),
        "the activated socket belongs to the service manager, not the daemon"
    );
    drop(d);
    drop(notify);
    // The threads reading the daemon's output close their pipes when they
    // see its end.
    let start = Instant::now();
    while own_fd_count() != fds_before {
        assert!(
            start.elapsed() < PATIENCE,
            "the test leaked fds: {} open, {fds_before} before",
            own_fd_count()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn units_match_the_command_line() {
    let _serial = SERIAL.blocking_lock();
    // Every option in ExecStart exists.
    let out = Command::new(&*BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let args = exec_start(Path::new("/state"));
    for arg in &args[1..] {
        if let Some(option) = arg.strip_prefix("--") {
            let name = option.split('=').next().unwrap();
            assert!(
                help.contains(&format!("--{name} ")),
                "ExecStart uses --{name}, which uds-introd --help does not list"
            );
        }
    }
    // The socket unit listens where the daemon (and `uds-introd status`)
    // look by default: %t is $XDG_RUNTIME_DIR for per-user units.
    let listen = unit_value("ocapn-introd.socket", "ListenStream");
    let runtime = private_dir();
    let expected_admin = format!(
        "{}.admin",
        listen.replace("%t", &runtime.path().display().to_string())
    );
    let out = Command::new(&*BIN)
        .arg("status")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "no daemon runs there");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("admin socket {expected_admin}")),
        "uds-introd status looks elsewhere than the socket unit's ListenStream: {err}"
    );
    // The service needs the socket unit.
    assert_eq!(
        unit_value("ocapn-introd.service", "Requires"),
        "ocapn-introd.socket"
    );
    assert_eq!(unit_value("ocapn-introd.service", "Type"), "notify");
}

/// Copies the units into `dir` with ExecStart pointing at the binary under
/// test (systemd checks that the program exists).
fn units_in(dir: &Path) -> (PathBuf, PathBuf) {
    let service = std::fs::read_to_string(unit_file("ocapn-introd.service")).unwrap();
    let service = service.replace("%h/.cargo/bin/uds-introd", &BIN);
    let s = dir.join("ocapn-introd.socket");
    let v = dir.join("ocapn-introd.service");
    std::fs::copy(unit_file("ocapn-introd.socket"), &s).unwrap();
    std::fs::write(&v, service).unwrap();
    (s, v)
}

fn systemd_analyze(dir: &Path, args: &[&str], units: &[&Path]) -> (bool, String) {
    let mut child = Command::new(find_program("systemd-analyze").unwrap())
        .arg("--user")
        .args(args)
        .args(units)
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let ok = child.wait().unwrap().success();
    (ok, format!("{out}{err}"))
}

#[test]
fn units_pass_systemd_analyze() {
    if find_program("systemd-analyze").is_none() {
        println!("skipped: systemd-analyze is not installed");
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let dir = private_dir();
    let (socket, service) = units_in(dir.path());
    // Unknown keys and bad values are only warnings for systemd: fail on
    // any message about our units.
    let (ok, text) = systemd_analyze(dir.path(), &["verify"], &[&socket, &service]);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(
        !text.contains("ocapn-introd"),
        "systemd-analyze verify complains:\n{text}"
    );
    // The hardening stays in systemd's "OK" band (exposure below 2.0 of 10).
    let (ok, text) = systemd_analyze(
        dir.path(),
        &["security", "--offline=yes", "--threshold=20"],
        &[&service],
    );
    if text.contains("unrecognized option") || text.contains("Unknown option") {
        println!("skipped the exposure check: this systemd-analyze has no --offline");
        return;
    }
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("(no overall exposure line)");
    println!("{overall}");
    assert!(ok, "exposure above 2.0:\n{text}");
}
