//! A peer's or server's identity: an Ed25519 signing key.

use std::fmt;
use std::io::Write;
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
/// in `Debug` output. The only way to sign with it is
/// [`Identity::sign_challenge`], which refuses anything that could be a
/// CapTP payload.
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
    /// [`check_challenge`](crate::check_challenge): 16 to 1024 bytes and not
    /// a complete Syrup value.
    pub fn sign_challenge(&self, challenge: &[u8]) -> Result<SigVal, HandshakeError> {
        check_challenge(challenge)?;
        Ok(SigVal(self.key.sign(challenge).to_bytes()))
    }

    /// The key as PKCS#8 PEM (zeroized when dropped).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        // Encoding a valid Ed25519 key cannot fail; fall back to an empty
        // string rather than panic if the encoder ever does.
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|_| Zeroizing::new(String::new()))
    }

    /// Reads a PKCS#8 PEM key file. Refuses a file that is not a regular
    /// file or that group or others may read or write.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(IdentityError::NotAFile(path.to_owned()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(IdentityError::NotPrivate {
                path: path.to_owned(),
                mode: meta.mode() & 0o7777,
            });
        }
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let key =
            SigningKey::from_pkcs8_pem(&pem).map_err(|_| IdentityError::BadKey(path.to_owned()))?;
        Ok(Identity { key })
    }

    /// Writes the key to a new file, created with mode 0600. Never
    /// overwrites an existing file.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    IdentityError::Exists(path.to_owned())
                } else {
                    io(e)
                }
            })?;
        file.write_all(self.to_pkcs8_pem().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Loads the key at `path`, or creates it there if the file does not
    /// exist. The flag says whether it was created.
    pub fn load_or_generate(path: &Path) -> Result<(Identity, bool), IdentityError> {
        match Identity::load(path) {
            Err(IdentityError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
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

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.designator())
    }
}
