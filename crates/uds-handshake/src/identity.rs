//! A peer's or server's identity: an Ed25519 signing key.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use uds_syrup::{Designator, Locator, PublicKey, SigVal};
use zeroize::Zeroizing;

use crate::keys::check_challenge;
use crate::{HandshakeError, IdentityError};

/// An Ed25519 identity: its public key is the designator in locators (for a
/// peer) or in hints (for an introduction server).
///
/// The secret key is zeroized when the identity is dropped and never appears
/// in `Debug` output. The only ways to sign with it are
/// [`Identity::sign_challenge`], which refuses anything that could be a
/// CapTP payload or an e2ee key statement, and
/// [`Identity::sign_e2ee_static_key`], which signs only that fixed-form
/// statement.
///
/// ```
/// use uds_handshake::Identity;
/// let id = Identity::from_secret_bytes([7u8; 32]);
/// assert_eq!(id.designator().to_string().len(), 52);
/// assert!(!format!("{id:?}").contains("07070707"));
/// ```
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A new random identity.
    pub fn generate() -> Identity {
        Identity {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// The identity with this 32-byte secret seed (RFC 8032). For tests and
    /// fixed vectors; use [`Identity::generate`] otherwise.
    pub fn from_secret_bytes(seed: [u8; 32]) -> Identity {
        let seed = Zeroizing::new(seed);
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The designator (base32 of the public key).
    pub fn designator(&self) -> Designator {
        self.public_key().designator()
    }

    /// The `unix-domain-socket` locator of this identity, without hints.
    pub fn locator(&self) -> Locator {
        Locator::unix(self.designator())
    }

    /// Signs `challenge` after checking it with
    /// [`check_challenge`](crate::check_challenge): 16 to 1024 bytes, not
    /// a complete Syrup value, and not starting with the e2ee static-key
    /// context.
    pub fn sign_challenge(&self, challenge: &[u8]) -> Result<SigVal, HandshakeError> {
        check_challenge(challenge)?;
        Ok(SigVal(self.key.sign(challenge).to_bytes()))
    }

    /// Signs `"ocapn-uds-e2ee-static-key:" || x25519_public`
    /// ([`E2EE_STATIC_KEY_CONTEXT`](crate::E2EE_STATIC_KEY_CONTEXT) followed
    /// by the key): the statement with which this identity vouches for an
    /// X25519 static key in the end-to-end encrypted mode (crate
    /// `uds-e2ee`). The message starts with a fixed ASCII context, so it is
    /// never a Syrup value (no CapTP payload) and never a challenge that
    /// [`Identity::sign_challenge`] accepts.
    pub fn sign_e2ee_static_key(&self, x25519_public: &[u8; 32]) -> SigVal {
        let msg = crate::e2ee_static_key_statement(x25519_public);
        SigVal(self.key.sign(&msg).to_bytes())
    }

    /// The key as PKCS#8 PEM (zeroized when dropped), as [`Identity::save`]
    /// writes it.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        // The encoding of a 32-byte seed into a fixed-size structure has no
        // failure case; `pem` exists so that `save` can report one anyway.
        self.pem()
            .expect("encoding an Ed25519 key as PKCS#8 PEM cannot fail")
    }

    fn pem(&self) -> Result<Zeroizing<String>, ed25519_dalek::pkcs8::Error> {
        self.key.to_pkcs8_pem(LineEnding::LF)
    }

    /// Reads a PKCS#8 PEM key file. Refuses a file that is not a regular
    /// file, that group or others may read or write, or that belongs to
    /// another user (whoever owns it can change its mode and read it).
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        // Check before opening (so a FIFO or a socket is refused, not opened),
        // then check the opened file again: the bytes read are those of the
        // file that passed the checks, even if the path was replaced meanwhile.
        let before = std::fs::metadata(path).map_err(io)?;
        check_key_file(path, &before)?;
        let file = std::fs::File::open(path).map_err(io)?;
        let opened = file.metadata().map_err(io)?;
        check_key_file(path, &opened)?;
        if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
            return Err(io(std::io::Error::other(
                "the file was replaced while it was being opened",
            )));
        }
        // A PEM Ed25519 key is about 120 bytes; anything large is not one.
        // Reserving room for the largest file up front keeps the secret from
        // being copied around by reallocation.
        if opened.len() > MAX_KEY_FILE {
            return Err(IdentityError::BadKey(path.to_owned()));
        }
        let mut pem = Zeroizing::new(String::with_capacity(MAX_KEY_FILE as usize + 1));
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut pem)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    IdentityError::BadKey(path.to_owned())
                } else {
                    io(e)
                }
            })?;
        let key =
            SigningKey::from_pkcs8_pem(&pem).map_err(|_| IdentityError::BadKey(path.to_owned()))?;
        Ok(Identity { key })
    }

    /// Writes the key to a new file, created with mode 0600. Never
    /// overwrites an existing file.
    ///
    /// The file appears complete or not at all: the key is written and
    /// synced to a temporary file in the same directory, which is then
    /// hard-linked to `path` (this fails if `path` exists) and removed. A
    /// concurrent [`Identity::load_or_generate`] therefore never reads a
    /// half-written key, and a crash never leaves one behind.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let pem = self
            .pem()
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io(std::io::Error::other("the path does not name a file")))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{:016x}.tmp", std::process::id(), {
            use rand_core::RngCore;
            rand_core::OsRng.next_u64()
        }));
        let tmp = dir.join(tmp_name);
        let written = write_new_private(&tmp, pem.as_bytes());
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        // The temporary name goes in every case; the key stays under `path`.
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        // Make the new directory entry durable too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// Loads the key at `path`, or creates it there if the file does not
    /// exist, creating missing parent directories with mode 0700 (as
    /// `~/.local/state/ocapn/` on a fresh account). The flag says whether it
    /// was created.
    pub fn load_or_generate(path: &Path) -> Result<(Identity, bool), IdentityError> {
        match Identity::load(path) {
            Err(IdentityError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                    && !dir.exists()
                {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|source| IdentityError::Io {
                            path: dir.to_owned(),
                            source,
                        })?;
                }
                let id = Identity::generate();
                match id.save(path) {
                    Ok(()) => Ok((id, true)),
                    // Created by someone else meanwhile: use theirs.
                    Err(IdentityError::Exists(_)) => Ok((Identity::load(path)?, false)),
                    Err(e) => Err(e),
                }
            }
            other => other.map(|id| (id, false)),
        }
    }
}

/// The largest key file [`Identity::load`] reads.
const MAX_KEY_FILE: u64 = 4096;

/// Refuses what cannot be a private key file of its owner.
fn check_key_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), IdentityError> {
    if !meta.is_file() {
        return Err(IdentityError::NotAFile(path.to_owned()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(IdentityError::NotPrivate {
            path: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(IdentityError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// Creates `path` (which must not exist) with mode 0600 and writes `data`
/// to it, synced to disk.
fn write_new_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.designator())
    }
}
