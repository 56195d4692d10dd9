//! The four `uds:*` records of the introduction protocol, the
//! [`WireProfile`] that picks the shape to emit, and the body bytes of an
//! introduction's fd.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::{Locator, PublicKey, SigVal, WireError, expect_bytes, expect_record, sym};
use crate::decode::Limits;
use crate::value::Value;

/// The data bytes sent with the SCM_RIGHTS fd after `uds:new-connection`
/// (the C `int` 12345, little-endian, as Goblins sends and reads it).
pub const SCM_RIGHTS_BODY: [u8; 4] = [0x39, 0x30, 0x00, 0x00];

/// Which of the two incompatible wire shapes to **emit**. Decoding always
/// accepts both.
///
/// | place | `Draft` | `Goblins` |
/// |---|---|---|
/// | 3rd field of `uds:server-response` | `<uds:signature payload sig-val>` | bare sig-val list |
/// | signature in `uds:signature` | sig-val list | raw 64-byte bytestring |
///
/// Non-exhaustive: a later revision of the specification may bring a shape
/// of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WireProfile {
    /// The shapes of the draft specification (the default).
    #[default]
    Draft,
    /// The shapes Goblins sends and requires.
    Goblins,
}

impl fmt::Display for WireProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireProfile::Draft => "draft",
            WireProfile::Goblins => "goblins",
        })
    }
}

impl FromStr for WireProfile {
    type Err = WireError;
    fn from_str(s: &str) -> Result<WireProfile, WireError> {
        match s {
            "draft" => Ok(WireProfile::Draft),
            "goblins" => Ok(WireProfile::Goblins),
            other => Err(WireError::UnknownProfile(other.to_owned())),
        }
    }
}

/// `<uds:register LOCATOR CHALLENGE>`: a netlayer introduces itself to an
/// introduction server and challenges it to sign `challenge`.
///
/// Its fields are public and the struct exhaustive, so that it can be built
/// with a struct literal: it is the record's wire shape, which a new
/// version of the protocol would give a new label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The registering peer's locator (sent with hints `f`).
    pub locator: Locator,
    /// Random bytes for the server to sign.
    pub challenge: Bytes,
}

impl Register {
    /// The record label.
    pub const LABEL: &'static str = "uds:register";

    /// The Syrup record (the same in both profiles).
    pub fn to_value(&self) -> Value {
        Value::record(
            sym(Self::LABEL),
            [
                self.locator.to_value(),
                Value::Bytes(self.challenge.clone()),
            ],
        )
    }

    /// Reads the record.
    pub fn from_value(v: &Value) -> Result<Register, WireError> {
        let [locator, challenge] = expect_record::<2>(v, Self::LABEL)?;
        Ok(Register {
            locator: Locator::from_value(locator)?,
            challenge: expect_bytes(challenge, "uds:register challenge")?,
        })
    }
}

/// `<uds:server-response PUBKEY SERVER-CHALLENGE RESPONSE>`: the server's
/// key, a challenge for the peer, and the server's signature on the peer's
/// challenge.
///
/// In the draft shape RESPONSE is `<uds:signature CLIENT-CHALLENGE SIG-VAL>`
/// and [`ServerResponse::echoed_challenge`] is `Some`; in Goblins' shape it
/// is a bare sig-val list and `echoed_challenge` is `None`.
///
/// Its fields are public and the struct exhaustive, so that it can be built
/// with a struct literal: it is the record's wire shape, which a new
/// version of the protocol would give a new label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerResponse {
    /// The server's public key.
    pub public_key: PublicKey,
    /// Random bytes for the peer to sign.
    pub server_challenge: Bytes,
    /// The server's signature on the peer's challenge.
    pub signature: SigVal,
    /// The signed payload echoed back (draft shape only).
    pub echoed_challenge: Option<Bytes>,
}

impl ServerResponse {
    /// The record label.
    pub const LABEL: &'static str = "uds:server-response";

    /// The Syrup record in `profile`'s shape. In the draft shape the echoed
    /// payload is `echoed_challenge`, which must then be set to the peer's
    /// challenge (an empty bytestring is written if it is `None`).
    pub fn to_value(&self, profile: WireProfile) -> Value {
        let response = match profile {
            WireProfile::Draft => Value::record(
                sym(UdsSignature::LABEL),
                [
                    Value::Bytes(self.echoed_challenge.clone().unwrap_or_default()),
                    self.signature.to_value(),
                ],
            ),
            WireProfile::Goblins => self.signature.to_value(),
        };
        Value::record(
            sym(Self::LABEL),
            [
                self.public_key.to_value(),
                Value::Bytes(self.server_challenge.clone()),
                response,
            ],
        )
    }

    /// Reads either shape.
    pub fn from_value(v: &Value) -> Result<ServerResponse, WireError> {
        let [key, challenge, response] = expect_record::<3>(v, Self::LABEL)?;
        let (signature, echoed_challenge) = match response {
            Value::Record(_) => {
                let s = UdsSignature::from_value(response)?;
                (s.signature, Some(s.payload))
            }
            _ => (SigVal::from_value(response)?, None),
        };
        Ok(ServerResponse {
            public_key: PublicKey::from_value(key)?,
            server_challenge: expect_bytes(challenge, "uds:server-response server challenge")?,
            signature,
            echoed_challenge,
        })
    }
}

/// `<uds:signature PAYLOAD SIGNATURE>`: the peer's signature on the server's
/// challenge. SIGNATURE is a sig-val list (draft) or the raw 64 bytes
/// (Goblins); decoding accepts both.
///
/// Its fields are public and the struct exhaustive, so that it can be built
/// with a struct literal: it is the record's wire shape, which a new
/// version of the protocol would give a new label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdsSignature {
    /// The signed bytes (the server's challenge).
    pub payload: Bytes,
    /// The signature.
    pub signature: SigVal,
}

impl UdsSignature {
    /// The record label.
    pub const LABEL: &'static str = "uds:signature";

    /// The Syrup record in `profile`'s shape.
    pub fn to_value(&self, profile: WireProfile) -> Value {
        let sig = match profile {
            WireProfile::Draft => self.signature.to_value(),
            WireProfile::Goblins => Value::bytes(self.signature.0.to_vec()),
        };
        Value::record(sym(Self::LABEL), [Value::Bytes(self.payload.clone()), sig])
    }

    /// Reads either shape.
    pub fn from_value(v: &Value) -> Result<UdsSignature, WireError> {
        let [payload, sig] = expect_record::<2>(v, Self::LABEL)?;
        Ok(UdsSignature {
            payload: expect_bytes(payload, "uds:signature payload")?,
            signature: SigVal::from_either(sig)?,
        })
    }
}

/// `<uds:new-connection FROM TO>`: asks the server to pass the socket that
/// follows (one SCM_RIGHTS fd with [`SCM_RIGHTS_BODY`]) from `from` to `to`;
/// the server forwards the same record and socket to `to`.
///
/// Its fields are public and the struct exhaustive, so that it can be built
/// with a struct literal: it is the record's wire shape, which a new
/// version of the protocol would give a new label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    /// The dialing peer.
    pub from: Locator,
    /// The peer being dialed.
    pub to: Locator,
}

impl NewConnection {
    /// The record label.
    pub const LABEL: &'static str = "uds:new-connection";

    /// The Syrup record (the same in both profiles).
    pub fn to_value(&self) -> Value {
        Value::record(sym(Self::LABEL), [self.from.to_value(), self.to.to_value()])
    }

    /// Reads the record.
    pub fn from_value(v: &Value) -> Result<NewConnection, WireError> {
        let [from, to] = expect_record::<2>(v, Self::LABEL)?;
        Ok(NewConnection {
            from: Locator::from_value(from)?,
            to: Locator::from_value(to)?,
        })
    }
}

/// Any message of the introduction protocol.
///
/// ```
/// use uds_syrup::{IntroMessage, WireProfile};
/// let bytes = b"<18'uds:new-connection<10'ocapn-peer18'unix-domain-socket52\"25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenaf><10'ocapn-peer18'unix-domain-socket52\"hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumygaf>>";
/// let IntroMessage::NewConnection(nc) = IntroMessage::decode(bytes).unwrap() else { panic!() };
/// assert_eq!(nc.to.designator(), "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga");
/// assert_eq!(IntroMessage::NewConnection(nc).encode(WireProfile::Draft), bytes);
/// ```
///
/// Non-exhaustive: the protocol may gain messages; today a record with any
/// other label is [`WireError::UnknownMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntroMessage {
    /// `uds:register`
    Register(Register),
    /// `uds:server-response`
    ServerResponse(ServerResponse),
    /// `uds:signature`
    Signature(UdsSignature),
    /// `uds:new-connection`
    NewConnection(NewConnection),
}

impl IntroMessage {
    /// The Syrup record in `profile`'s shape.
    pub fn to_value(&self, profile: WireProfile) -> Value {
        match self {
            IntroMessage::Register(m) => m.to_value(),
            IntroMessage::ServerResponse(m) => m.to_value(profile),
            IntroMessage::Signature(m) => m.to_value(profile),
            IntroMessage::NewConnection(m) => m.to_value(),
        }
    }

    /// The canonical encoding in `profile`'s shape.
    pub fn encode(&self, profile: WireProfile) -> Vec<u8> {
        self.to_value(profile).encode()
    }

    /// Reads any of the four records (either shape).
    pub fn from_value(v: &Value) -> Result<IntroMessage, WireError> {
        let r = v.as_record().ok_or(WireError::WrongType {
            what: "introduction message",
            expected: "record",
            found: v.kind(),
        })?;
        match r.label().as_symbol() {
            Some(Register::LABEL) => Register::from_value(v).map(IntroMessage::Register),
            Some(ServerResponse::LABEL) => {
                ServerResponse::from_value(v).map(IntroMessage::ServerResponse)
            }
            Some(UdsSignature::LABEL) => UdsSignature::from_value(v).map(IntroMessage::Signature),
            Some(NewConnection::LABEL) => {
                NewConnection::from_value(v).map(IntroMessage::NewConnection)
            }
            _ => Err(WireError::UnknownMessage(r.label().to_string())),
        }
    }

    /// Decodes exactly one message with the introduction channel's limits
    /// ([`Limits::intro_channel`]).
    pub fn decode(bytes: &[u8]) -> Result<IntroMessage, WireError> {
        let v = crate::decode::decode_with(bytes, &Limits::intro_channel())?;
        IntroMessage::from_value(&v)
    }

    /// The record label of this message.
    pub fn label(&self) -> &'static str {
        match self {
            IntroMessage::Register(_) => Register::LABEL,
            IntroMessage::ServerResponse(_) => ServerResponse::LABEL,
            IntroMessage::Signature(_) => UdsSignature::LABEL,
            IntroMessage::NewConnection(_) => NewConnection::LABEL,
        }
    }
}
