//! The OCapN structures used by the Unix-domain-socket netlayer: designators,
//! peer locators and their URIs, CapTP public keys and signatures, and the
//! four `uds:*` records of the introduction protocol.
//!
//! Decoding accepts both the draft's shapes and Goblins' (they differ in two
//! places); encoding follows a [`WireProfile`].

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use bytes::Bytes;

use crate::decode::{DecodeError, Decoder, Limits};
use crate::value::{Dict, Kind, Value};

/// The transport symbol of this netlayer.
pub const TRANSPORT: &str = "unix-domain-socket";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

/// Why a value is not the expected OCapN structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not valid Syrup.
    #[error(transparent)]
    Syrup(#[from] DecodeError),
    /// A value of the wrong type.
    #[error("{what}: expected {expected}, found a {found}")]
    WrongType {
        /// What was being read.
        what: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: Kind,
    },
    /// A record with another label.
    #[error("expected a <{expected}> record, found the label {found}")]
    WrongLabel {
        /// The expected label.
        expected: &'static str,
        /// The label found.
        found: String,
    },
    /// A record with the wrong number of fields.
    #[error("<{record}> must have {expected} fields, found {found}")]
    FieldCount {
        /// The record's label.
        record: &'static str,
        /// How many it must have.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// A record label that is not one of the introduction messages.
    #[error("unknown introduction message <{0}>")]
    UnknownMessage(String),
    /// A designator that is not 52 base32 characters of a 32-byte key.
    #[error(transparent)]
    Designator(#[from] DesignatorError),
    /// A locator of another netlayer.
    #[error("locator transport is {0:?}, expected \"unix-domain-socket\"")]
    WrongTransport(String),
    /// Malformed hints.
    #[error("locator hints: {0}")]
    Hints(&'static str),
    /// Not the CapTP Ed25519 public-key list.
    #[error("public key: {0}")]
    PublicKey(&'static str),
    /// Not a CapTP Ed25519 sig-val list or a 64-byte signature.
    #[error("signature: {0}")]
    Signature(&'static str),
    /// An `ocapn://` URI that cannot be parsed.
    #[error("invalid ocapn URI: {0}")]
    Uri(String),
    /// A profile name other than `draft` or `goblins`.
    #[error("unknown wire profile {0:?}: use \"draft\" or \"goblins\"")]
    UnknownProfile(String),
}

fn expect_record<'a, const N: usize>(
    v: &'a Value,
    label: &'static str,
) -> Result<&'a [Value; N], WireError> {
    let r = v.as_record().ok_or(WireError::WrongType {
        what: label,
        expected: "record",
        found: v.kind(),
    })?;
    if !r.label().is_symbol(label) {
        return Err(WireError::WrongLabel {
            expected: label,
            found: r.label().to_string(),
        });
    }
    r.fields().try_into().map_err(|_| WireError::FieldCount {
        record: label,
        expected: N,
        found: r.fields().len(),
    })
}

fn expect_bytes(v: &Value, what: &'static str) -> Result<Bytes, WireError> {
    v.as_bytes().cloned().ok_or(WireError::WrongType {
        what,
        expected: "bytestring",
        found: v.kind(),
    })
}

fn sym(s: &str) -> Value {
    Value::symbol(s)
}

// ---------------------------------------------------------------- Designator

/// Why a string is not a designator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesignatorError {
    /// Not 52 characters.
    #[error("designator must be 52 base32 characters (a 32-byte key), found {0} characters")]
    WrongLength(usize),
    /// A character outside the base32 alphabet (padding `=` included).
    #[error(
        "designator has an invalid base32 character at position {0} (only a-z and 2-7, no padding)"
    )]
    InvalidCharacter(usize),
    /// The last character encodes bits beyond the 32-byte key.
    #[error("designator is not canonical: its last character has non-zero trailing bits")]
    NonCanonical,
}

/// The name of a peer or introduction server: its 32-byte Ed25519 public
/// key, written as 52 characters of lowercase unpadded RFC 4648 base32.
///
/// Parsing accepts upper or lower case and rejects wrong lengths, padding
/// and non-canonical trailing bits; formatting is always lower case.
///
/// ```
/// use uds_syrup::Designator;
/// let d: Designator = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena".parse().unwrap();
/// assert_eq!(d.key_bytes()[..2], [0xd7, 0x5a]);
/// assert_eq!(d.to_string(), "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena");
/// assert!("25NJQAMCWEFLPVKL73J4SZAHHIHOC4XT3KTCGJNPAINGR5YHKENA".parse::<Designator>().is_ok());
/// assert!("25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenb".parse::<Designator>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Designator([u8; 32]);

impl Designator {
    /// The designator of a raw 32-byte public key.
    pub const fn from_key_bytes(key: [u8; 32]) -> Designator {
        Designator(key)
    }

    /// The raw 32-byte public key.
    pub const fn key_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The CapTP public key this designator names.
    pub const fn public_key(&self) -> PublicKey {
        PublicKey(self.0)
    }
}

impl FromStr for Designator {
    type Err = DesignatorError;
    fn from_str(s: &str) -> Result<Designator, DesignatorError> {
        if s.len() != 52 {
            return Err(DesignatorError::WrongLength(s.chars().count()));
        }
        let upper = s.to_ascii_uppercase();
        let mut key = [0u8; 32];
        match data_encoding::BASE32_NOPAD.decode_mut(upper.as_bytes(), &mut key) {
            Ok(32) => Ok(Designator(key)),
            Ok(n) => Err(DesignatorError::WrongLength(n)),
            Err(e) => Err(match e.error.kind {
                data_encoding::DecodeKind::Trailing => DesignatorError::NonCanonical,
                data_encoding::DecodeKind::Length => DesignatorError::WrongLength(s.len()),
                _ => DesignatorError::InvalidCharacter(e.error.position),
            }),
        }
    }
}

impl fmt::Display for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 52];
        data_encoding::BASE32_NOPAD.encode_mut(&self.0, &mut out);
        out.make_ascii_lowercase();
        // base32 output is ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Designator({self})")
    }
}

// ---------------------------------------------------------------- PublicKey

/// A CapTP Ed25519 public key (raw 32 bytes), which travels as the list
/// `[public-key [ecc [curve Ed25519] [flags eddsa] [q <32 bytes>]]]`
/// (always 96 bytes encoded).
///
/// This type only carries bytes; verifying signatures is the job of a
/// cryptographic crate (see `uds-handshake`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The designator naming this key.
    pub const fn designator(&self) -> Designator {
        Designator(self.0)
    }

    /// The CapTP list form.
    pub fn to_value(&self) -> Value {
        Value::list([
            sym("public-key"),
            Value::list([
                sym("ecc"),
                Value::list([sym("curve"), sym("Ed25519")]),
                Value::list([sym("flags"), sym("eddsa")]),
                Value::list([sym("q"), Value::bytes(self.0.to_vec())]),
            ]),
        ])
    }

    /// The 96-byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Reads the CapTP list form.
    pub fn from_value(v: &Value) -> Result<PublicKey, WireError> {
        let bad = WireError::PublicKey;
        let outer = v.as_list().ok_or(bad("expected a [public-key ...] list"))?;
        let [tag, ecc] = outer else {
            return Err(bad("expected [public-key [ecc ...]]"));
        };
        if !tag.is_symbol("public-key") {
            return Err(bad("the list does not start with the symbol public-key"));
        }
        let ecc = ecc.as_list().ok_or(bad("expected [ecc ...]"))?;
        let [tag, curve, flags, q] = ecc else {
            return Err(bad("expected [ecc [curve Ed25519] [flags eddsa] [q KEY]]"));
        };
        let pair = |v: &Value, name: &str| -> Option<Value> {
            match v.as_list()? {
                [k, x] if k.is_symbol(name) => Some(x.clone()),
                _ => None,
            }
        };
        if !tag.is_symbol("ecc") {
            return Err(bad("expected the symbol ecc"));
        }
        if !pair(curve, "curve").is_some_and(|c| c.is_symbol("Ed25519")) {
            return Err(bad("curve must be Ed25519"));
        }
        if !pair(flags, "flags").is_some_and(|c| c.is_symbol("eddsa")) {
            return Err(bad("flags must be eddsa"));
        }
        let q = pair(q, "q").ok_or(bad("expected [q KEY]"))?;
        let key: [u8; 32] = q
            .as_bytes()
            .and_then(|b| b.as_ref().try_into().ok())
            .ok_or(bad("q must be a 32-byte bytestring"))?;
        Ok(PublicKey(key))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.designator())
    }
}

// ---------------------------------------------------------------- SigVal

/// A 64-byte Ed25519 signature (`r || s`, plain RFC 8032), which travels as
/// the CapTP list `[sig-val [eddsa [r <32 bytes>] [s <32 bytes>]]]` (always
/// 100 bytes) or, in Goblins' `uds:signature`, as a raw 64-byte bytestring.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigVal(pub [u8; 64]);

impl SigVal {
    /// The `r` half.
    pub fn r(&self) -> &[u8] {
        &self.0[..32]
    }

    /// The `s` half.
    pub fn s(&self) -> &[u8] {
        &self.0[32..]
    }

    /// The CapTP list form.
    pub fn to_value(&self) -> Value {
        Value::list([
            sym("sig-val"),
            Value::list([
                sym("eddsa"),
                Value::list([sym("r"), Value::bytes(self.r().to_vec())]),
                Value::list([sym("s"), Value::bytes(self.s().to_vec())]),
            ]),
        ])
    }

    /// The 100-byte encoding of the list form.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Reads the CapTP list form.
    pub fn from_value(v: &Value) -> Result<SigVal, WireError> {
        let bad = WireError::Signature;
        let outer = v.as_list().ok_or(bad("expected a [sig-val ...] list"))?;
        let [tag, eddsa] = outer else {
            return Err(bad("expected [sig-val [eddsa ...]]"));
        };
        if !tag.is_symbol("sig-val") {
            return Err(bad("the list does not start with the symbol sig-val"));
        }
        let inner = eddsa.as_list().ok_or(bad("expected [eddsa ...]"))?;
        let [tag, r, s] = inner else {
            return Err(bad("expected [eddsa [r R] [s S]]"));
        };
        if !tag.is_symbol("eddsa") {
            return Err(bad("expected the symbol eddsa"));
        }
        let half = |v: &Value, name: &str| -> Option<[u8; 32]> {
            match v.as_list()? {
                [k, x] if k.is_symbol(name) => x.as_bytes()?.as_ref().try_into().ok(),
                _ => None,
            }
        };
        let r = half(r, "r").ok_or(bad("r must be a 32-byte bytestring"))?;
        let s = half(s, "s").ok_or(bad("s must be a 32-byte bytestring"))?;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&s);
        Ok(SigVal(sig))
    }

    /// Reads either shape: the sig-val list, or a raw 64-byte bytestring.
    pub fn from_either(v: &Value) -> Result<SigVal, WireError> {
        match v {
            Value::Bytes(b) => b
                .as_ref()
                .try_into()
                .map(SigVal)
                .map_err(|_| WireError::Signature("a raw signature must be exactly 64 bytes")),
            _ => SigVal::from_value(v),
        }
    }
}

impl fmt::Debug for SigVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigVal(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

// ---------------------------------------------------------------- Locator

/// An OCapN peer locator: `<ocapn-peer TRANSPORT DESIGNATOR HINTS>`.
///
/// For this netlayer the transport is `unix-domain-socket`, the designator is
/// the peer's key ([`Designator`]) and the hints name the introduction
/// servers (by their designators) through which the peer can be reached.
/// Two locators are **equal, and hash the same, when transport and
/// designator are equal**: hints are advice, not identity.
///
/// Hint values are not meaningful: decoding accepts any value (the draft's
/// `1`, Goblins' `"t"` and `t`), encoding emits the string `"1"`. No hints
/// encode as `f`, which is what `uds:register` carries.
///
/// ```
/// use uds_syrup::{Designator, Locator};
/// let peer: Designator = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena".parse().unwrap();
/// let server: Designator = "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga".parse().unwrap();
/// let loc = Locator::unix(peer).with_hint(server);
/// let uri = loc.to_string();
/// assert_eq!(uri, "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket?hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga=1");
/// let back: Locator = uri.parse().unwrap();
/// assert_eq!(back, loc);
/// assert_eq!(back.designator_key().unwrap(), peer);
/// // Syrup form round trip:
/// let bytes = loc.encode();
/// assert_eq!(Locator::decode(&bytes).unwrap(), loc);
/// ```
#[derive(Clone)]
pub struct Locator {
    transport: String,
    designator: String,
    hints: BTreeSet<String>,
}

impl PartialEq for Locator {
    fn eq(&self, other: &Locator) -> bool {
        self.transport == other.transport && self.designator == other.designator
    }
}

impl Eq for Locator {}

impl Hash for Locator {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.transport.hash(state);
        self.designator.hash(state);
    }
}

impl Locator {
    /// A `unix-domain-socket` locator for `designator`, without hints.
    pub fn unix(designator: Designator) -> Locator {
        Locator {
            transport: TRANSPORT.to_owned(),
            designator: designator.to_string(),
            hints: BTreeSet::new(),
        }
    }

    /// A locator of any transport. For `unix-domain-socket` the designator
    /// must be a valid [`Designator`] (it is stored in lower case).
    pub fn new(transport: &str, designator: &str) -> Result<Locator, WireError> {
        if transport.is_empty() || designator.is_empty() {
            return Err(WireError::Uri(
                "transport and designator must not be empty".into(),
            ));
        }
        let designator = if transport == TRANSPORT {
            designator.parse::<Designator>()?.to_string()
        } else {
            designator.to_owned()
        };
        Ok(Locator {
            transport: transport.to_owned(),
            designator,
            hints: BTreeSet::new(),
        })
    }

    /// Adds an introduction server's designator to the hints.
    pub fn with_hint(mut self, server: Designator) -> Locator {
        self.hints.insert(server.to_string());
        self
    }

    /// Adds a hint key (any string).
    pub fn add_hint(&mut self, key: impl Into<String>) {
        self.hints.insert(key.into());
    }

    /// This locator with its hints replaced by `servers`.
    pub fn with_hints(mut self, servers: impl IntoIterator<Item = Designator>) -> Locator {
        self.hints = servers.into_iter().map(|d| d.to_string()).collect();
        self
    }

    /// This locator without hints (as sent in `uds:register`).
    pub fn without_hints(&self) -> Locator {
        Locator {
            hints: BTreeSet::new(),
            ..self.clone()
        }
    }

    /// The transport name.
    pub fn transport(&self) -> &str {
        &self.transport
    }

    /// The designator as written in the locator.
    pub fn designator(&self) -> &str {
        &self.designator
    }

    /// The peer's key, if this is a `unix-domain-socket` locator.
    pub fn designator_key(&self) -> Result<Designator, WireError> {
        if self.transport != TRANSPORT {
            return Err(WireError::WrongTransport(self.transport.clone()));
        }
        Ok(self.designator.parse()?)
    }

    /// The hint keys, in sorted order.
    pub fn hints(&self) -> impl ExactSizeIterator<Item = &str> {
        self.hints.iter().map(String::as_str)
    }

    /// The hints that are valid designators (introduction servers).
    pub fn hint_servers(&self) -> impl Iterator<Item = Designator> + '_ {
        self.hints.iter().filter_map(|h| h.parse().ok())
    }

    /// Whether `server` is among the hints.
    pub fn has_hint(&self, server: &Designator) -> bool {
        self.hint_servers().any(|d| d == *server)
    }

    /// The Syrup record.
    pub fn to_value(&self) -> Value {
        let hints = if self.hints.is_empty() {
            Value::Bool(false)
        } else {
            Value::Dict(
                self.hints
                    .iter()
                    .map(|h| (Value::string(h.clone()), Value::string("1")))
                    .collect::<Dict>(),
            )
        };
        Value::record(
            sym("ocapn-peer"),
            [
                sym(&self.transport),
                Value::string(self.designator.clone()),
                hints,
            ],
        )
    }

    /// The canonical Syrup encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Decodes the Syrup encoding of a locator.
    pub fn decode(bytes: &[u8]) -> Result<Locator, WireError> {
        Locator::from_value(&crate::decode(bytes)?)
    }

    /// Reads the Syrup record. Hints may be `f` or a dictionary with string
    /// keys and any values.
    pub fn from_value(v: &Value) -> Result<Locator, WireError> {
        let [transport, designator, hints] = expect_record::<3>(v, "ocapn-peer")?;
        let transport = transport.as_symbol().ok_or(WireError::WrongType {
            what: "locator transport",
            expected: "symbol",
            found: transport.kind(),
        })?;
        let designator = designator.as_str().ok_or(WireError::WrongType {
            what: "locator designator",
            expected: "string",
            found: designator.kind(),
        })?;
        let mut loc = Locator::new(transport, designator)?;
        match hints {
            Value::Bool(false) => {}
            Value::Dict(d) => {
                for k in d.keys() {
                    let k = k
                        .as_str()
                        .ok_or(WireError::Hints("hint keys must be strings"))?;
                    loc.hints.insert(k.to_owned());
                }
            }
            _ => return Err(WireError::Hints("hints must be a dictionary or f")),
        }
        Ok(loc)
    }

    /// The `ocapn://` URI (same as `to_string()`).
    pub fn to_uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Debug for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Locator({self})")
    }
}

const URI_KEEP: &[u8] = b"-._~";

fn percent_encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || URI_KEEP.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(s: &str) -> Result<String, WireError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| WireError::Uri(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| WireError::Uri(format!("{s:?} is not UTF-8 once unescaped")))
}

/// `ocapn://DESIGNATOR.TRANSPORT?HINT=1&...`
impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("ocapn://");
        percent_encode(&self.designator, &mut s);
        s.push('.');
        percent_encode(&self.transport, &mut s);
        for (i, h) in self.hints.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            percent_encode(h, &mut s);
            s.push_str("=1");
        }
        f.write_str(&s)
    }
}

/// Parses `ocapn://DESIGNATOR.TRANSPORT?HINT=VALUE&...`; the last `.` of the
/// host separates designator and transport. A sturdyref (with a `/s/...`
/// path) is not a peer locator and is refused.
impl FromStr for Locator {
    type Err = WireError;
    fn from_str(uri: &str) -> Result<Locator, WireError> {
        let rest = uri
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("ocapn://"))
            .map(|_| &uri[8..])
            .ok_or_else(|| WireError::Uri(format!("{uri:?} does not start with ocapn://")))?;
        let (host, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let query = query.map(|q| q.split_once('#').map_or(q, |(q, _)| q));
        if host.contains('/') || host.contains('#') {
            return Err(WireError::Uri(format!(
                "{uri:?} has a path: that is a sturdyref, not a peer locator"
            )));
        }
        let (designator, transport) = host.rsplit_once('.').ok_or_else(|| {
            WireError::Uri(format!(
                "{uri:?}: expected DESIGNATOR.TRANSPORT after ocapn://"
            ))
        })?;
        let mut loc = Locator::new(&percent_decode(transport)?, &percent_decode(designator)?)?;
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            for pair in q.split('&') {
                let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                if key.is_empty() {
                    return Err(WireError::Uri(format!("{uri:?} has an empty hint name")));
                }
                loc.hints.insert(percent_decode(key)?);
            }
        }
        Ok(loc)
    }
}

// ---------------------------------------------------------------- records

/// `<uds:register LOCATOR CHALLENGE>`: a netlayer introduces itself to an
/// introduction server and challenges it to sign `challenge`.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        let v =
            Decoder::new(Limits::intro_channel()).decode_exact(&Bytes::copy_from_slice(bytes))?;
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
