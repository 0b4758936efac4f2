"""One connection to the agent: dial, hello, one request at a time."""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import Any, Dict, Optional, Tuple

from . import wire
from .errors import ProtocolError, Unavailable, from_answer

# The read buffer a connection starts with, and goes back to after a larger
# answer, as the Go client does.
_SMALL = 4096

_length = struct.Struct(">I")


class Stale(Exception):
    """The agent closed the connection before this request reached it
    (end of stream, reset, broken pipe): the request may be sent again on
    a fresh connection."""


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unavailable("the agent did not answer in time", 4)
    return left


def dial(path: str, deadline: Optional[float]) -> socket.socket:
    """Connect to the agent's socket. A full listen backlog (EAGAIN: the
    agent is busy accepting, or another user floods it) is retried with a
    backoff from 50 µs to 20 ms until the deadline, as a blocking connect
    would wait."""
    wait = 50e-6
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 1e-3)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(left)
            s.connect(path)
            return s
        except OSError as e:
            s.close()
            if e.errno != errno.EAGAIN:
                raise Unavailable("cannot connect to the agent at %s: %s" % (path, e.strerror or e), 4) from None
        if deadline is not None and time.monotonic() + wait > deadline:
            raise Unavailable("the agent at %s is too busy to accept a connection" % path, 4)
        time.sleep(wait)
        wait = min(2 * wait, 0.02)


class Conn:
    """A connection, used by one request at a time. Its read buffer is
    zeroed after every answer that carried a secret value, and on close."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.id = 0
        self.buf = bytearray(4 + _SMALL)

    def close(self) -> None:
        self._wipe(len(self.buf))
        try:
            self.sock.close()
        except OSError:
            pass

    def _wipe(self, n: int) -> None:
        self.buf[:n] = bytes(n)

    def hello(self, deadline: Optional[float]) -> None:
        t, fields = self.round_trip("hello", {"versions": [wire.VERSION_1]}, deadline)
        if t == "error":
            raise from_answer(fields["code"], fields["message"])
        if t != "hello_ok" or fields["version"] != wire.VERSION_1:
            raise ProtocolError("unexpected answer %s to hello" % t)

    def send(self, type_name: str, fields: Dict[str, Any], deadline: Optional[float]) -> int:
        """Send a request and return its id."""
        self.id = self.id % 0xFFFFFFFF + 1  # id 0 is the agent's, for unasked messages
        frame = wire.encode(type_name, self.id, fields)
        try:
            self.sock.settimeout(_remaining(deadline))
            self.sock.sendall(frame)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Stale(e) from None
        except socket.timeout:
            raise Unavailable("the agent did not take the request in time", 4) from None
        except OSError as e:
            raise Unavailable("cannot write to the agent: %s" % (e.strerror or e), 4) from None
        return self.id

    def _read(self, view: memoryview, deadline: Optional[float], started: bool) -> None:
        """Fill view from the socket."""
        got = 0
        while got < len(view):
            try:
                self.sock.settimeout(_remaining(deadline))
                n = self.sock.recv_into(view[got:])
            except ConnectionResetError as e:
                if started or got:
                    raise ProtocolError("the agent reset the connection in the middle of an answer") from None
                raise Stale(e) from None
            except socket.timeout:
                raise Unavailable("the agent did not answer in time", 4) from None
            except OSError as e:
                raise Unavailable("cannot read from the agent: %s" % (e.strerror or e), 4) from None
            if n == 0:
                if started or got:
                    raise ProtocolError("the agent closed the connection in the middle of an answer")
                raise Stale(EOFError("the agent closed the connection"))
            got += n

    def read_frame(self, deadline: Optional[float]) -> Tuple[int, int, memoryview]:
        """Read the next frame: its type, id and body, a view of the
        connection's buffer valid until the next read."""
        head = memoryview(self.buf)[:wire.HEADER_SIZE]
        self._read(head[:4], deadline, False)
        n = _length.unpack(head[:4])[0]
        wire.check_length(n)
        if 4 + n > len(self.buf):
            self._wipe(len(self.buf))
            self.buf = bytearray(4 + n)
        elif len(self.buf) > 4 + _SMALL and 4 + n <= 4 + _SMALL:
            self._wipe(len(self.buf))
            self.buf = bytearray(4 + _SMALL)
        view = memoryview(self.buf)
        _length.pack_into(self.buf, 0, n)
        self._read(view[4:4 + n], deadline, True)
        return view[4], struct.unpack_from(">I", self.buf, 5)[0], view[wire.HEADER_SIZE:4 + n]

    def round_trip(self, type_name: str, fields: Dict[str, Any],
                   deadline: Optional[float]) -> Tuple[str, Dict[str, Any]]:
        """Send a request and return its answer, an Error answer too;
        messages with id 0 are skipped."""
        want = self.send(type_name, fields, deadline)
        while True:
            t, rid, body = self.read_frame(deadline)
            if rid == 0:
                continue  # unasked (a watch notification): not for a request
            if rid != want:
                raise ProtocolError("answer for request %d, want %d" % (rid, want))
            try:
                name, answer = wire.decode_body(t, body)
            finally:
                if t == 0x82:  # a Secret: its value is copied out, clear the buffer
                    self._wipe(wire.HEADER_SIZE + len(body))
            return name, answer
