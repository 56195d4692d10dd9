#!/usr/bin/env python3
"""An independent peer for the e2ee mode of the OCapN Unix-domain-socket netlayer.

Written only from the project's design notes (DESIGN.md sections 2, 4 and 6,
WIRE.md), its test vectors and the Noise Protocol Framework specification
(revision 34), to check that the Rust implementation interoperates with a
second one. Needs Python 3.11 and the `cryptography` package.

Sub-commands:

  vectors E2EE_TSV [--wire WIRE_TSV] [--noise NOISE_JSON]
      Reproduces every row of the e2ee vectors byte for byte (with --wire,
      the intro-protocol rows of wire.tsv too; with --noise, the official
      Noise vectors for the pattern). Exit status 0 only if all matched.

  listen --intro SOCKET [--key-seed HEX]
      Registers with the introduction server, prints
      `e2ee-peer ready locator=<URI>`, accepts one connection as the Noise
      responder, prints `e2ee-peer verified <designator>`, echoes every byte
      back until the peer's authenticated end, sends its own end and exits 0.

  connect --intro SOCKET URI [--message TEXT] [--repeat N] [--key-seed HEX]
      Registers, dials URI as the Noise initiator, prints
      `e2ee-peer verified <designator>`, sends TEXT (N times), sends the
      authenticated end, reads until the peer's end and prints
      `e2ee-peer got <text>`.

Test knobs, to check that the other implementation refuses a misbehaving
peer: --prove-seed HEX (prove another identity than the registered one),
--sign-other-static (sign an X25519 key other than the one used),
--zero-ephemeral (send a low-order ephemeral key), and for listen --no-end
(close without the authenticated end of data).

Every failure ends with a message on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import array
import base64
import hashlib
import math
import os
import select
import socket
import struct
import sys
import threading
import time

try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:  # pragma: no cover - reported to the user
    sys.stderr.write("e2ee-peer: the Python package `cryptography` is required\n")
    sys.exit(3)


class PeerError(Exception):
    """A failure to report to the user (protocol violation, bad input, I/O)."""


# --------------------------------------------------------------------------
# Syrup: a minimal canonical encoder and strict decoder (WIRE.md section 1)
# --------------------------------------------------------------------------


class Symbol(str):
    """A Syrup symbol (a Python str subclass, to tell it from a string)."""

    def __repr__(self) -> str:
        return f"Symbol({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Symbol) and str.__eq__(self, other)

    def __hash__(self) -> int:
        return hash(("symbol", str(self)))


class Record:
    """A Syrup record: a label and its fields."""

    __slots__ = ("label", "fields")

    def __init__(self, label, fields):
        self.label = label
        self.fields = tuple(fields)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Record)
            and self.label == other.label
            and self.fields == other.fields
        )

    def __hash__(self) -> int:
        return hash(("record", self.label, self.fields))

    def __repr__(self) -> str:
        return f"Record({self.label!r}, {list(self.fields)!r})"

    def labeled(self, name: str, arity: int) -> bool:
        return self.label == Symbol(name) and len(self.fields) == arity


class SyrupError(Exception):
    """Bytes that are not canonical Syrup."""


class Incomplete(Exception):
    """The buffer ends before the value does."""


CANONICAL_NAN = bytes.fromhex("7ff8000000000000")


def encode(value) -> bytes:
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value, out: bytearray) -> None:
    if value is True:
        out += b"t"
    elif value is False:
        out += b"f"
    elif isinstance(value, int):
        out += str(abs(value)).encode() + (b"-" if value < 0 else b"+")
    elif isinstance(value, float):
        out += b"D" + (CANONICAL_NAN if math.isnan(value) else struct.pack(">d", value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out += str(len(data)).encode() + b":" + data
    elif isinstance(value, Symbol):
        data = value.encode("utf-8")
        out += str(len(data)).encode() + b"'" + data
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out += str(len(data)).encode() + b'"' + data
    elif isinstance(value, Record):
        out += b"<"
        _encode(value.label, out)
        for field in value.fields:
            _encode(field, out)
        out += b">"
    elif isinstance(value, (list, tuple)):
        out += b"["
        for item in value:
            _encode(item, out)
        out += b"]"
    elif isinstance(value, dict):
        pairs = sorted((encode(k), encode(v)) for k, v in value.items())
        out += b"{"
        for k, v in pairs:
            out += k + v
        out += b"}"
    elif isinstance(value, (set, frozenset)):
        out += b"#" + b"".join(sorted(encode(item) for item in value)) + b"$"
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as Syrup")


class Decoder:
    """A strict decoder with limits; `decode_prefix` raises Incomplete when
    more bytes are needed, so it can be driven by partial reads."""

    def __init__(self, max_len: int = 65536, max_depth: int = 32, strict: bool = True):
        self.max_len = max_len
        self.max_depth = max_depth
        self.strict = strict

    def decode_prefix(self, buf: bytes, pos: int = 0):
        """Returns (value, end) for the value starting at pos."""
        return self._value(buf, pos, 0)

    def decode_all(self, buf: bytes):
        """Decodes exactly one value that fills buf."""
        try:
            value, end = self._value(buf, 0, 0)
        except Incomplete:
            raise SyrupError("truncated Syrup value") from None
        if end != len(buf):
            raise SyrupError(f"{len(buf) - end} bytes after the Syrup value")
        return value, end

    def _byte(self, buf: bytes, pos: int) -> int:
        if pos >= len(buf):
            raise Incomplete()
        return buf[pos]

    def _value(self, buf: bytes, pos: int, depth: int):
        if depth > self.max_depth:
            raise SyrupError(f"nesting deeper than {self.max_depth}")
        c = self._byte(buf, pos)
        if c == ord("t"):
            return True, pos + 1
        if c == ord("f"):
            return False, pos + 1
        if c == ord("D"):
            if pos + 9 > len(buf):
                raise Incomplete()
            raw = bytes(buf[pos + 1 : pos + 9])
            (number,) = struct.unpack(">d", raw)
            if math.isnan(number) and raw != CANONICAL_NAN:
                raise SyrupError("non-canonical NaN")
            return number, pos + 9
        if ord("0") <= c <= ord("9"):
            return self._after_digits(buf, pos, depth)
        if c == ord("<"):
            pos += 1
            if self._byte(buf, pos) == ord(">"):
                raise SyrupError("record without a label")
            label, pos = self._value(buf, pos, depth + 1)
            fields = []
            while self._byte(buf, pos) != ord(">"):
                field, pos = self._value(buf, pos, depth + 1)
                fields.append(field)
            return Record(label, fields), pos + 1
        if c == ord("["):
            pos += 1
            items = []
            while self._byte(buf, pos) != ord("]"):
                item, pos = self._value(buf, pos, depth + 1)
                items.append(item)
            return items, pos + 1
        if c == ord("{"):
            pos += 1
            result = {}
            previous = None
            while self._byte(buf, pos) != ord("}"):
                start = pos
                key, pos = self._value(buf, pos, depth + 1)
                raw_key = bytes(buf[start:pos])
                if previous is not None and self.strict and raw_key <= previous:
                    raise SyrupError("dictionary keys unsorted or duplicated")
                previous = raw_key
                value, pos = self._value(buf, pos, depth + 1)
                key = _hashable(key)
                if key in result:
                    raise SyrupError("duplicate dictionary key")
                result[key] = value
            return result, pos + 1
        if c == ord("#"):
            pos += 1
            items = set()
            previous = None
            while self._byte(buf, pos) != ord("$"):
                start = pos
                item, pos = self._value(buf, pos, depth + 1)
                raw_item = bytes(buf[start:pos])
                if previous is not None and self.strict and raw_item <= previous:
                    raise SyrupError("set items unsorted or duplicated")
                previous = raw_item
                items.add(_hashable(item))
            return frozenset(items), pos + 1
        raise SyrupError(f"unexpected byte 0x{c:02x} at offset {pos}")

    def _after_digits(self, buf: bytes, pos: int, depth: int):
        start = pos
        # Integers may be long (arbitrary precision); lengths are bounded.
        max_digits = max(len(str(self.max_len)), 1) + 1024
        while pos < len(buf) and ord("0") <= buf[pos] <= ord("9"):
            pos += 1
            if pos - start > max_digits:
                raise SyrupError("number too long")
        if pos >= len(buf):
            raise Incomplete()
        digits = bytes(buf[start:pos])
        if len(digits) > 1 and digits[0] == ord("0"):
            raise SyrupError("leading zero")
        kind = buf[pos]
        pos += 1
        if kind == ord("+"):
            return int(digits), pos
        if kind == ord("-"):
            if int(digits) == 0:
                raise SyrupError("negative zero")
            return -int(digits), pos
        if kind not in b":\"'":
            raise SyrupError(f"unexpected byte 0x{kind:02x} after digits")
        if len(digits) > len(str(self.max_len)) or int(digits) > self.max_len:
            raise SyrupError(f"length {digits.decode()} beyond the limit {self.max_len}")
        length = int(digits)
        if pos + length > len(buf):
            raise Incomplete()
        data = bytes(buf[pos : pos + length])
        end = pos + length
        if kind == ord(":"):
            return data, end
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SyrupError("invalid UTF-8") from None
        return (text if kind == ord('"') else Symbol(text)), end


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        raise SyrupError("a dictionary as a dictionary key is not supported here")
    return value


def decodes_as_complete_value(data: bytes) -> bool:
    """True if data, as a whole, is one Syrup value. The check is lenient
    (order, UTF-8 and record labels are not checked, nesting is unbounded)
    because a signature on such bytes could be taken by a lenient CapTP
    reader as a signature on that value."""
    closers = {ord("<"): ord(">"), ord("["): ord("]"), ord("{"): ord("}"), ord("#"): ord("$")}
    stack = []
    pos, n = 0, len(data)
    while pos < n:
        c = data[pos]
        if stack and c == stack[-1]:
            stack.pop()
            pos += 1
        elif c in closers:
            stack.append(closers[c])
            pos += 1
            continue
        elif c in b"tf":
            pos += 1
        elif c == ord("D"):
            pos += 9
        elif ord("0") <= c <= ord("9"):
            start = pos
            while pos < n and ord("0") <= data[pos] <= ord("9"):
                pos += 1
            if pos >= n:
                return False
            kind = data[pos]
            pos += 1
            if kind in b":\"'":
                pos += int(data[start : pos - 1])
            elif kind not in b"+-":
                return False
        else:
            return False
        if not stack:
            return pos == n
    return False


# --------------------------------------------------------------------------
# OCapN structures (WIRE.md section 2)
# --------------------------------------------------------------------------


def public_key_value(key: bytes):
    return [
        Symbol("public-key"),
        [
            Symbol("ecc"),
            [Symbol("curve"), Symbol("Ed25519")],
            [Symbol("flags"), Symbol("eddsa")],
            [Symbol("q"), key],
        ],
    ]


def parse_public_key(value) -> bytes:
    if (
        isinstance(value, list)
        and len(value) == 2
        and value[0] == Symbol("public-key")
        and isinstance(value[1], list)
        and len(value[1]) == 4
    ):
        ecc, curve, flags, q = value[1]
        if (
            ecc == Symbol("ecc")
            and curve == [Symbol("curve"), Symbol("Ed25519")]
            and flags == [Symbol("flags"), Symbol("eddsa")]
            and isinstance(q, list)
            and len(q) == 2
            and q[0] == Symbol("q")
            and isinstance(q[1], bytes)
            and len(q[1]) == 32
        ):
            return q[1]
    raise PeerError(f"not an Ed25519 public key: {value!r}")


def sig_val_value(signature: bytes):
    return [
        Symbol("sig-val"),
        [Symbol("eddsa"), [Symbol("r"), signature[:32]], [Symbol("s"), signature[32:]]],
    ]


def parse_sig_val(value) -> bytes:
    if (
        isinstance(value, list)
        and len(value) == 2
        and value[0] == Symbol("sig-val")
        and isinstance(value[1], list)
        and len(value[1]) == 3
    ):
        eddsa, r, s = value[1]
        if (
            eddsa == Symbol("eddsa")
            and isinstance(r, list)
            and isinstance(s, list)
            and len(r) == 2
            and len(s) == 2
            and r[0] == Symbol("r")
            and s[0] == Symbol("s")
            and isinstance(r[1], bytes)
            and isinstance(s[1], bytes)
            and len(r[1]) == 32
            and len(s[1]) == 32
        ):
            return r[1] + s[1]
    raise PeerError(f"not an eddsa sig-val: {value!r}")


def designator_of(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii").rstrip("=").lower()


def designator_key(designator: str) -> bytes:
    if len(designator) != 52 or designator != designator.lower():
        raise PeerError(f"not a designator (52 lower-case base32 characters): {designator!r}")
    try:
        key = base64.b32decode(designator.upper() + "====")
    except ValueError:
        raise PeerError(f"not a designator (bad base32): {designator!r}") from None
    if len(key) != 32 or designator_of(key) != designator:
        raise PeerError(f"not a canonical designator: {designator!r}")
    return key


TRANSPORT = "unix-domain-socket"


def locator_value(designator: str, hints):
    """hints: a list of server designators (each hinted with "1"), or None
    for `f` as in uds:register."""
    hint_value = False if hints is None else {h: "1" for h in hints}
    return Record(Symbol("ocapn-peer"), [Symbol(TRANSPORT), designator, hint_value])


def parse_locator(value):
    """Returns (designator, [hint keys]); accepts any hint value."""
    if not (isinstance(value, Record) and value.labeled("ocapn-peer", 3)):
        raise PeerError(f"not a peer locator: {value!r}")
    transport, designator, hints = value.fields
    if transport != Symbol(TRANSPORT):
        raise PeerError(f"locator for transport {transport!r}, not {TRANSPORT}")
    if not isinstance(designator, str) or isinstance(designator, Symbol):
        raise PeerError("locator designator is not a string")
    designator_key(designator)
    if hints is False:
        keys = []
    elif isinstance(hints, dict) and all(
        isinstance(k, str) and not isinstance(k, Symbol) for k in hints
    ):
        keys = list(hints)
    else:
        raise PeerError(f"locator hints are neither a dictionary nor f: {hints!r}")
    return designator, keys


def locator_uri(designator: str, server: str) -> str:
    return f"ocapn://{designator}.{TRANSPORT}?{server}=1"


def parse_uri(uri: str):
    """Returns (designator, [hinted servers])."""
    prefix = "ocapn://"
    if not uri.startswith(prefix):
        raise PeerError(f"the locator {uri!r} does not start with {prefix}")
    rest = uri[len(prefix) :]
    host, _, query = rest.partition("?")
    host = host.split("/", 1)[0]
    designator, dot, transport = host.rpartition(".")
    if not dot or transport != TRANSPORT:
        raise PeerError(f"the locator {uri!r} is not for the {TRANSPORT} transport")
    designator_key(designator)
    servers = []
    for pair in filter(None, query.split("&")):
        key = pair.partition("=")[0]
        designator_key(key)
        servers.append(key)
    return designator, servers


# --------------------------------------------------------------------------
# Ed25519 with strict verification
# --------------------------------------------------------------------------

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(enc: bytes):
    """Decompresses an Edwards25519 point (extended coordinates), or None if
    the encoding is non-canonical or not on the curve."""
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    sign = enc[31] >> 7
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, (x * y) % _P)


def _double(pt):
    x1, y1, z1, _ = pt
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = (a + b) % _P
    e = (h - (x1 + y1) * (x1 + y1)) % _P
    g = (a - b) % _P
    f = (c + g) % _P
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _is_small_order(enc: bytes) -> bool:
    pt = _decode_point(enc)
    if pt is None:
        return True  # treated as unusable
    for _ in range(3):
        pt = _double(pt)
    x, y, z, _ = pt
    return x % _P == 0 and (y - z) % _P == 0


_L = 2**252 + 27742317777372353535851937790883648493


def verify_strict(key: bytes, signature: bytes, message: bytes) -> bool:
    """RFC 8032 verification that also refuses weak keys and R values
    (small order or non-canonical encodings) and S >= L."""
    if len(key) != 32 or len(signature) != 64:
        return False
    if _is_small_order(key) or _is_small_order(signature[:32]):
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


class Identity:
    """An Ed25519 identity (the designator key)."""

    def __init__(self, seed: bytes | None = None):
        self.private = (
            Ed25519PrivateKey.from_private_bytes(seed)
            if seed is not None
            else Ed25519PrivateKey.generate()
        )
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.designator = designator_of(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def sign_challenge(self, challenge: bytes) -> bytes:
        """Signs an intro-protocol challenge, never one that is itself a
        Syrup value (DESIGN 4.7: no signing oracle for CapTP)."""
        if not 16 <= len(challenge) <= 1024:
            raise PeerError(f"refusing a challenge of {len(challenge)} bytes (16 to 1024 allowed)")
        if decodes_as_complete_value(challenge):
            raise PeerError("refusing to sign a challenge that decodes as a Syrup value")
        return self.sign(challenge)


# --------------------------------------------------------------------------
# The registration handshake, client side (WIRE.md section 3)
# --------------------------------------------------------------------------


def register_message(me: Identity, challenge: bytes) -> bytes:
    return encode(
        Record(Symbol("uds:register"), [locator_value(me.designator, None), challenge])
    )


def answer_server_response(value, challenge: bytes, me: Identity, wire: str = "auto"):
    """Checks the server's `uds:server-response` to our challenge and returns
    (server designator, shape used by the server, the `uds:signature` bytes)."""
    if not (isinstance(value, Record) and value.labeled("uds:server-response", 3)):
        raise PeerError(f"expected uds:server-response, got {value!r}")
    key_value, server_challenge, response = value.fields
    server_key = parse_public_key(key_value)
    if not isinstance(server_challenge, bytes):
        raise PeerError("the server's challenge is not a bytestring")
    if isinstance(response, Record):
        if not response.labeled("uds:signature", 2):
            raise PeerError(f"unexpected signature shape from the server: {response!r}")
        payload, sig_value = response.fields
        if payload != challenge:
            raise PeerError("the server signed something other than our challenge")
        shape = "draft"
    else:
        sig_value = response
        shape = "goblins"
    signature = parse_sig_val(sig_value)
    if not verify_strict(server_key, signature, challenge):
        raise PeerError("the intro server's signature on our challenge is invalid")
    answer_shape = shape if wire == "auto" else wire
    mine = me.sign_challenge(server_challenge)
    field = mine if answer_shape == "goblins" else sig_val_value(mine)
    answer = encode(Record(Symbol("uds:signature"), [server_challenge, field]))
    return designator_of(server_key), shape, answer


# --------------------------------------------------------------------------
# The intro channel: recvmsg with room for fds (DESIGN 4.3 and 4.4)
# --------------------------------------------------------------------------

SCM_RIGHTS_BODY = bytes.fromhex("39300000")
MAX_FDS = 253


def _close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class IntroChannel:
    def __init__(self, sock: socket.socket, deadline: float | None):
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.base = 0  # absolute offset of buf[0]
        self.marks = []  # (absolute end offset of the read, [fds])
        self.decoder = Decoder(max_len=65536, max_depth=32)

    def close(self) -> None:
        for _, fds in self.marks:
            _close_all(fds)
        self.marks = []
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        timeout = None if self.deadline is None else self.deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise PeerError("timed out waiting for the introduction server")
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise PeerError("timed out waiting for the introduction server")
        data, ancdata, flags, _ = self.sock.recvmsg(
            65536, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
        )
        fds = []
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(cdata[: len(cdata) - len(cdata) % got.itemsize])
                fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            _close_all(fds)
            raise PeerError("the introduction server sent more fds than fit (MSG_CTRUNC)")
        if not data:
            _close_all(fds)
            raise PeerError("the introduction server closed the connection")
        self.buf += data
        if fds:
            self.marks.append((self.base + len(self.buf), fds))

    def _consume(self, n: int) -> None:
        del self.buf[:n]
        self.base += n

    def next_message(self):
        """Returns (value, raw bytes, absolute end offset)."""
        while True:
            try:
                value, end = self.decoder.decode_prefix(self.buf)
            except Incomplete:
                self._fill()
                continue
            except SyrupError as e:
                raise PeerError(f"bad message from the introduction server: {e}") from None
            raw = bytes(self.buf[:end])
            self._consume(end)
            return value, raw, self.base

    def no_fds_before(self, offset: int) -> None:
        stray = [m for m in self.marks if m[0] <= offset]
        if stray:
            for _, fds in stray:
                _close_all(fds)
            self.marks = [m for m in self.marks if m[0] > offset]
            raise PeerError("the introduction server sent an fd outside an introduction")

    def take_fd(self, record_end: int) -> int:
        """The fd whose read ended 1 to 4 bytes after the record; discards
        those body bytes, closes any extra fds."""
        self.no_fds_before(record_end)
        while not self.marks:
            if self.base + len(self.buf) > record_end + 4:
                raise PeerError("no fd arrived with the introduction")
            self._fill()
        end, fds = self.marks.pop(0)
        if end > record_end + 4:
            _close_all(fds)
            raise PeerError("the introduction's fd arrived too late")
        self._consume(end - self.base)
        _close_all(fds[1:])
        return fds[0]


def connect_intro(path: str, me: Identity, wire: str, timeout: float):
    """Registers `me`; returns (channel, server designator)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise PeerError(f"could not connect to the introduction server at {path}: {e}") from None
    chan = IntroChannel(sock, time.monotonic() + timeout)
    try:
        challenge = os.urandom(64)
        chan.send(register_message(me, challenge))
        value, _, end = chan.next_message()
        chan.no_fds_before(end)
        server, _, answer = answer_server_response(value, challenge, me, wire)
        chan.send(answer)
    except BaseException:
        chan.close()
        raise
    chan.deadline = None
    return chan, server


# --------------------------------------------------------------------------
# Noise_XX_25519_ChaChaPoly_BLAKE2s (Noise Protocol Framework, revision 34)
# --------------------------------------------------------------------------

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_BLAKE2s"
HASHLEN = 32
BLOCKLEN = 64
MAX_MESSAGE = 65535
TAGLEN = 16
MAX_PLAINTEXT = MAX_MESSAGE - TAGLEN  # 65519
NONCE_LIMIT = 2**64 - 1  # reserved by the spec


class HandshakeError(PeerError):
    pass


def blake2s(data: bytes) -> bytes:
    return hashlib.blake2s(data, digest_size=32).digest()


def hmac_blake2s(key: bytes, data: bytes) -> bytes:
    if len(key) > BLOCKLEN:
        key = blake2s(key)
    key = key.ljust(BLOCKLEN, b"\x00")
    inner = bytes(b ^ 0x36 for b in key)
    outer = bytes(b ^ 0x5C for b in key)
    return blake2s(outer + blake2s(inner + data))


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int):
    temp = hmac_blake2s(chaining_key, ikm)
    out1 = hmac_blake2s(temp, b"\x01")
    out2 = hmac_blake2s(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, hmac_blake2s(temp, out2 + b"\x03")


def x25519_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise HandshakeError("X25519 gave an all-zero result (a low-order key)") from None
    if shared == bytes(32):
        raise HandshakeError("X25519 gave an all-zero result (a low-order key)")
    return shared


class CipherState:
    def __init__(self, key: bytes | None = None):
        self.k = key
        self.n = 0

    def _nonce(self) -> bytes:
        if self.n >= NONCE_LIMIT:
            raise PeerError("nonces exhausted: the connection must close")
        return b"\x00" * 4 + struct.pack("<Q", self.n)

    def encrypt(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.k is None:
            return plaintext
        out = ChaCha20Poly1305(self.k).encrypt(self._nonce(), plaintext, ad)
        self.n += 1
        return out

    def decrypt(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.k is None:
            return ciphertext
        try:
            out = ChaCha20Poly1305(self.k).decrypt(self._nonce(), ciphertext, ad)
        except InvalidTag:
            raise HandshakeError("decryption failed (wrong key or tampered bytes)") from None
        self.n += 1
        return out


class SymmetricState:
    def __init__(self):
        if len(PROTOCOL_NAME) <= HASHLEN:
            self.h = PROTOCOL_NAME.ljust(HASHLEN, b"\x00")
        else:
            self.h = blake2s(PROTOCOL_NAME)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = blake2s(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self):
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1), CipherState(k2)


class HandshakeXX:
    """XX:  -> e;  <- e, ee, s, es;  -> s, se."""

    PATTERN = (("e",), ("e", "ee", "s", "es"), ("s", "se"))

    def __init__(self, initiator: bool, prologue: bytes, static: X25519PrivateKey,
                 ephemeral: X25519PrivateKey | None = None):
        self.initiator = initiator
        self.ss = SymmetricState()
        self.ss.mix_hash(prologue)
        self.s = static
        self.e = ephemeral
        self.rs = None
        self.re = None
        self.step = 0
        # A test knob: the public key to send for `e` instead of the real one.
        self.e_public = None

    def _dh_token(self, token: str) -> None:
        # The first letter names the initiator's key, the second the
        # responder's; each side uses its own private key and the other's
        # public key.
        mine_first = self.initiator
        local = token[0] if mine_first else token[1]
        remote = token[1] if mine_first else token[0]
        private = self.e if local == "e" else self.s
        public = self.re if remote == "e" else self.rs
        self.ss.mix_key(dh(private, public))

    def _my_turn(self) -> bool:
        return (self.step % 2 == 0) == self.initiator

    def write_message(self, payload: bytes) -> bytes:
        if self.step >= 3 or not self._my_turn():
            raise HandshakeError("handshake message written out of turn")
        out = bytearray()
        for token in self.PATTERN[self.step]:
            if token == "e":
                if self.e is None:
                    self.e = X25519PrivateKey.generate()
                pub = self.e_public if self.e_public is not None else x25519_public(self.e)
                out += pub
                self.ss.mix_hash(pub)
            elif token == "s":
                out += self.ss.encrypt_and_hash(x25519_public(self.s))
            else:
                self._dh_token(token)
        out += self.ss.encrypt_and_hash(payload)
        self.step += 1
        if len(out) > MAX_MESSAGE:
            raise HandshakeError("handshake message too long")
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        if self.step >= 3 or self._my_turn():
            raise HandshakeError("handshake message read out of turn")
        pos = 0
        for token in self.PATTERN[self.step]:
            if token == "e":
                if len(message) - pos < 32:
                    raise HandshakeError("handshake message too short")
                self.re = bytes(message[pos : pos + 32])
                pos += 32
                self.ss.mix_hash(self.re)
            elif token == "s":
                size = 32 + (TAGLEN if self.ss.cipher.k is not None else 0)
                if len(message) - pos < size:
                    raise HandshakeError("handshake message too short")
                self.rs = self.ss.decrypt_and_hash(bytes(message[pos : pos + size]))
                pos += size
            else:
                self._dh_token(token)
        rest = bytes(message[pos:])
        if self.ss.cipher.k is not None and len(rest) < TAGLEN:
            raise HandshakeError("handshake message too short")
        payload = self.ss.decrypt_and_hash(rest)
        self.step += 1
        return payload

    @property
    def finished(self) -> bool:
        return self.step == 3

    def split(self):
        """(sending cipher, receiving cipher) for this side."""
        if not self.finished:
            raise HandshakeError("split before the handshake finished")
        c1, c2 = self.ss.split()
        return (c1, c2) if self.initiator else (c2, c1)

    @property
    def handshake_hash(self) -> bytes:
        return self.ss.h


# --------------------------------------------------------------------------
# The e2ee binding to designator keys (DESIGN 4.8)
# --------------------------------------------------------------------------

PROLOGUE_PREFIX = b"ocapn-uds-e2ee/1\x00"
STATIC_KEY_CONTEXT = b"ocapn-uds-e2ee-static-key:"


def prologue(initiator_key: bytes, responder_key: bytes) -> bytes:
    return PROLOGUE_PREFIX + initiator_key + responder_key


def identity_record(me: Identity, static: X25519PrivateKey) -> bytes:
    signature = me.sign(STATIC_KEY_CONTEXT + x25519_public(static))
    return encode(
        Record(
            Symbol("uds:e2ee-identity"),
            [public_key_value(me.public), sig_val_value(signature)],
        )
    )


def check_identity(payload: bytes, remote_static: bytes, expected_key: bytes) -> bytes:
    """Checks a `<uds:e2ee-identity PUBLIC-KEY SIG-VAL>` payload."""
    try:
        value, _ = Decoder(max_len=MAX_MESSAGE, max_depth=8).decode_all(payload)
    except SyrupError as e:
        raise HandshakeError(f"the peer's identity payload is not Syrup: {e}") from None
    if not (isinstance(value, Record) and value.labeled("uds:e2ee-identity", 2)):
        raise HandshakeError("the peer's payload is not a uds:e2ee-identity record")
    key = parse_public_key(value.fields[0])
    signature = parse_sig_val(value.fields[1])
    if key != expected_key:
        raise HandshakeError(
            f"the peer proved identity {designator_of(key)}, "
            f"not the expected {designator_of(expected_key)}"
        )
    if not verify_strict(key, signature, STATIC_KEY_CONTEXT + remote_static):
        raise HandshakeError("the peer's signature on its static key is invalid")
    return key


def frame(body: bytes) -> bytes:
    if len(body) > MAX_MESSAGE:
        raise PeerError("frame too long")
    return struct.pack(">H", len(body)) + body


class FrameReader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _read(self) -> bool:
        try:
            data = self.sock.recv(1 << 17)
        except ConnectionResetError:
            # The peer closed with our bytes unread: an end of file too.
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    def read_frame(self):
        """The next frame's body, or None at end of file before a frame."""
        while len(self.buf) < 2:
            if not self._read():
                if self.buf:
                    raise PeerError("truncated: the connection ended inside a frame")
                return None
        (length,) = struct.unpack(">H", self.buf[:2])
        while len(self.buf) < 2 + length:
            if not self._read():
                raise PeerError("truncated: the connection ended inside a frame")
        body = bytes(self.buf[2 : 2 + length])
        del self.buf[: 2 + length]
        return body


class SecureChannel:
    """An established e2ee connection: framed ChaCha20-Poly1305 transport."""

    def __init__(self, sock, reader, send_cipher, recv_cipher, peer_key, handshake_hash):
        self.sock = sock
        self.reader = reader
        self.send_cipher = send_cipher
        self.recv_cipher = recv_cipher
        self.peer_key = peer_key
        self.handshake_hash = handshake_hash
        self.peer_ended = False
        self.send_lock = threading.Lock()
        self.ended = False

    def send(self, data: bytes) -> None:
        with self.send_lock:
            if self.ended:
                raise PeerError("write after end")
            for start in range(0, len(data), MAX_PLAINTEXT):
                chunk = data[start : start + MAX_PLAINTEXT]
                self.sock.sendall(frame(self.send_cipher.encrypt(b"", chunk)))

    def end(self) -> None:
        """Authenticated end of data: one empty frame, then SHUT_WR."""
        with self.send_lock:
            if self.ended:
                return
            self.sock.sendall(frame(self.send_cipher.encrypt(b"", b"")))
            self.ended = True
            self.sock.shutdown(socket.SHUT_WR)

    def recv(self):
        """The next non-empty plaintext, or None at the peer's authenticated end."""
        if self.peer_ended:
            return None
        body = self.reader.read_frame()
        if body is None:
            if self.recv_cipher.n == 0:
                raise PeerError(
                    "truncated: the connection ended before the peer sent anything after "
                    "the handshake (did it refuse our identity?)"
                )
            raise PeerError("truncated: the connection ended without the peer's end frame")
        if len(body) < TAGLEN:
            raise PeerError("transport frame shorter than its tag")
        try:
            plaintext = self.recv_cipher.decrypt(b"", body)
        except HandshakeError:
            raise PeerError("a transport frame failed to decrypt") from None
        if not plaintext:
            self.peer_ended = True
            return None
        return plaintext


class Lies:
    """Test knobs: ways to misbehave in a handshake that a correct peer must
    refuse. The default misbehaves in no way."""

    def __init__(self, prover=None, sign_other_static=False, zero_ephemeral=False):
        self.prover = prover  # an Identity to prove instead of our own
        self.sign_other_static = sign_other_static
        self.zero_ephemeral = zero_ephemeral

    def identity_record(self, me, static) -> bytes:
        signed = X25519PrivateKey.generate() if self.sign_other_static else static
        return identity_record(self.prover or me, signed)


def handshake_initiator(sock, me, static, peer_key, ephemeral=None, lies=None) -> SecureChannel:
    """Runs the dialer's side; `lies` (test knobs) as given, the prologue
    always names `me`."""
    lies = lies or Lies()
    reader = FrameReader(sock)
    hs = HandshakeXX(True, prologue(me.public, peer_key), static, ephemeral)
    if lies.zero_ephemeral:
        hs.e_public = bytes(32)
    sock.sendall(frame(hs.write_message(b"")))
    msg2 = reader.read_frame()
    if msg2 is None:
        raise HandshakeError("the peer closed the connection before handshake message 2")
    payload = hs.read_message(msg2)
    check_identity(payload, hs.rs, peer_key)
    sock.sendall(frame(hs.write_message(lies.identity_record(me, static))))
    send, recv = hs.split()
    return SecureChannel(sock, reader, send, recv, peer_key, hs.handshake_hash)


def handshake_responder(sock, me, static, dialer_key, ephemeral=None, lies=None) -> SecureChannel:
    """Runs the accepting side; `lies` as for handshake_initiator."""
    lies = lies or Lies()
    reader = FrameReader(sock)
    hs = HandshakeXX(False, prologue(dialer_key, me.public), static, ephemeral)
    msg1 = reader.read_frame()
    if msg1 is None:
        raise HandshakeError("the peer closed the connection before handshake message 1")
    if len(msg1) != 32:
        raise HandshakeError(f"handshake message 1 has {len(msg1)} bytes, not 32")
    hs.read_message(msg1)
    if lies.zero_ephemeral:
        hs.e_public = bytes(32)
    sock.sendall(frame(hs.write_message(lies.identity_record(me, static))))
    msg3 = reader.read_frame()
    if msg3 is None:
        raise HandshakeError("the peer closed the connection before handshake message 3")
    payload = hs.read_message(msg3)
    check_identity(payload, hs.rs, dialer_key)
    send, recv = hs.split()
    return SecureChannel(sock, reader, send, recv, dialer_key, hs.handshake_hash)


# --------------------------------------------------------------------------
# Sub-command: vectors
# --------------------------------------------------------------------------


def read_tsv(path: str) -> dict:
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, value = line.split("\t")[:2]
            rows[name] = value
    return rows


class Checker:
    def __init__(self, rows: dict, source: str):
        self.rows = rows
        self.source = source
        self.checked = set()
        self.failures = 0

    def hex(self, name: str) -> bytes:
        self.checked.add(name)
        return bytes.fromhex(self.rows[name])

    def text(self, name: str) -> str:
        self.checked.add(name)
        return self.rows[name]

    def same(self, name: str, got) -> None:
        self.checked.add(name)
        want = self.rows.get(name)
        shown = got.hex() if isinstance(got, bytes) else got
        if want is None:
            print(f"MISSING {name}: no such row in {self.source}")
            self.failures += 1
        elif shown == want:
            print(f"ok {name}")
        else:
            print(f"MISMATCH {name}:\n  expected {want}\n  computed {shown}")
            self.failures += 1

    def truth(self, name: str, condition: bool, what: str) -> None:
        self.checked.add(name)
        if condition:
            print(f"ok {name}: {what}")
        else:
            print(f"FAILED {name}: {what}")
            self.failures += 1

    def finish(self) -> int:
        unchecked = sorted(set(self.rows) - self.checked)
        for name in unchecked:
            print(f"UNCHECKED {name} (a row this tool does not know)")
        return self.failures + len(unchecked)


def e2ee_vectors(path: str) -> int:
    c = Checker(read_tsv(path), path)
    alice = Identity(c.hex("alice-ed25519-seed"))
    bob = Identity(c.hex("bob-ed25519-seed"))
    c.same("alice-ed25519-public", alice.public)
    c.same("bob-ed25519-public", bob.public)
    a_static = X25519PrivateKey.from_private_bytes(c.hex("alice-x25519-static"))
    b_static = X25519PrivateKey.from_private_bytes(c.hex("bob-x25519-static"))
    a_eph = c.hex("alice-x25519-ephemeral")
    b_eph = c.hex("bob-x25519-ephemeral")

    def eph(raw):
        return X25519PrivateKey.from_private_bytes(raw)

    c.same("prologue", prologue(alice.public, bob.public))
    c.same("alice-identity-record", identity_record(alice, a_static))
    c.same("bob-identity-record", identity_record(bob, b_static))

    # The whole transcript, through the same code the sockets use.
    a, b = socket.socketpair()
    result = {}

    def run_bob():
        try:
            result["bob"] = handshake_responder(b, bob, b_static, alice.public, eph(b_eph))
        except Exception as e:  # reported below
            result["bob"] = e

    recorder = _Recorder(a)
    thread = threading.Thread(target=run_bob)
    thread.start()
    try:
        alice_chan = handshake_initiator(recorder, alice, a_static, bob.public, eph(a_eph))
    finally:
        thread.join()
    bob_chan = result["bob"]
    if isinstance(bob_chan, Exception):
        raise bob_chan
    c.same("message-1", recorder.sent[0])
    c.same("message-2", recorder.received_frames[0])
    c.same("message-3", recorder.sent[1])
    c.truth(
        "handshake-hash",
        alice_chan.handshake_hash == bob_chan.handshake_hash,
        "both sides end with the same h",
    )
    c.same("handshake-hash", alice_chan.handshake_hash)
    c.same("transport-alice-1", frame(alice_chan.send_cipher.encrypt(b"", b"hello bob")))
    c.same("transport-bob-1", frame(bob_chan.send_cipher.encrypt(b"", b"hi alice")))
    c.same("transport-alice-2", frame(alice_chan.send_cipher.encrypt(b"", b"")))
    # And the frames decrypt on the other side, the empty one as the end.
    c.truth(
        "transport-alice-1",
        bob_chan.recv_cipher.decrypt(b"", c.hex("transport-alice-1")[2:]) == b"hello bob",
        "bob decrypts alice's frame",
    )
    c.truth(
        "transport-bob-1",
        alice_chan.recv_cipher.decrypt(b"", c.hex("transport-bob-1")[2:]) == b"hi alice",
        "alice decrypts bob's frame",
    )
    c.truth(
        "transport-alice-2",
        bob_chan.recv_cipher.decrypt(b"", c.hex("transport-alice-2")[2:]) == b"",
        "bob reads alice's end of data",
    )
    a.close()
    b.close()

    # The intro server lied to bob about who dialed: bob's prologue names
    # another initiator key, so alice cannot decrypt his message 2.
    liar = Identity(bytes(range(0x41, 0x61)))
    lied = HandshakeXX(False, prologue(liar.public, bob.public), b_static, eph(b_eph))
    lied.read_message(c.hex("message-1")[2:])
    c.same("message-2-from-lied-about", frame(lied.write_message(identity_record(bob, b_static))))
    fooled = HandshakeXX(True, prologue(alice.public, bob.public), a_static, eph(a_eph))
    fooled.write_message(b"")
    try:
        payload = fooled.read_message(c.hex("message-2-from-lied-about")[2:])
        check_identity(payload, fooled.rs, bob.public)
        rejected, why = False, "alice accepted it"
    except HandshakeError as e:
        rejected, why = "decryption failed" in str(e), f"alice rejects it: {e}"
    c.truth("message-2-from-lied-about", rejected, why)
    return c.finish()


class _Recorder:
    """A socket wrapper that records frames sent and received (for vectors)."""

    def __init__(self, sock):
        self.sock = sock
        self.sent = []
        self.received = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        self.received += data
        return data

    def shutdown(self, how) -> None:
        self.sock.shutdown(how)

    @property
    def received_frames(self):
        frames, pos = [], 0
        while pos + 2 <= len(self.received):
            (n,) = struct.unpack(">H", self.received[pos : pos + 2])
            frames.append(bytes(self.received[pos : pos + 2 + n]))
            pos += 2 + n
        return frames


def noise_vectors(path: str) -> int:
    """Checks the Noise core alone against the official vectors for the
    pattern (the `vectors` list of a noise-xx.json file)."""
    import json

    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)["vectors"]
    failures = checked = 0
    for number, v in enumerate(vectors):
        if v.get("protocol_name") != PROTOCOL_NAME.decode() or v.get("init_psks") or v.get(
            "resp_psks"
        ):
            continue
        checked += 1

        def key(name):
            return X25519PrivateKey.from_private_bytes(bytes.fromhex(v[name]))

        initiator = HandshakeXX(
            True, bytes.fromhex(v["init_prologue"]), key("init_static"), key("init_ephemeral")
        )
        responder = HandshakeXX(
            False, bytes.fromhex(v["resp_prologue"]), key("resp_static"), key("resp_ephemeral")
        )
        results = []
        messages = v["messages"]
        for n, m in enumerate(messages[:3]):
            writer, reader = (initiator, responder) if n % 2 == 0 else (responder, initiator)
            payload = bytes.fromhex(m["payload"])
            ciphertext = writer.write_message(payload)
            results.append(ciphertext.hex() == m["ciphertext"])
            results.append(reader.read_message(ciphertext) == payload)
        if "handshake_hash" in v:
            results.append(initiator.handshake_hash.hex() == v["handshake_hash"])
        i_send, _ = initiator.split()
        r_send, _ = responder.split()
        # After the three handshake messages, the responder speaks first.
        for n, m in enumerate(messages[3:]):
            sender = r_send if n % 2 == 0 else i_send
            ciphertext = sender.encrypt(b"", bytes.fromhex(m["payload"]))
            results.append(ciphertext.hex() == m["ciphertext"])
        if all(results):
            print(f"ok noise vector {number}: {len(messages)} messages")
        else:
            print(f"MISMATCH noise vector {number}: {results}")
            failures += 1
    if not checked:
        print(f"MISSING: no {PROTOCOL_NAME.decode()} vector in {path}")
        failures += 1
    return failures


def wire_vectors(path: str) -> int:
    c = Checker(read_tsv(path), path)
    peer = Identity(c.hex("key1-seed"))
    server = Identity(c.hex("key2-seed"))
    c.same("key1-public", peer.public)
    c.same("key2-public", server.public)
    c.same("key1-designator", peer.designator)
    c.same("key2-designator", server.designator)
    c.truth("key1-designator", designator_key(peer.designator) == peer.public, "decodes back")
    pk = encode(public_key_value(peer.public))
    c.same("public-key-key1", pk)
    c.same("public-id-key1", hashlib.sha256(hashlib.sha256(pk).digest()).digest())
    c.same("sig-val-empty-key1", encode(sig_val_value(peer.sign(b""))))
    strict = Decoder()
    loc = locator_value(peer.designator, [server.designator])
    c.same("locator-hint-string-1", encode(loc))
    for name in (
        "locator-hint-string-1",
        "locator-hint-int-1",
        "locator-hint-string-t",
        "locator-hint-bool-t",
    ):
        value, _ = strict.decode_all(c.hex(name))
        got = parse_locator(value)
        c.truth(name, got == (peer.designator, [server.designator]), f"accepted as {got}")
    value, _ = strict.decode_all(c.hex("locator-no-hints"))
    c.truth("locator-no-hints", parse_locator(value) == (peer.designator, []), "accepted")
    c.same("locator-no-hints", encode(locator_value(peer.designator, None)))
    c.same("uri-locator", locator_uri(peer.designator, server.designator))
    c.truth(
        "uri-locator",
        parse_uri(c.text("uri-locator")) == (peer.designator, [server.designator]),
        "parses back",
    )
    challenge = bytes(range(64))
    c.same("uds-register", register_message(peer, challenge))
    for shape in ("draft", "goblins"):
        value, _ = strict.decode_all(c.hex(f"uds-server-response-{shape}"))
        got_server, got_shape, answer = answer_server_response(value, challenge, peer)
        c.truth(
            f"uds-server-response-{shape}",
            got_server == server.designator and got_shape == shape,
            f"verified, shape {got_shape}",
        )
        c.same(f"uds-signature-{shape}", answer)
        # A response to some other challenge is refused.
        try:
            answer_server_response(value, bytes(64), peer)
            refused = False
        except PeerError:
            refused = True
        c.truth(f"uds-server-response-{shape}", refused, "refused for another challenge")
    c.same(
        "uds-new-connection",
        encode(
            Record(
                Symbol("uds:new-connection"),
                [
                    locator_value(peer.designator, [server.designator]),
                    locator_value(server.designator, [peer.designator]),
                ],
            )
        ),
    )
    c.same("scm-rights-body", SCM_RIGHTS_BODY)
    c.same("my-location", encode(Record(Symbol("my-location"), [loc])))
    op_abort = encode(Record(Symbol("op:abort"), ["bye"]))
    c.same("op-abort", op_abort)
    c.same("op-abort-framed", encode(op_abort))
    # The signing-oracle guard: these are Syrup values, never signed.
    for name in ("my-location", "op-abort"):
        try:
            peer.sign_challenge(c.hex(name))
            guarded = False
        except PeerError:
            guarded = True
        c.truth(name, guarded, "refused as a challenge to sign")
    return c.finish()


# --------------------------------------------------------------------------
# Sub-commands: listen and connect
# --------------------------------------------------------------------------


def parse_seed(text: str | None, option: str = "--key-seed") -> bytes | None:
    if text is None:
        return None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise PeerError(f"{option} must be hex") from None
    if len(seed) != 32:
        raise PeerError(f"{option} must be 32 bytes (64 hex digits)")
    return seed


def check_peer_socket(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        os.close(fd)
        raise PeerError(f"the introduction's fd is not a socket: {e}") from None
    try:
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise PeerError("the introduction's fd is not a Unix stream socket")
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise PeerError("the introduction's fd is a listening socket")
        try:
            sock.getpeername()
        except OSError:
            raise PeerError("the introduction's fd is not connected") from None
    except BaseException:
        sock.close()
        raise
    return sock


class handshake_errors:
    """Turns socket failures during a handshake into clear errors."""

    def __init__(self, timeout: float, hint: str = ""):
        self.timeout = timeout
        self.hint = hint

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _tb):
        if error is None:
            return False
        if isinstance(error, TimeoutError):
            raise PeerError(
                f"timed out after {self.timeout:g} s before the peer answered the handshake"
                + self.hint
            ) from None
        if isinstance(error, (ConnectionError, EOFError)) or (
            isinstance(error, HandshakeError) and "closed the connection" in str(error)
        ):
            raise PeerError(
                f"the connection was closed before the peer answered the handshake ({error})"
                + self.hint
            ) from None
        if isinstance(error, HandshakeError):
            raise PeerError(f"the handshake failed: {error}") from None
        return False


def lies(args) -> Lies:
    """The test knobs given on the command line."""
    seed = parse_seed(args.prove_seed, "--prove-seed")
    return Lies(
        prover=None if seed is None else Identity(seed),
        sign_other_static=args.sign_other_static,
        zero_ephemeral=args.zero_ephemeral,
    )


def cmd_listen(args) -> int:
    me = Identity(parse_seed(args.key_seed))
    static = X25519PrivateKey.generate()
    chan, server = connect_intro(args.intro, me, args.wire, args.timeout)
    try:
        print(f"e2ee-peer ready locator={locator_uri(me.designator, server)}", flush=True)
        chan.deadline = None if args.wait <= 0 else time.monotonic() + args.wait
        value, _, end = chan.next_message()
        if not (isinstance(value, Record) and value.labeled("uds:new-connection", 2)):
            chan.no_fds_before(end + 4)
            raise PeerError(f"unexpected message from the introduction server: {value!r}")
        fd = chan.take_fd(end)
        sock = check_peer_socket(fd)
        try:
            dialer, _ = parse_locator(value.fields[0])
            target, _ = parse_locator(value.fields[1])
            if target != me.designator:
                raise PeerError(f"an introduction for {target}, not for me")
            sock.settimeout(args.timeout)
            with handshake_errors(args.timeout):
                secure = handshake_responder(
                    sock, me, static, designator_key(dialer), lies=lies(args)
                )
            print(f"e2ee-peer verified {dialer}", flush=True)
            sock.settimeout(None)
            while True:
                data = secure.recv()
                if data is None:
                    break
                secure.send(data)
            if args.no_end:
                # A cut, as a relay could make: no authenticated end.
                sock.shutdown(socket.SHUT_WR)
            else:
                secure.end()
        finally:
            sock.close()
    finally:
        chan.close()
    return 0


def cmd_connect(args) -> int:
    me = Identity(parse_seed(args.key_seed))
    static = X25519PrivateKey.generate()
    target, servers = parse_uri(args.uri)
    chan, server = connect_intro(args.intro, me, args.wire, args.timeout)
    try:
        if server not in servers:
            raise PeerError(
                f"the introduction server {server} is not among the locator's hints {servers}"
            )
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            intro = Record(
                Symbol("uds:new-connection"),
                [locator_value(me.designator, [server]), locator_value(target, [server])],
            )
            chan.send(encode(intro))
            chan.sock.sendmsg(
                [SCM_RIGHTS_BODY],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))],
            )
            theirs.close()
            mine.settimeout(args.timeout)
            with handshake_errors(args.timeout, " (is the peer registered with this server?)"):
                secure = handshake_initiator(
                    mine, me, static, designator_key(target), lies=lies(args)
                )
            print(f"e2ee-peer verified {target}", flush=True)
            mine.settimeout(None)
            message = args.message.encode("utf-8") * args.repeat
            failure = []

            def write():
                try:
                    secure.send(message)
                    secure.end()
                except Exception as e:  # reported by the main thread
                    failure.append(e)

            writer = threading.Thread(target=write)
            writer.start()
            received = bytearray()
            try:
                while True:
                    data = secure.recv()
                    if data is None:
                        break
                    received += data
            except BaseException:
                # Unblocks the writer if the peer stopped reading.
                mine.shutdown(socket.SHUT_RDWR)
                raise
            finally:
                writer.join()
            if failure:
                raise PeerError(f"sending failed: {failure[0]}")
            print(f"e2ee-peer got {received.decode('utf-8', 'replace')}", flush=True)
        finally:
            theirs.close()
            mine.close()
    finally:
        chan.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="e2ee_peer.py",
        description="Independent peer for the ocapn-uds e2ee mode (Noise XX bound to designators).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("vectors", help="reproduce the e2ee test vectors byte for byte")
    v.add_argument("e2ee_tsv")
    v.add_argument("--wire", metavar="WIRE_TSV", help="also check the intro-protocol rows")
    v.add_argument(
        "--noise",
        metavar="NOISE_JSON",
        help="also check the Noise core against the official vectors for the pattern",
    )
    for name, helptext in (
        ("listen", "register, accept one encrypted connection and echo it"),
        ("connect", "register, dial URI, send a message and print the reply"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--intro", required=True, metavar="SOCKET", help="intro server socket path")
        p.add_argument("--key-seed", metavar="HEX", help="32-byte Ed25519 seed (default: random)")
        p.add_argument(
            "--wire",
            choices=("auto", "draft", "goblins"),
            default="auto",
            help="shape of uds:signature (default: the shape the server used)",
        )
        p.add_argument(
            "--timeout",
            type=float,
            default=20.0,
            help="seconds allowed for registration and for the handshake",
        )
        p.add_argument(
            "--prove-seed",
            metavar="HEX",
            help="test knob: prove this other identity in the handshake (the peer must refuse)",
        )
        p.add_argument(
            "--sign-other-static",
            action="store_true",
            help="test knob: sign another X25519 key than the one used (the peer must refuse)",
        )
        p.add_argument(
            "--zero-ephemeral",
            action="store_true",
            help="test knob: send an all-zero (low-order) ephemeral key (the peer must refuse)",
        )
        if name == "listen":
            p.add_argument(
                "--no-end",
                action="store_true",
                help="test knob: close without the authenticated end (the peer must "
                "report a truncation)",
            )
            p.add_argument(
                "--wait",
                type=float,
                default=120.0,
                help="seconds to wait for the incoming connection (0: forever)",
            )
        else:
            p.add_argument("uri")
            p.add_argument("--message", default="hello from e2ee_peer.py")
            p.add_argument("--repeat", type=int, default=1, help="send the message N times")
    args = parser.parse_args(argv)
    try:
        if args.command == "vectors":
            failures = e2ee_vectors(args.e2ee_tsv)
            if args.wire:
                failures += wire_vectors(args.wire)
            if args.noise:
                failures += noise_vectors(args.noise)
            if failures:
                print(f"e2ee-peer: {failures} vector rows did not match", file=sys.stderr)
                return 1
            print("e2ee-peer: all vectors match")
            return 0
        if args.command == "listen":
            return cmd_listen(args)
        return cmd_connect(args)
    except PeerError as e:
        print(f"e2ee-peer: error: {e}", file=sys.stderr)
        return 1
    except (OSError, SyrupError) as e:
        print(f"e2ee-peer: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
