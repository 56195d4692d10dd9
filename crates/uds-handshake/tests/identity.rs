//! Identity key files: round trip, permissions, refusals, secrecy.

use std::os::unix::fs::PermissionsExt;

use uds_handshake::{HandshakeError, Identity, IdentityError};
use uds_syrup::Value;

#[test]
fn save_and_load_round_trip_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.pem");
    let id = Identity::generate();
    id.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let back = Identity::load(&path).unwrap();
    assert_eq!(back.designator(), id.designator());
    // Never overwrites.
    let err = Identity::generate().save(&path).unwrap_err();
    assert!(matches!(err, IdentityError::Exists(_)), "{err}");
    assert_eq!(Identity::load(&path).unwrap().designator(), id.designator());
}

/// A fresh account has no `~/.local/state/ocapn`: the missing directories
/// are created, private.
#[test]
fn load_or_generate_creates_missing_directories_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".local/state/ocapn/introd.key");
    let (id, created) = Identity::load_or_generate(&path).unwrap();
    assert!(created);
    for d in [".local", ".local/state", ".local/state/ocapn"] {
        let mode = std::fs::metadata(dir.path().join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
    assert_eq!(Identity::load(&path).unwrap().designator(), id.designator());
}

#[test]
fn load_or_generate_creates_once_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.key");
    let (a, created) = Identity::load_or_generate(&path).unwrap();
    assert!(created);
    let (b, created) = Identity::load_or_generate(&path).unwrap();
    assert!(!created);
    assert_eq!(a.designator(), b.designator());
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.pem");
    Identity::generate().save(&path).unwrap();
    for mode in [0o644, 0o640, 0o606, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Identity::load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IdentityError::NotPrivate { .. }), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(
        Identity::load(&path).is_ok(),
        "read-only for the owner is fine"
    );
}

#[test]
fn other_bad_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = Identity::load(dir.path()).unwrap_err();
    assert!(matches!(err, IdentityError::NotAFile(_)), "{err}");
    let missing = dir.path().join("missing");
    let err = Identity::load(&missing).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a key\n").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Identity::load(&junk).unwrap_err();
    assert!(matches!(err, IdentityError::BadKey(_)), "{err}");
    assert!(err.to_string().contains("PKCS#8 PEM Ed25519"), "{err}");
    let err = Identity::generate()
        .save(&dir.path().join("no/such/dir/key"))
        .unwrap_err();
    assert!(matches!(err, IdentityError::Io { .. }), "{err}");
}

#[test]
fn sockets_and_oversized_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("key.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let err = Identity::load(&sock).unwrap_err();
    assert!(matches!(err, IdentityError::NotAFile(_)), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; 100_000]).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Identity::load(&big).unwrap_err();
    assert!(matches!(err, IdentityError::BadKey(_)), "{err}");
}

#[test]
fn save_leaves_only_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.pem");
    Identity::generate().save(&path).unwrap();
    let _ = Identity::generate().save(&path).unwrap_err();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["id.pem"], "no temporary file is left behind");
}

#[test]
fn concurrent_load_or_generate_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.pem");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Identity::load_or_generate(&path).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let on_disk = Identity::load(&path).unwrap().designator();
    assert!(results.iter().all(|(id, _)| id.designator() == on_disk));
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let seed = [0x5au8; 32];
    let id = Identity::from_secret_bytes(seed);
    let debug = format!("{id:?}");
    assert_eq!(debug, format!("Identity({})", id.designator()));
    let pem = id.to_pkcs8_pem();
    assert!(!debug.contains(pem.lines().nth(1).unwrap()));
    assert!(!debug.contains("5a5a"));
}

#[test]
fn the_signing_guard_refuses_syrup_and_bad_lengths() {
    let id = Identity::generate();
    let record = Value::record(
        Value::symbol("my-location"),
        [Value::string("x".repeat(20))],
    )
    .encode();
    assert!(matches!(
        id.sign_challenge(&record),
        Err(HandshakeError::ChallengeIsSyrup)
    ));
    // A long bytestring is a complete value too.
    let bytes = Value::bytes(vec![0u8; 100]).encode();
    assert!(matches!(
        id.sign_challenge(&bytes),
        Err(HandshakeError::ChallengeIsSyrup)
    ));
    // A deeply nested value is refused even beyond the decoder's defaults.
    let deep = [vec![b'['; 200], vec![b']'; 200]].concat();
    assert!(matches!(
        id.sign_challenge(&deep),
        Err(HandshakeError::ChallengeIsSyrup)
    ));
    assert!(matches!(
        id.sign_challenge(&[1; 15]),
        Err(HandshakeError::ChallengeTooShort(15))
    ));
    assert!(matches!(
        id.sign_challenge(&[1; 1025]),
        Err(HandshakeError::ChallengeTooLong(1025))
    ));
    // Judged leniently: unsorted dictionary keys and invalid UTF-8 are
    // still Syrup to some reader.
    let unsorted = b"<11'my-location{1\"b1+1\"a2+}>".to_vec();
    assert!(uds_syrup::decode(&unsorted).is_err(), "not strict Syrup");
    assert!(matches!(
        id.sign_challenge(&unsorted),
        Err(HandshakeError::ChallengeIsSyrup)
    ));
    let bad_utf8 = [b"<3'foo16\"".as_slice(), &[0xff; 16], b">"].concat();
    assert!(uds_syrup::decode(&bad_utf8).is_err(), "not strict Syrup");
    assert!(matches!(
        id.sign_challenge(&bad_utf8),
        Err(HandshakeError::ChallengeIsSyrup)
    ));
    // A value followed by more bytes is not a complete value: signable.
    let mut prefixed = record.clone();
    prefixed.push(b'x');
    assert!(id.sign_challenge(&prefixed).is_ok());
    assert!(id.sign_challenge(&[1; 16]).is_ok());
    assert!(id.sign_challenge(&[1; 1024]).is_ok());
}

#[test]
fn the_e2ee_key_statement_is_signed_only_through_its_own_method() {
    let id = Identity::from_secret_bytes([9; 32]);
    let x25519_public = [0x42u8; 32];
    let statement = [uds_handshake::E2EE_STATIC_KEY_CONTEXT, &x25519_public].concat();
    assert_eq!(statement.len(), 58);
    assert!(statement.starts_with(b"ocapn-uds-e2ee-static-key:"));
    // An introduction server asking for this statement as a challenge is
    // refused, whatever follows the context.
    assert!(matches!(
        id.sign_challenge(&statement),
        Err(HandshakeError::ChallengeIsE2eeStaticKey)
    ));
    let mut longer = statement.clone();
    longer.extend_from_slice(&[7; 40]);
    assert!(matches!(
        id.sign_challenge(&longer),
        Err(HandshakeError::ChallengeIsE2eeStaticKey)
    ));
    // The same bytes with the context cut short are an ordinary challenge.
    assert!(id.sign_challenge(&statement[1..]).is_ok());

    let sig = id.sign_e2ee_static_key(&x25519_public);
    let key = uds_handshake::verifying_key(&id.public_key()).unwrap();
    assert!(uds_handshake::verify(&key, &statement, &sig));
    let mut other = statement.clone();
    other[57] ^= 1;
    assert!(!uds_handshake::verify(&key, &other, &sig));
}
