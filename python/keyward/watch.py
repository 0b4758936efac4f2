"""Watching secrets for rotations."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from . import wire
from ._conn import Conn, Stale
from .errors import AgentError, BadRequest, KeywardError, ProtocolError, RateLimited, Unavailable, from_answer


class Change(NamedTuple):
    """A watched secret has a new current version; version 0 means it is
    no longer served. Fetch the value with :meth:`Client.get`."""

    name: str
    version: int


_END = object()  # the queue's last item once the watch is closed

# Backoff between resubscriptions after the agent went away.
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 5.0


class Watch:
    """Changes of watched secrets, from :meth:`Client.watch`: an iterator
    of :class:`Change`, each change once and in order, until
    :meth:`close`.

    A Watch has a connection of its own, read by a background thread so
    that the agent's notifications are always taken promptly. When the
    agent restarts, it subscribes again with a backoff (50 ms doubling to
    5 s) and then reports each name whose version differs from the last
    one it reported, so a trading process can re-authenticate without
    restarting. If the agent refuses the new subscription for good (the
    watch permission was revoked: :class:`Denied`; or any error other
    than :class:`Unavailable` and :class:`RateLimited`), iterating raises
    that error instead of retrying for ever.
    """

    def __init__(self, connect: Callable[[Optional[float]], Conn], names: Sequence[str],
                 deadline: Callable[[], Optional[float]]) -> None:
        if not 1 <= len(names) <= wire.MAX_WATCH:
            raise BadRequest("watch 1 to %d names, not %d" % (wire.MAX_WATCH, len(names)), 5)
        for n in names:
            wire.check_name(n)
        self._connect = connect
        self._new_deadline = deadline
        self._names: List[str] = list(names)
        self._last: Dict[str, int] = {}
        self._q: "queue.Queue[object]" = queue.Queue()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._error: Optional[AgentError] = None  # what ended the watch, if not close
        self._conn: Optional[Conn] = self._subscribe(report=False)
        self._thread = threading.Thread(target=self._run, name="keyward-watch", daemon=True)
        self._thread.start()

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Change:
        c = self._next(None)
        if c is None:
            raise StopIteration
        return c

    def get(self, timeout: Optional[float] = None) -> Optional[Change]:
        """The next change, waiting at most timeout seconds (None: for
        ever); None on timeout or once the watch is closed. Raises the
        error that ended the watch, if one did."""
        return self._next(timeout)

    def _next(self, timeout: Optional[float]) -> Optional[Change]:
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._q.put(item)  # for every later call, and every other reader
            if self._error is not None:
                raise self._error
            return None
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop watching and close the connection. Iteration then ends."""
        with self._lock:
            self._closed.set()
            c = self._conn
        if c is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
            except OSError:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _subscribe(self, report: bool) -> Conn:
        """Connect and send the Watch request; with report, queue the
        versions that differ from the last ones reported."""
        deadline = self._new_deadline()
        c = self._connect(deadline)
        try:
            t, a = c.round_trip("watch", {"names": self._names}, deadline)
            if t == "error":
                raise from_answer(a["code"], a["message"])
            if t != "watching" or len(a["versions"]) != len(self._names):
                raise ProtocolError("unexpected answer %s to watch" % t)
            c.sock.settimeout(None)  # notifications come whenever they come
        except BaseException:
            c.close()
            raise
        for name, v in zip(self._names, a["versions"]):
            if report and v != self._last.get(name, 0):
                self._q.put(Change(name, v))
            self._last[name] = v
        return c

    def _run(self) -> None:
        c = self._conn
        backoff = _FIRST_BACKOFF
        try:
            while not self._closed.is_set():
                if c is None:
                    try:
                        c = self._subscribe(report=True)
                    except (Unavailable, RateLimited, ProtocolError, Stale, OSError):
                        if self._closed.wait(backoff):
                            return
                        backoff = min(2 * backoff, _MAX_BACKOFF)
                        continue
                    except AgentError as e:  # refused for good: say so
                        self._error = e
                        return
                    backoff = _FIRST_BACKOFF
                    with self._lock:
                        self._conn = c
                        if self._closed.is_set():
                            return
                change = self._read(c)
                if change is None:  # the agent went away: subscribe again
                    c.close()
                    with self._lock:
                        self._conn = c = None
                    continue
                if change.version != self._last.get(change.name, 0):
                    self._last[change.name] = change.version
                    self._q.put(change)
        finally:
            with self._lock:
                c, self._conn = self._conn, None
            if c is not None:
                c.close()
            self._q.put(_END)

    @staticmethod
    def _read(c: Conn) -> Optional[Change]:
        """The next notification, or None when the connection is done."""
        try:
            t, rid, body = c.read_frame(None)
            name, a = wire.decode_body(t, body)
        except (Stale, KeywardError, OSError):
            return None
        if rid != 0 or name != "changed":
            return None
        return Change(a["name"], a["version"])

