//! The `uds-peer` tool, as separate processes with the real daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use common::*;

fn peer(args: &[&str]) -> Command {
    let mut c = Command::new(PEER_BIN);
    c.args(args).env("RUST_LOG", "warn");
    c
}

/// Starts `uds-peer ... listen` and returns it with its locator.
fn listen(intro: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = peer(&["--intro", intro.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let uri = line
        .trim()
        .strip_prefix("uds-peer ready locator=")
        .unwrap_or_else(|| panic!("no ready line: {line:?}"))
        .to_owned();
    (child, uri)
}

/// Runs `uds-peer connect URI` with `input` on stdin.
fn connect(
    intro: &std::path::Path,
    uri: &str,
    input: &[u8],
    extra: &[&str],
) -> std::process::Output {
    let mut child = peer(&["--intro", intro.to_str().unwrap()])
        .args(extra)
        .args(["connect", uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn listen_echo_and_connect() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), "intro", &[]);
    let (mut echo, uri) = listen(&d.socket, &["listen", "--echo"]);
    assert!(
        uri.contains(&d.id.to_string()),
        "the locator hints the server: {uri}"
    );
    for wire in ["draft", "goblins"] {
        let out = connect(&d.socket, &uri, b"hello, echo\n", &["--wire", wire]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"hello, echo\n");
    }
    // A bigger payload, to cross socket buffers.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = connect(&d.socket, &uri, &big, &[]);
    assert!(
        out.stdout == big,
        "echoed {} of {} bytes",
        out.stdout.len(),
        big.len()
    );
    echo.kill().unwrap();
    echo.wait().unwrap();
}

#[test]
fn listen_bridges_the_first_connection_to_stdio() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), "intro", &[]);
    let key = dir.path().join("listener.key");
    let (mut listener, uri) = listen(&d.socket, &["--key", key.to_str().unwrap(), "listen"]);
    // Each side sends its stdin and prints the other's bytes; both end when
    // both directions are done.
    let mut input = listener.stdin.take().unwrap();
    input.write_all(b"from listener\n").unwrap();
    drop(input);
    let out = connect(&d.socket, &uri, b"from dialer\n", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listened = listener.wait_with_output().unwrap();
    assert!(listened.status.success());
    assert_eq!(listened.stdout, b"from dialer\n");
    assert_eq!(out.stdout, b"from listener\n");
    // --key keeps the same identity across runs.
    let (mut again, uri2) = listen(
        &d.socket,
        &["--key", key.to_str().unwrap(), "listen", "--echo"],
    );
    assert_eq!(uri.split('?').next(), uri2.split('?').next());
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn an_inherited_intro_socket_from_spawn() {
    let dir = private_dir();
    let sock = dir.path().join("spawned.sock");
    // uds-introd runs `uds-peer listen --echo` with a pre-connected socket
    // (OCAPN_UDS_INTRO_FD, pinned with OCAPN_UDS_INTRO_ID) and also listens
    // on a path for everyone else.
    let mut daemon = Command::new(introd_bin())
        .args([
            "spawn",
            "--socket",
            sock.to_str().unwrap(),
            "--",
            PEER_BIN,
            "listen",
            "--echo",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let uri = line
        .trim()
        .strip_prefix("uds-peer ready locator=")
        .unwrap()
        .to_owned();
    let out = connect(&sock, &uri, b"through the lineage\n", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"through the lineage\n");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

/// An error exits at once even when standard input stays open (a terminal,
/// `tail -f | uds-peer ...`): the pending read of stdin must not keep the
/// process alive.
#[test]
fn an_error_exits_while_stdin_stays_open() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), "intro", &["--park-timeout", "300ms"]);
    let nobody = format!(
        "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket?{}=1",
        d.id
    );
    let mut child = peer(&["--intro", d.socket.to_str().unwrap()])
        .args(["--plaintext", "connect", &nobody])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin_kept_open = child.stdin.take().unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("uds-peer still runs after its error, waiting for stdin");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("closed before the peer sent anything"),
        "{err}"
    );
}

#[test]
fn errors_are_clear() {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), "intro", &["--park-timeout", "300ms"]);
    // A bad locator.
    let out = connect(&d.socket, "http://nope", b"", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not start with ocapn://"));
    // A peer nobody registered: the intro expires and the tool says why.
    let nobody = format!(
        "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket?{}=1",
        d.id
    );
    for mode in [&[][..], &["--plaintext"][..]] {
        let out = connect(&d.socket, &nobody, b"anyone?\n", mode);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode:?}: {err}");
        assert!(
            err.contains("before the peer answered")
                || err.contains("closed before the peer sent anything"),
            "{mode:?}: {err}"
        );
    }
    // No introduction server.
    let out = connect(
        &dir.path().join("missing.sock"),
        &nobody,
        b"",
        &["--register-timeout", "0.5"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not register") && err.contains("is uds-introd running?"),
        "{err}"
    );
    // An intro path no socket can have: refused at once, naming the
    // limit, instead of retried until the registration timeout.
    let long = dir.path().join("d".repeat(120)).join("intro.sock");
    let out = connect(&long, &nobody, b"", &["--register-timeout", "5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at most 107 bytes") && !err.contains("WARN"),
        "{err}"
    );
    // --help covers every option.
    let help = peer(&["--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for opt in [
        "--intro",
        "--pin",
        "--key",
        "--wire",
        "--plaintext",
        "--timeout",
        "--register-timeout",
        "listen",
        "connect",
    ] {
        assert!(help.contains(opt), "{opt}");
    }
}
