//! `uds-introd spawn`: a child with a pre-connected intro socket, admitted
//! by pid; the daemon ends with the child.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

use common::*;
use uds_handshake::Identity;
use uds_syrup::WireProfile;

const MODE: &str = "UDS_INTROD_TEST_SPAWN";

/// The spawned child (and, in mode `grandchild`, its own child).
#[test]
fn spawn_child_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fd = uds_fdpass::inherit::take_fd_from_env("OCAPN_UDS_INTRO_FD")
            .unwrap()
            .expect("OCAPN_UDS_INTRO_FD");
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
            .args([
                "--exact",
                "spawn_child_main",
                "--nocapture",
                "--test-threads=1",
            ])
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

#[tokio::test]
async fn spawn_runs_a_child_with_a_private_intro_socket() {
    let dir = private_dir();
    let admin = dir.path().join("admin");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("spawn")
            .arg("--admin")
            .arg(&admin)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spawn_child_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MODE, "child")
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    })
    .await
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
