//! The introduction server's side of registration.

use std::sync::Arc;

use bytes::Bytes;
use uds_syrup::{
    Designator, IntroMessage, Locator, PublicKey, Register, ServerResponse, UdsSignature, Value,
    WireProfile,
};

use crate::keys::{check_challenge, fresh_challenge, verify, verifying_key};
use crate::{HandshakeError, Identity};

/// A peer that completed registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Its locator as it sent it, without hints.
    pub locator: Locator,
    /// Its designator.
    pub designator: Designator,
    /// Its key (proven: it signed our challenge).
    pub key: PublicKey,
}

/// What the server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send these bytes (the `uds:server-response`) and wait for the next
    /// message.
    Send(Vec<u8>),
    /// The peer is registered.
    Registered(Registered),
}

/// What the server remembers between `uds:register` and `uds:signature`.
#[derive(Debug)]
struct Pending {
    locator: Locator,
    key: PublicKey,
    verifying: ed25519_dalek::VerifyingKey,
}

#[derive(Debug)]
enum State {
    AwaitingRegister,
    AwaitingSignature(Box<Pending>),
    Finished,
}

/// The server side of registration, without I/O: feed it the client's
/// messages; it answers `uds:register` with the bytes of a
/// `uds:server-response` and `uds:signature` with the registered peer.
#[derive(Debug)]
pub struct ServerHandshake {
    identity: Arc<Identity>,
    profile: WireProfile,
    challenge: Bytes,
    state: State,
}

impl ServerHandshake {
    /// A handshake with a fresh 64-byte random challenge, answering in
    /// `profile`'s shape.
    pub fn new(identity: Arc<Identity>, profile: WireProfile) -> ServerHandshake {
        ServerHandshake {
            identity,
            profile,
            challenge: Bytes::copy_from_slice(&fresh_challenge()),
            state: State::AwaitingRegister,
        }
    }

    /// A handshake with a given challenge (for tests and fixed vectors).
    pub fn with_challenge(
        identity: Arc<Identity>,
        profile: WireProfile,
        challenge: impl Into<Bytes>,
    ) -> Result<ServerHandshake, HandshakeError> {
        let challenge = challenge.into();
        check_challenge(&challenge)?;
        Ok(ServerHandshake {
            identity,
            profile,
            challenge,
            state: State::AwaitingRegister,
        })
    }

    /// The challenge the peer must sign.
    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }

    /// Takes the next message from the client. Any refusal ends the
    /// handshake.
    pub fn receive(&mut self, msg: &Value) -> Result<ServerStep, HandshakeError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::Finished => Err(HandshakeError::Finished),
            State::AwaitingRegister => {
                let register = match IntroMessage::from_value(msg)? {
                    IntroMessage::Register(r) => r,
                    other => {
                        return Err(HandshakeError::UnexpectedMessage {
                            expected: Register::LABEL,
                            found: other.label().to_owned(),
                        });
                    }
                };
                let (response, locator, key, verifying) = self.answer(register)?;
                self.state = State::AwaitingSignature(Box::new(Pending {
                    locator,
                    key,
                    verifying,
                }));
                Ok(ServerStep::Send(response))
            }
            State::AwaitingSignature(pending) => {
                let Pending {
                    locator,
                    key,
                    verifying,
                } = *pending;
                let sig = match IntroMessage::from_value(msg)? {
                    IntroMessage::Signature(s) => s,
                    other => {
                        return Err(HandshakeError::UnexpectedMessage {
                            expected: UdsSignature::LABEL,
                            found: other.label().to_owned(),
                        });
                    }
                };
                if sig.payload != self.challenge {
                    return Err(HandshakeError::WrongPayload);
                }
                let designator = key.designator();
                if !verify(&verifying, &self.challenge, &sig.signature) {
                    return Err(HandshakeError::BadPeerSignature(designator));
                }
                Ok(ServerStep::Registered(Registered {
                    locator,
                    designator,
                    key,
                }))
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn answer(
        &self,
        register: Register,
    ) -> Result<(Vec<u8>, Locator, PublicKey, ed25519_dalek::VerifyingKey), HandshakeError> {
        if register.locator.transport() != uds_syrup::TRANSPORT {
            return Err(HandshakeError::WrongTransport(
                register.locator.transport().to_owned(),
            ));
        }
        let designator: Designator = register.locator.designator().parse()?;
        let key = designator.public_key();
        let verifying = verifying_key(&key)?;
        let signature = self.identity.sign_challenge(&register.challenge)?;
        let response = ServerResponse {
            public_key: self.identity.public_key(),
            server_challenge: self.challenge.clone(),
            signature,
            echoed_challenge: Some(register.challenge),
        }
        .to_value(self.profile)
        .encode();
        Ok((response, register.locator.without_hints(), key, verifying))
    }
}
