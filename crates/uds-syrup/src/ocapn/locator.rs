//! [`Locator`]: `<ocapn-peer TRANSPORT DESIGNATOR HINTS>` and its
//! `ocapn://` URI.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::{Designator, TRANSPORT, WireError, expect_record, sym};
use crate::value::{Dict, Value};

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
///
/// A `unix-domain-socket` locator keeps the [`Designator`] it was built or
/// decoded from, so [`Locator::designator_key`] costs nothing, and its
/// hints are parsed once, when they are added.
#[derive(Clone)]
pub struct Locator {
    /// Borrowed for `unix-domain-socket`, the common case.
    transport: Cow<'static, str>,
    /// As written, except that a `unix-domain-socket` designator is stored in
    /// its canonical (lower-case) form.
    designator: String,
    /// The parsed designator: `Some` exactly for `unix-domain-socket`.
    key: Option<Designator>,
    /// Hint keys, each with its designator if it is one.
    hints: BTreeMap<String, Option<Designator>>,
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
            transport: Cow::Borrowed(TRANSPORT),
            designator: designator.to_string(),
            key: Some(designator),
            hints: BTreeMap::new(),
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
        let (designator, key) = if transport == TRANSPORT {
            let key: Designator = designator.parse()?;
            // A valid designator is base32: if it has no upper-case letter
            // it is already the canonical text, so keep it as written.
            let text = if designator.bytes().any(|b| b.is_ascii_uppercase()) {
                key.to_string()
            } else {
                designator.to_owned()
            };
            (text, Some(key))
        } else {
            (designator.to_owned(), None)
        };
        Ok(Locator {
            transport: if key.is_some() {
                Cow::Borrowed(TRANSPORT)
            } else {
                Cow::Owned(transport.to_owned())
            },
            designator,
            key,
            hints: BTreeMap::new(),
        })
    }

    /// Adds an introduction server's designator to the hints.
    pub fn with_hint(mut self, server: Designator) -> Locator {
        self.hints.insert(server.to_string(), Some(server));
        self
    }

    /// Adds a hint key (any string).
    pub fn add_hint(&mut self, key: impl Into<String>) {
        let key = key.into();
        let server = key.parse().ok();
        self.hints.insert(key, server);
    }

    /// This locator with its hints replaced by `servers`.
    pub fn with_hints(mut self, servers: impl IntoIterator<Item = Designator>) -> Locator {
        self.hints = servers
            .into_iter()
            .map(|d| (d.to_string(), Some(d)))
            .collect();
        self
    }

    /// This locator without hints (as sent in `uds:register`).
    pub fn without_hints(&self) -> Locator {
        Locator {
            transport: self.transport.clone(),
            designator: self.designator.clone(),
            key: self.key,
            hints: BTreeMap::new(),
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

    /// The peer's key, if this is a `unix-domain-socket` locator (kept from
    /// when the locator was built or decoded: no parsing here).
    pub fn designator_key(&self) -> Result<Designator, WireError> {
        self.key
            .ok_or_else(|| WireError::WrongTransport(self.transport.to_string()))
    }

    /// The hint keys, in sorted order.
    pub fn hints(&self) -> impl ExactSizeIterator<Item = &str> {
        self.hints.keys().map(String::as_str)
    }

    /// The hints that are valid designators (introduction servers), in the
    /// order of their keys.
    pub fn hint_servers(&self) -> impl Iterator<Item = Designator> + '_ {
        self.hints.values().filter_map(|d| *d)
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
                    .keys()
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
                    loc.add_hint(k);
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
        for (i, h) in self.hints.keys().enumerate() {
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
                loc.add_hint(percent_decode(key)?);
            }
        }
        Ok(loc)
    }
}
