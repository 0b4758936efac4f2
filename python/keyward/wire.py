"""Frames of the keyward agent protocol, version 1 (docs/protocol.md).

A message is its type name and a dict of its fields, named as in the
protocol: ``("get", {"name": "binance/mm-prod", "version": 0})``. Each
message type is described once, as a list of fields, and that one
description both encodes and decodes it, so every frame that decodes
re-encodes to the same bytes. Decoding is strict, as the protocol asks: a
length out of range, a truncated or trailing byte, a count or flag out of
range are a :class:`~keyward.errors.ProtocolError`.

Byte fields decode to :class:`bytearray`, which can be zeroed; string
fields are decoded as UTF-8 with ``surrogateescape``, so that bytes which
are not UTF-8 survive a round trip.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Tuple

from .errors import BadRequest, ProtocolError

VERSION_1 = 1
"""The protocol version this module speaks."""

MAX_FRAME_SIZE = 1 << 20
"""The largest length field either side accepts."""

MAX_REQUEST_SIZE = 80 << 10
"""The largest length field the agent accepts in a request."""

MAX_SECRET_SIZE = 65536
"""The largest secret value."""

MAX_STR8_LEN = 255
"""The longest str8 field (a secret name on the wire)."""

MAX_WATCH = 64
"""The most names one Watch request may name."""

MAX_SIGN_PART = 64 << 10
"""The largest query, body or HMAC message in a request."""

HEADER_SIZE = 9
"""The length prefix, type byte and request id."""

_u8 = struct.Struct(">B")
_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")
_i64 = struct.Struct(">q")
_header = struct.Struct(">IBI")


class _Decoder:
    """Reads fields from a frame body, failing on the first violation."""

    __slots__ = ("buf", "pos", "end", "type")

    def __init__(self, buf: memoryview, type_name: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.type = type_name

    def fail(self, what: str) -> ProtocolError:
        return ProtocolError("malformed %s: %s" % (self.type, what))

    def take(self, n: int, field: str) -> memoryview:
        if self.end - self.pos < n:
            raise self.fail(field + " truncated")
        p = self.buf[self.pos:self.pos + n]
        self.pos += n
        return p


class _Field:
    """One field kind: how to append a value and how to read one back."""

    def encode(self, out: bytearray, v: Any, field: str) -> None:
        raise NotImplementedError

    def decode(self, d: _Decoder, field: str) -> Any:
        raise NotImplementedError


class _Int(_Field):
    def __init__(self, s: struct.Struct) -> None:
        self.s = s

    def encode(self, out: bytearray, v: Any, field: str) -> None:
        out += self.s.pack(v)

    def decode(self, d: _Decoder, field: str) -> Any:
        return self.s.unpack(d.take(self.s.size, field))[0]


class _Range(_Int):
    """A u8 from lo to hi."""

    def __init__(self, lo: int, hi: int) -> None:
        super().__init__(_u8)
        self.lo = lo
        self.hi = hi

    def decode(self, d: _Decoder, field: str) -> Any:
        v = d.take(1, field)[0]
        if not self.lo <= v <= self.hi:
            raise d.fail("%s is %d, want %d to %d" % (field, v, self.lo, self.hi))
        return v


class _Mask(_Int):
    """A u8 of flags of which only the bits in mask are defined."""

    def __init__(self, mask: int) -> None:
        super().__init__(_u8)
        self.mask = mask

    def decode(self, d: _Decoder, field: str) -> Any:
        v = d.take(1, field)[0]
        if v & ~self.mask:
            raise d.fail("%s %#04x has undefined bits" % (field, v))
        return v


class _Bool(_Field):
    def encode(self, out: bytearray, v: Any, field: str) -> None:
        out.append(1 if v else 0)

    def decode(self, d: _Decoder, field: str) -> Any:
        v = d.take(1, field)[0]
        if v > 1:
            raise d.fail("%s is %d, want 0 or 1" % (field, v))
        return v == 1


def _put_length(out: bytearray, s: struct.Struct, n: int, limit: int, field: str) -> None:
    if n > limit:
        raise ValueError("%s is %d bytes, limit %d" % (field, n, limit))
    out += s.pack(n)


def _get_length(d: _Decoder, s: struct.Struct, limit: int, field: str) -> int:
    n = s.unpack(d.take(s.size, field))[0]
    if n > limit:
        raise d.fail("%s length %d, limit %d" % (field, n, limit))
    return n


class _Str(_Field):
    def __init__(self, s: struct.Struct, limit: int) -> None:
        self.s = s
        self.limit = limit

    def encode(self, out: bytearray, v: Any, field: str) -> None:
        b = v.encode("utf-8", "surrogateescape")
        _put_length(out, self.s, len(b), self.limit, field)
        out += b

    def decode(self, d: _Decoder, field: str) -> Any:
        n = _get_length(d, self.s, self.limit, field)
        return bytes(d.take(n, field)).decode("utf-8", "surrogateescape")


class _Bytes(_Field):
    """A u32 length of at most limit, then that many bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def encode(self, out: bytearray, v: Any, field: str) -> None:
        _put_length(out, _u32, len(v), self.limit, field)
        out += v

    def decode(self, d: _Decoder, field: str) -> Any:
        n = _get_length(d, _u32, self.limit, field)
        return bytearray(d.take(n, field))


class _List(_Field):
    """A u8 count of lo to hi elements, or with a u32 count (wide) any
    number that the bytes left can hold: each element takes one byte at
    least, so a count is checked before anything is allocated for it."""

    def __init__(self, elem: _Field, lo: int = 0, hi: int = 255, wide: bool = False) -> None:
        self.elem = elem
        self.lo = lo
        self.hi = hi
        self.wide = wide

    def encode(self, out: bytearray, v: Any, field: str) -> None:
        if self.wide:
            out += _u32.pack(len(v))
        else:
            if not self.lo <= len(v) <= self.hi:
                raise ValueError("%s must hold %d to %d entries, not %d" % (field, self.lo, self.hi, len(v)))
            out.append(len(v))
        for e in v:
            self.elem.encode(out, e, field)

    def decode(self, d: _Decoder, field: str) -> Any:
        if self.wide:
            n = _u32.unpack(d.take(4, field))[0]
            if n > d.end - d.pos:
                raise d.fail("count %d, but %d bytes follow" % (n, d.end - d.pos))
        else:
            n = d.take(1, field)[0]
            if not self.lo <= n <= self.hi:
                raise d.fail("%d %s, want %d to %d" % (n, field, self.lo, self.hi))
        return [self.elem.decode(d, field) for _ in range(n)]


class _Struct(_Field):
    """A list element made of named fields: a dict."""

    def __init__(self, fields: List[Tuple[str, _Field]]) -> None:
        self.fields = fields

    def encode(self, out: bytearray, v: Any, field: str) -> None:
        for name, f in self.fields:
            f.encode(out, v[name], name)

    def decode(self, d: _Decoder, field: str) -> Any:
        return {name: f.decode(d, name) for name, f in self.fields}


U8 = _Int(_u8)
U16 = _Int(_u16)
U32 = _Int(_u32)
U64 = _Int(_u64)
I64 = _Int(_i64)
BOOL = _Bool()
STR8 = _Str(_u8, MAX_STR8_LEN)
STR16 = _Str(_u16, 0xFFFF)
_FIELDS = _List(_Struct([("name", STR8), ("value", STR16)]))
_PUT_FLAGS = _Mask(0x03)

# Every message type of protocol version 1: its type byte and its fields,
# in wire order (docs/protocol.md, "Messages").
MESSAGES: Dict[str, Tuple[int, List[Tuple[str, _Field]]]] = {
    "hello": (0x01, [("versions", _List(U16, 1, 16))]),
    "get": (0x02, [("name", STR8), ("version", U32)]),
    "list": (0x03, []),
    "status": (0x04, []),
    "reload": (0x05, [("name", STR8)]),
    "watch": (0x06, [("names", _List(STR8, 1, MAX_WATCH))]),
    "health": (0x07, []),
    "put": (0x08, [("name", STR8), ("flags", _PUT_FLAGS), ("expires", I64), ("grace", U32),
                   ("value", _Bytes(MAX_SECRET_SIZE))]),
    "remove": (0x09, [("name", STR8), ("version", U32)]),
    "prune": (0x0A, []),
    "sign": (0x0B, [("name", STR8), ("version", U32), ("method", STR8), ("host", STR8), ("path", STR16),
                    ("query", _Bytes(MAX_SIGN_PART)), ("body", _Bytes(MAX_SIGN_PART)), ("recv_window_ms", U32)]),
    "hmac": (0x0C, [("name", STR8), ("version", U32), ("hash", _Range(1, 2)), ("encoding", _Range(1, 2)),
                    ("message", _Bytes(MAX_SIGN_PART))]),
    "put_credential": (0x0D, [("name", STR8), ("flags", _PUT_FLAGS), ("expires", I64), ("grace", U32),
                              ("exchange", STR8), ("api_key", STR16), ("value", _Bytes(MAX_SECRET_SIZE))]),
    "describe": (0x0E, [("name", STR8)]),
    "hello_ok": (0x81, [("version", U16), ("agent", STR8)]),
    "secret": (0x82, [("name", STR8), ("version", U32), ("expires", I64), ("value", _Bytes(MAX_SECRET_SIZE))]),
    "names": (0x83, [("names", _List(STR8, wide=True))]),
    "status_ok": (0x84, [("healthy", BOOL), ("backend", STR8), ("secrets", U32), ("uptime_ms", U64),
                         ("agent", STR8)]),
    "reloaded": (0x85, [("version", U32)]),
    "watching": (0x86, [("versions", _List(U32, 1, MAX_WATCH))]),
    "changed": (0x87, [("name", STR8), ("version", U32)]),
    "health_ok": (0x88, [("backend_ok", BOOL), ("backend_since", I64), ("last_ok", I64), ("secrets", U32),
                         ("problems", _List(_Struct([("name", STR8), ("state", U8), ("serving", U32),
                                                     ("newest", U32)]), wide=True))]),
    "stored": (0x89, [("version", U32), ("prev_until", I64)]),
    "removed": (0x8A, [("count", U32)]),
    "pruned": (0x8B, [("versions", _List(_Struct([("name", STR8), ("version", U32), ("retired", I64)]),
                                         wide=True))]),
    "signed": (0x8C, [("version", U32), ("exchange", STR8), ("api_key", STR16), ("headers", _FIELDS),
                      ("query", _Bytes(2 * MAX_SIGN_PART)), ("body", _Bytes(2 * MAX_SIGN_PART)),
                      ("params", _FIELDS), ("expires_ms", I64)]),
    "mac": (0x8D, [("version", U32), ("mac", STR16)]),
    "described": (0x8E, [("version", U32), ("exchange", STR8), ("api_key", STR16), ("key_type", STR8)]),
    "error": (0xFF, [("code", U16), ("message", STR16)]),
}

_BY_TYPE: Dict[int, str] = {t: name for name, (t, _) in MESSAGES.items()}


def encode(type_name: str, req_id: int, fields: Dict[str, Any]) -> bytearray:
    """Return the frame carrying the message with the given id.

    Raises ValueError when a field breaks a limit of its type (callers
    check input from outside first) and KeyError for an unknown type or a
    missing field.
    """
    t, layout = MESSAGES[type_name]
    out = bytearray(_header.size)
    for name, f in layout:
        f.encode(out, fields[name], name)
    if len(out) - 4 > MAX_FRAME_SIZE:
        raise ValueError("%s frame of %d bytes, limit %d" % (type_name, len(out) - 4, MAX_FRAME_SIZE))
    _header.pack_into(out, 0, len(out) - 4, t, req_id)
    return out


def check_length(n: int, limit: int = MAX_FRAME_SIZE) -> None:
    """Refuse a frame's length field below 5 or above limit."""
    if n < HEADER_SIZE - 4:
        raise ProtocolError("frame length %d, minimum 5" % n)
    if n > limit:
        raise ProtocolError("frame length %d, limit %d" % (n, limit))


def check_name(name: str) -> None:
    """Refuse a secret name the protocol cannot carry (:class:`BadRequest`);
    the agent checks the naming rule itself."""
    n = len(name.encode("utf-8", "surrogateescape"))
    if not 0 < n <= MAX_STR8_LEN:
        raise BadRequest("a secret name of %d bytes" % n, 5)


def decode_body(t: int, body: memoryview) -> Tuple[str, Dict[str, Any]]:
    """Decode the body of a frame of type t, strictly."""
    name = _BY_TYPE.get(t)
    if name is None:
        raise ProtocolError("unknown message type %#04x" % t)
    d = _Decoder(body, name)
    fields = {fname: f.decode(d, fname) for fname, f in MESSAGES[name][1]}
    if d.pos != d.end:
        raise d.fail("%d trailing bytes" % (d.end - d.pos))
    return name, fields


def decode(frame: Any) -> Tuple[str, int, Dict[str, Any]]:
    """Decode one whole frame, length prefix included: its type name, id
    and fields. The length must match the frame exactly."""
    mv = memoryview(frame)
    if len(mv) < 4:
        raise ProtocolError("%d bytes, no length prefix" % len(mv))
    n = _u32.unpack(mv[:4])[0]
    check_length(n)
    if n != len(mv) - 4:
        raise ProtocolError("frame length %d, but %d bytes follow" % (n, len(mv) - 4))
    _, t, req_id = _header.unpack(mv[:HEADER_SIZE])
    name, fields = decode_body(t, mv[HEADER_SIZE:])
    return name, req_id, fields

