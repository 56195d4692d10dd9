//! Helpers shared by this crate's tests: the vectors' session and the
//! fd-counting harness.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use uds_e2ee::{Handshake, LocalStatic, Transport};
use uds_handshake::Identity;

/// `tests/vectors/e2ee.tsv`: name → bytes.
pub fn vectors() -> BTreeMap<String, Vec<u8>> {
    let text = include_str!("../vectors/e2ee.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let name = cols.next().unwrap().to_owned();
            let bytes = hex::decode(cols.next().unwrap()).unwrap();
            (name, bytes)
        })
        .collect()
}

/// One row as a fixed-size array.
pub fn key(v: &BTreeMap<String, Vec<u8>>, name: &str) -> [u8; 32] {
    v[name].as_slice().try_into().unwrap()
}

/// The vectors' parties.
pub struct Vectors {
    pub rows: BTreeMap<String, Vec<u8>>,
    pub alice_id: Identity,
    pub bob_id: Identity,
    pub alice: Arc<LocalStatic>,
    pub bob: Arc<LocalStatic>,
}

impl Vectors {
    pub fn load() -> Vectors {
        let rows = vectors();
        let alice_id = Identity::from_secret_bytes(key(&rows, "alice-ed25519-seed"));
        let bob_id = Identity::from_secret_bytes(key(&rows, "bob-ed25519-seed"));
        let alice = Arc::new(LocalStatic::from_secret_bytes(
            &alice_id,
            key(&rows, "alice-x25519-static"),
        ));
        let bob = Arc::new(LocalStatic::from_secret_bytes(
            &bob_id,
            key(&rows, "bob-x25519-static"),
        ));
        Vectors {
            rows,
            alice_id,
            bob_id,
            alice,
            bob,
        }
    }

    pub fn row(&self, name: &str) -> &[u8] {
        &self.rows[name]
    }

    /// alice's initiator with the vectors' ephemeral key.
    pub fn alice_initiator(&self) -> Handshake {
        Handshake::initiator_with_ephemeral(
            self.alice.clone(),
            self.bob_id.designator(),
            key(&self.rows, "alice-x25519-ephemeral"),
        )
    }

    /// bob's responder with the vectors' ephemeral key.
    pub fn bob_responder(&self) -> Handshake {
        Handshake::responder_with_ephemeral(
            self.bob.clone(),
            self.alice_id.designator(),
            key(&self.rows, "bob-x25519-ephemeral"),
        )
    }

    /// Both transports after the vectors' handshake: (alice, bob).
    pub fn transports(&self) -> (Transport, Transport) {
        let mut a = self.alice_initiator();
        let mut b = self.bob_responder();
        drive(&mut a, &mut b);
        (a.finish().unwrap().0, b.finish().unwrap().0)
    }
}

/// Hands the two handshakes' output across until both are done.
pub fn drive(a: &mut Handshake, b: &mut Handshake) {
    while !(a.is_finished() && b.is_finished()) {
        let out = a.pending_output().to_vec();
        a.output_sent(out.len());
        assert_eq!(b.read(&out).unwrap(), out.len());
        let out = b.pending_output().to_vec();
        b.output_sent(out.len());
        assert_eq!(a.read(&out).unwrap(), out.len());
    }
}

/// fd counts are per process: tests that count must not overlap.
pub static LOCK: Mutex<()> = Mutex::new(());

/// Takes the lock (even after another test panicked while holding it).
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many fds this process has open.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The open fds and what they are, for leak reports.
pub fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    v.sort();
    v
}
