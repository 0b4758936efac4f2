"""The client: what a trading process uses to talk to the keyward agent."""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, NoReturn, Optional, Tuple, Union

from . import wire
from ._conn import Conn, Stale, dial
from .errors import BadRequest, ClientClosed, ProtocolError, Unavailable, from_answer
from .watch import Watch

DEFAULT_SOCKET = "/run/keyward/agent.sock"
"""The agent's socket when neither an argument nor ``$KEYWARD_SOCKET``
names one."""

SOCKET_ENV = "KEYWARD_SOCKET"
"""The environment variable that names the agent's socket."""

MAX_IDLE = 64
"""The most connections a client keeps open while idle."""

Bytes = Union[bytes, bytearray, memoryview]


class Secret(bytearray):
    """A secret value: a :class:`bytearray` holding the value, with the
    secret's ``name``, ``version`` and ``expires`` (a UTC
    :class:`~datetime.datetime` after which the value must not be used, or
    None when it does not expire).

    Call :meth:`wipe` when done, or use it in a ``with`` block, which wipes
    it at the end. Its ``repr`` and ``str`` never show the value, and it
    cannot be pickled or copied. Operations that make a new object from it
    (slices, ``bytes(s)``, ``s.decode()``) make copies that :meth:`wipe`
    does not reach: pass the Secret itself where you can (``hmac.new(s,
    ...)`` takes it as it is), and do not grow it, which may move it and
    leave the old memory behind.
    """

    name: str
    version: int
    expires: Optional[datetime]

    def wipe(self) -> None:
        """Zero the value in place, then empty it (unless a memoryview of
        it is still open, which keeps it from being resized)."""
        self[:] = bytes(len(self))
        try:
            del self[:]
        except BufferError:
            pass

    def __enter__(self) -> "Secret":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wipe()

    def __repr__(self) -> str:
        return "<keyward.Secret %s version %d [%d bytes]>" % (self.name, self.version, len(self))

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a keyward.Secret cannot be pickled or copied")


@dataclass(frozen=True)
class Status:
    """The agent's health, as ``keyward status`` shows it."""

    healthy: bool
    backend: str
    secrets: int
    uptime: timedelta
    agent: str


@dataclass(frozen=True)
class Problem:
    """A secret the agent does not serve from its newest version. ``state``
    is ``"stale"`` (an older version is served within its grace while the
    backend does not answer), ``"unavailable"`` (nothing is) or
    ``"damaged"`` (the newest envelope does not verify)."""

    name: str
    state: str
    serving: int
    newest: int


@dataclass(frozen=True)
class Health:
    """The agent's health in detail. Times are UTC, None when unset."""

    backend_ok: bool
    backend_since: Optional[datetime]
    last_ok: Optional[datetime]
    secrets: int
    problems: List[Problem]


@dataclass(frozen=True)
class Credential:
    """What is not secret of an exchange API credential."""

    version: int
    exchange: str
    api_key: str
    key_type: str


@dataclass(frozen=True)
class Signed:
    """What to send for a signed exchange request (docs/signing.md):
    set ``headers`` in order, replacing any of the same name; send
    ``query`` (after ``?``, when not empty) and ``body`` instead of your
    own. For a WebSocket login, ``params`` are the login message's
    parameters. ``expires_ms`` is when the exchange stops accepting the
    request (Unix milliseconds), 0 when it does not say."""

    version: int
    exchange: str
    api_key: str
    headers: List[Tuple[str, str]]
    query: bytes
    body: bytes
    params: List[Tuple[str, str]] = field(default_factory=list)
    expires_ms: int = 0

    def url(self, base: str) -> str:
        """The URL to send to: base (scheme, host and path) and the query."""
        return base + "?" + self.query.decode("ascii") if self.query else base


_STATES = {1: "stale", 2: "unavailable", 3: "damaged"}
_HASHES = {"sha256": 1, "sha512": 2}
_ENCODINGS = {"hex": 1, "base64": 2}


def _time(seconds: int) -> Optional[datetime]:
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


def _unexpected(answer: str, request: str) -> ProtocolError:
    return ProtocolError("unexpected answer %s to %s" % (answer, request))


class Client:
    """A client of the keyward agent on its Unix socket: ``path``, or
    ``$KEYWARD_SOCKET``, or :data:`DEFAULT_SOCKET`. It connects once when
    made, so that a missing agent shows at once (:class:`Unavailable`).

    A Client is safe to share between threads. It keeps a small pool of
    connections; each request takes one, so concurrent requests run in
    parallel. A request that fails because the agent had closed a pooled
    connection (it restarted, or closed an idle connection) is sent once
    more on a fresh one: every request this client sends only reads, so
    that is safe. ``timeout`` bounds each call, in seconds (None: wait
    for ever).

    The agent knows the caller from the kernel when it connects: make the
    Client in the process that will use the secrets, after it dropped
    privileges, and do not hand it to another process.
    """

    def __init__(self, path: Optional[str] = None, *, timeout: Optional[float] = 10.0) -> None:
        self.path = path or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: List[Conn] = []
        self._closed = False
        self._put(self._connect(self._deadline()))

    def close(self) -> None:
        """Close the idle connections. Requests in flight finish; later
        ones raise :class:`ClientClosed`."""
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for c in idle:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def get(self, name: str) -> Secret:
        """The current version of a secret."""
        return self.get_version(name, 0)

    def get_version(self, name: str, version: int) -> Secret:
        """A given version of a secret; 0 means the current one."""
        wire.check_name(name)
        t, a = self._call("get", {"name": name, "version": version})
        if t != "secret":
            raise _unexpected(t, "get")
        value = a["value"]
        try:
            if a["name"] != name or (version and a["version"] != version):
                raise ProtocolError("an answer for %s version %d to a get of %s" % (a["name"], a["version"], name))
            s = Secret(value)
        finally:
            value[:] = bytes(len(value))
        s.name, s.version, s.expires = name, a["version"], _time(a["expires"])
        return s

    def list(self) -> List[str]:
        """The names of the secrets the caller may get."""
        t, a = self._call("list", {})
        if t != "names":
            raise _unexpected(t, "list")
        return a["names"]

    def status(self) -> Status:
        """The agent's health."""
        t, a = self._call("status", {})
        if t != "status_ok":
            raise _unexpected(t, "status")
        return Status(a["healthy"], a["backend"], a["secrets"], timedelta(milliseconds=a["uptime_ms"]), a["agent"])

    def health(self) -> Health:
        """The agent's health in detail; the problems are those of secrets
        the caller may list or administer."""
        t, a = self._call("health", {})
        if t != "health_ok":
            raise _unexpected(t, "health")
        problems = [Problem(p["name"], _STATES.get(p["state"], "unknown"), p["serving"], p["newest"])
                    for p in a["problems"]]
        return Health(a["backend_ok"], _time(a["backend_since"]), _time(a["last_ok"]), a["secrets"], problems)

    def watch(self, *names: str) -> Watch:
        """Subscribe to changes of the current version of names (the
        caller needs the watch permission on each) and return a
        :class:`~keyward.watch.Watch`, an iterator of
        :class:`~keyward.watch.Change`. The first subscription's error is
        raised here."""
        return Watch(self._connect, names, self._deadline)

    def describe(self, name: str) -> Credential:
        """The exchange, API key id and key type of an exchange credential
        (needs the sign or hmac permission on it)."""
        wire.check_name(name)
        t, a = self._call("describe", {"name": name})
        if t != "described":
            raise _unexpected(t, "describe")
        return Credential(a["version"], a["exchange"], a["api_key"], a["key_type"])

    def sign(self, name: str, method: str, host: str, path: str, query: Bytes = b"", body: Bytes = b"", *,
             recv_window_ms: int = 0, version: int = 0) -> Signed:
        """Have the agent sign an exchange request with the credential
        name (docs/signing.md). ``query`` is the raw query string without
        ``?`` and ``body`` the raw body, exactly as they will be sent,
        without the exchange's authentication parameters; for a WebSocket
        login ``method`` is ``"WS"`` and ``path`` what is signed.
        A request outside the caller's scopes raises :class:`Denied`, one
        the agent cannot read unambiguously :class:`BadRequest`."""
        wire.check_name(name)
        for what, part in (("query", query), ("body", body)):
            if len(part) > wire.MAX_SIGN_PART:
                raise BadRequest("a %s of %d bytes, limit %d" % (what, len(part), wire.MAX_SIGN_PART), 5)
        t, a = self._call("sign", {"name": name, "version": version, "method": method, "host": host, "path": path,
                                   "query": query, "body": body, "recv_window_ms": recv_window_ms})
        if t != "signed":
            raise _unexpected(t, "sign")
        return Signed(a["version"], a["exchange"], a["api_key"],
                      [(h["name"], h["value"]) for h in a["headers"]], bytes(a["query"]), bytes(a["body"]),
                      [(p["name"], p["value"]) for p in a["params"]], a["expires_ms"])

    def sign_url(self, name: str, method: str, url: str, body: Bytes = b"", *, recv_window_ms: int = 0) -> Signed:
        """:meth:`sign` for a request given as a URL, such as
        ``https://api.binance.com/api/v3/order?symbol=BTCUSDT``."""
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("https", "wss") or not u.hostname or u.fragment or u.username or u.port:
            # Not the URL itself: what is before the host may be a password.
            raise BadRequest("sign an https URL with a host and nothing else (no user, password or port) before "
                             "the path, not %s://%s" % (u.scheme, u.hostname or ""), 5)
        return self.sign(name, method, u.hostname, u.path, u.query.encode("ascii"), body,
                         recv_window_ms=recv_window_ms)

    def hmac(self, name: str, message: Bytes, *, hash: str = "sha256", encoding: str = "hex",
             version: int = 0) -> str:
        """The HMAC of message under the secret name, for an exchange
        without a signing scheme (needs the hmac permission). ``hash`` is
        ``"sha256"`` or ``"sha512"``, ``encoding`` ``"hex"`` (lower case)
        or ``"base64"``."""
        wire.check_name(name)
        if hash not in _HASHES or encoding not in _ENCODINGS:
            raise ValueError("hash must be sha256 or sha512 and encoding hex or base64, not %s and %s"
                             % (hash, encoding))
        if len(message) > wire.MAX_SIGN_PART:
            raise BadRequest("a message of %d bytes, limit %d" % (len(message), wire.MAX_SIGN_PART), 5)
        t, a = self._call("hmac", {"name": name, "version": version, "hash": _HASHES[hash],
                                   "encoding": _ENCODINGS[encoding], "message": message})
        if t != "mac":
            raise _unexpected(t, "hmac")
        return a["mac"]

    # The pool.

    def _deadline(self) -> Optional[float]:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _connect(self, deadline: Optional[float]) -> Conn:
        c = Conn(dial(self.path, deadline))
        try:
            c.hello(deadline)
        except Stale:
            c.close()
            raise Unavailable("the agent closed the connection", 4) from None
        except BaseException:
            c.close()
            raise
        return c

    def _take(self, deadline: Optional[float]) -> Tuple[Conn, bool]:
        with self._lock:
            if self._closed:
                raise ClientClosed("the client is closed")
            if self._idle:
                return self._idle.pop(), True
        return self._connect(deadline), False

    def _put(self, c: Conn) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(c)
                return
        c.close()

    def _call(self, type_name: str, fields: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """Send a request on a pooled connection and return the answer;
        an error answer is raised. A request that failed on a pooled
        connection the agent had closed is sent once more."""
        deadline = self._deadline()
        retried = False
        while True:
            c, reused = self._take(deadline)
            try:
                t, a = c.round_trip(type_name, fields, deadline)
            except Stale:
                c.close()
                if reused and not retried:
                    retried = True
                    continue
                raise Unavailable("the agent closed the connection", 4) from None
            except BaseException:
                c.close()
                raise
            self._put(c)
            if t == "error":
                raise from_answer(a["code"], a["message"])
            return t, a

