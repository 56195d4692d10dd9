//! The netlayer's side of registration.

use std::sync::Arc;

use bytes::Bytes;
use uds_syrup::{
    Designator, IntroMessage, PublicKey, Register, ServerResponse, UdsSignature, Value, WireProfile,
};

use crate::keys::{check_challenge, fresh_challenge, verify, verifying_key};
use crate::{HandshakeError, Identity};

/// How a client registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// The shape of the `uds:signature` we send: `None` (the default)
    /// answers in the shape the server used for its `uds:server-response`
    /// (Goblins requires its own shape, a draft-only server the draft's);
    /// `Some` forces one.
    pub profile: Option<WireProfile>,
    /// If set, only a server with this key is accepted.
    pub pinned_server: Option<Designator>,
}

/// The result of a successful client handshake.
#[derive(Debug, Clone)]
pub struct ClientRegistered {
    /// The `uds:signature` message to send. Once it is sent the client is
    /// registered (the protocol has no acknowledgement).
    pub signature_message: Vec<u8>,
    /// The server's key.
    pub server_key: PublicKey,
    /// The server's name, for the hints of our locator.
    pub server: Designator,
    /// The shape the server's `uds:server-response` had.
    pub server_profile: WireProfile,
    /// The shape of the `uds:signature` we answered with.
    pub profile: WireProfile,
}

/// The client side of registration, without I/O: send
/// [`register_message`](ClientHandshake::register_message), feed the
/// server's reply to [`receive`](ClientHandshake::receive), send the
/// resulting `uds:signature`.
///
/// ```
/// use std::sync::Arc;
/// use uds_handshake::{ClientConfig, ClientHandshake, Identity, ServerHandshake, ServerStep};
/// use uds_syrup::{decode, WireProfile};
///
/// let server_id = Arc::new(Identity::generate());
/// let mut client = ClientHandshake::new(Arc::new(Identity::generate()), ClientConfig::default());
/// let mut server = ServerHandshake::new(server_id.clone(), WireProfile::Draft);
///
/// let ServerStep::Send(response) = server.receive(&decode(&client.register_message()).unwrap()).unwrap() else { panic!() };
/// let done = client.receive(&decode(&response).unwrap()).unwrap();
/// assert_eq!(done.server, server_id.designator());
/// let ServerStep::Registered(peer) = server.receive(&decode(&done.signature_message).unwrap()).unwrap() else { panic!() };
/// assert_eq!(peer.designator, client.identity().designator());
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    identity: Arc<Identity>,
    config: ClientConfig,
    challenge: Bytes,
    finished: bool,
}

impl ClientHandshake {
    /// A handshake with a fresh 64-byte random challenge.
    pub fn new(identity: Arc<Identity>, config: ClientConfig) -> ClientHandshake {
        ClientHandshake {
            identity,
            config,
            challenge: Bytes::copy_from_slice(&fresh_challenge()),
            finished: false,
        }
    }

    /// A handshake with a given challenge (for tests and fixed vectors). It
    /// must pass [`check_challenge`](crate::check_challenge), since the
    /// server would refuse it otherwise.
    pub fn with_challenge(
        identity: Arc<Identity>,
        config: ClientConfig,
        challenge: impl Into<Bytes>,
    ) -> Result<ClientHandshake, HandshakeError> {
        let challenge = challenge.into();
        check_challenge(&challenge)?;
        Ok(ClientHandshake {
            identity,
            config,
            challenge,
            finished: false,
        })
    }

    /// Our identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The challenge the server must sign.
    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }

    /// The first message: `<uds:register LOCATOR CHALLENGE>`, with our
    /// locator's hints `f` (the same in both profiles).
    pub fn register_message(&self) -> Vec<u8> {
        Register {
            locator: self.identity.locator(),
            challenge: self.challenge.clone(),
        }
        .to_value()
        .encode()
    }

    /// Takes the server's `uds:server-response` (either shape): checks the
    /// pinned key, the server's key, the echoed challenge (draft shape) and
    /// the server's signature on our challenge, then signs the server's
    /// challenge. The handshake is over after this call, whatever its
    /// outcome.
    pub fn receive(&mut self, msg: &Value) -> Result<ClientRegistered, HandshakeError> {
        if std::mem::replace(&mut self.finished, true) {
            return Err(HandshakeError::Finished);
        }
        let response = match IntroMessage::from_value(msg)? {
            IntroMessage::ServerResponse(r) => r,
            other => {
                return Err(HandshakeError::UnexpectedMessage {
                    expected: ServerResponse::LABEL,
                    found: other.label().to_owned(),
                });
            }
        };
        let server = response.public_key.designator();
        if let Some(pinned) = self.config.pinned_server
            && pinned != server
        {
            return Err(HandshakeError::PinnedKeyMismatch {
                expected: pinned,
                found: server,
            });
        }
        let key = verifying_key(&response.public_key)?;
        if response
            .echoed_challenge
            .as_ref()
            .is_some_and(|echo| *echo != self.challenge)
        {
            return Err(HandshakeError::WrongEcho);
        }
        if !verify(&key, &self.challenge, &response.signature) {
            return Err(HandshakeError::BadServerSignature(server));
        }
        let signature = self.identity.sign_challenge(&response.server_challenge)?;
        // The draft's response echoes our challenge; Goblins' does not.
        let server_profile = if response.echoed_challenge.is_some() {
            WireProfile::Draft
        } else {
            WireProfile::Goblins
        };
        let profile = self.config.profile.unwrap_or(server_profile);
        Ok(ClientRegistered {
            signature_message: UdsSignature {
                payload: response.server_challenge,
                signature,
            }
            .to_value(profile)
            .encode(),
            server_key: response.public_key,
            server,
            server_profile,
            profile,
        })
    }
}
