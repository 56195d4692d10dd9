//! `uds-introd spawn`: a child with a pre-connected intro socket, admitted
//! by pid; the daemon ends with the child.
//!
//! This test runs without libtest's harness: the same binary is the test
//! (no `UDS_INTROD_TEST_SPAWN` in the environment) and the child the daemon
//! starts (with it), so the child's code is not a test of its own.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

use common::*;
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::WireProfile;

const MODE: &str = "UDS_INTROD_TEST_SPAWN";

fn main() {
    match std::env::var(MODE) {
        Ok(mode) => child(&mode),
        Err(_) => {
            let tests: [(&str, fn()); 2] = [
                (
                    "spawn_runs_a_child_with_a_private_intro_socket",
                    spawn_runs_a_child_with_a_private_intro_socket,
                ),
                (
                    "a_child_that_writes_at_once_is_admitted",
                    a_child_that_writes_at_once_is_admitted,
                ),
            ];
            let filter: Vec<String> = std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect();
            for (name, test) in tests {
                if filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())) {
                    print!("test {name} ... ");
                    test();
                    println!("ok");
                }
            }
        }
    }
}

/// The spawned child (and, in mode `grandchild`, its own child).
fn child(mode: &str) {
    let fd = uds_fdpass::inherit::take_fd_from_env("OCAPN_UDS_INTRO_FD")
        .unwrap()
        .expect("OCAPN_UDS_INTRO_FD");
    if mode == "fast" {
        // Write the registration before anything else, as a fast child
        // would: its first bytes must carry its credentials.
        let identity = Arc::new(Identity::generate());
        let hs = ClientHandshake::new(identity.clone(), ClientConfig::default());
        let mut std = std::os::unix::net::UnixStream::from(fd);
        std::io::Write::write_all(&mut std, &hs.register_message()).unwrap();
        return fast_child_finish(std, identity, hs);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server: uds_syrup::Designator = std::env::var("OCAPN_UDS_INTRO_ID")
            .unwrap()
            .parse()
            .unwrap();
        let mut c = Client {
            stream: uds_fdpass::FdStream::try_from_fd(fd).unwrap(),
            chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
            identity: Arc::new(Identity::generate()),
            server: None,
        };
        if mode == "grandchild" {
            // Not the spawned pid: the daemon must refuse what we send.
            let _ = c.stream.send(b"t", &[]).await;
            c.expect_closed().await;
            println!("RESULT grandchild closed");
            return;
        }
        c.handshake(WireProfile::Draft).await.unwrap();
        assert_eq!(
            c.server,
            Some(server),
            "OCAPN_UDS_INTRO_ID names the server"
        );
        println!("RESULT child registered {}", c.identity.designator());
        // Hand the same socket to a grandchild: it must not be admitted.
        let inheritable = uds_fdpass::inherit::inheritable(&c.stream).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .env(MODE, "grandchild")
            .env("OCAPN_UDS_INTRO_FD", inheritable.as_raw_fd().to_string())
            .output()
            .unwrap();
        drop(inheritable);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("RESULT grandchild closed"), "{text}");
        println!("RESULT grandchild refused");
        std::process::exit(7);
    });
}

/// Finishes the fast child's registration; exits 0 if the daemon admitted
/// it, 3 if it was closed.
fn fast_child_finish(
    std: std::os::unix::net::UnixStream,
    identity: Arc<Identity>,
    mut hs: ClientHandshake,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        std.set_nonblocking(true).unwrap();
        let mut c = Client {
            stream: uds_fdpass::FdStream::try_from_std(std).unwrap(),
            chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
            identity,
            server: None,
        };
        let response = match c.next().await {
            Some(uds_handshake::channel::ChannelEvent::Message { value, .. }) => value,
            _ => {
                println!("RESULT fast child closed");
                std::process::exit(3);
            }
        };
        let done = hs.receive(&response).unwrap();
        c.send(&done.signature_message).await;
        println!("RESULT fast child registered");
    });
}

fn spawn_runs_a_child_with_a_private_intro_socket() {
    let dir = private_dir();
    let admin = dir.path().join("admin");
    let out = Command::new(&*BIN)
        .arg("spawn")
        .arg("--admin")
        .arg(&admin)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .env(MODE, "child")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("RESULT child registered"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("RESULT grandchild refused"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("wrong-pid"),
        "the refusal is logged: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the daemon exits with the child's status"
    );
}

/// `SO_PASSCRED` must be on before the child starts: bytes written before
/// it is turned on carry no credentials, and the child would be refused
/// as `wrong-pid`.
fn a_child_that_writes_at_once_is_admitted() {
    for _ in 0..10 {
        let out = Command::new(&*BIN)
            .args(["spawn", "--no-admin", "--"])
            .arg(std::env::current_exe().unwrap())
            .env(MODE, "fast")
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("RESULT fast child registered"),
            "{stdout}\n{stderr}"
        );
        assert!(!stderr.contains("wrong-pid"), "{stderr}");
        assert!(out.status.success(), "{stdout}\n{stderr}");
    }
}
