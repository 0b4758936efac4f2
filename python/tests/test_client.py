"""The client against the live agent (client/langs_test.go)."""

import copy
import os
import pickle
import socket
import struct
import tempfile
import threading
import unittest

import keyward
from keyward import wire

from harness import SOCKET, control, live


@live
class ClientTest(unittest.TestCase):
    def setUp(self):
        self.c = keyward.Client()
        self.addCleanup(self.c.close)

    def test_socket_from_environment(self):
        self.assertEqual(self.c.path, SOCKET)

    def test_get(self):
        s = self.c.get("app/plain")
        self.assertIsInstance(s, bytearray)
        self.assertEqual(bytes(s), b"plain-value-v1")
        self.assertEqual((s.name, s.version, s.expires), ("app/plain", 1, None))
        self.assertEqual(bytes(self.c.get_version("app/plain", 1)), b"plain-value-v1")

    def test_secret_never_shows(self):
        s = self.c.get("app/plain")
        for text in (repr(s), str(s), "%s" % s, "{}".format(s), f"{s!r}", repr([s])):
            self.assertNotIn("plain-value", text)
            self.assertIn("app/plain", text)
        for f in (pickle.dumps, copy.copy, copy.deepcopy):
            with self.assertRaises(TypeError):
                f(s)

    def test_wipe(self):
        s = self.c.get("app/plain")
        view = memoryview(s)  # sees the memory the value was in
        s.wipe()
        self.assertEqual(bytes(view), bytes(len(view)))
        view.release()
        s.wipe()
        self.assertEqual(len(s), 0)
        with self.c.get("app/plain") as s:
            self.assertEqual(len(s), 14)
        self.assertEqual(len(s), 0)

    def check_error(self, name, version, cls, code):
        with self.assertRaises(cls) as cm:
            self.c.get_version(name, version)
        e = cm.exception
        self.assertIsInstance(e, keyward.AgentError)
        self.assertIsInstance(e, keyward.KeywardError)
        self.assertEqual(e.code, code)
        self.assertTrue(e.message)

    def test_every_error_code(self):
        for name, version, cls, code in [
            ("other/hidden", 0, keyward.Denied, 2),
            ("app/absent", 0, keyward.NotFound, 1),
            ("app/plain", 7, keyward.NotFound, 1),
            ("app/retired", 1, keyward.Expired, 3),
            ("Bad/Name", 0, keyward.BadRequest, 5),
            ("app/damaged", 0, keyward.InternalError, 7),
        ]:
            with self.subTest(name=name, version=version):
                self.check_error(name, version, cls, code)
        # limited/* allows one request a second: the second is refused, and
        # the connection the agent then closes is replaced without a fuss.
        self.assertEqual(bytes(self.c.get("limited/one")), b"limited@v1")
        self.check_error("limited/one", 0, keyward.RateLimited, 6)
        self.assertEqual(bytes(self.c.get("app/plain")), b"plain-value-v1")
        # A rotation that the agent could not load while its backend
        # failed, the previous version retired: nothing to serve. (During
        # the outage nothing new loads; the restart loads all again.)
        self.addCleanup(control, "restart")
        control("outage app/stale")
        self.check_error("app/stale", 0, keyward.Unavailable, 4)

    def test_local_errors(self):
        with self.assertRaises(keyward.BadRequest):
            self.c.get("")
        with self.assertRaises(keyward.BadRequest):
            self.c.get("n" * 256)
        with self.assertRaises(keyward.Unavailable):
            keyward.Client(os.path.join(tempfile.mkdtemp(), "none.sock"))
        c = keyward.Client()
        c.close()
        with self.assertRaises(keyward.ClientClosed):
            c.get("app/plain")

    def test_list(self):
        names = self.c.list()
        self.assertIn("app/plain", names)
        self.assertIn("app/rotating", names)
        self.assertNotIn("other/hidden", names)  # no rule
        self.assertNotIn("limited/one", names)  # get, not list

    def test_status_and_health(self):
        st = self.c.status()
        self.assertTrue(st.healthy)
        self.assertEqual((st.backend, st.agent), ("pkcs11", "keyward test"))
        self.assertGreater(st.secrets, 0)
        h = self.c.health()
        self.assertTrue(h.backend_ok)
        damaged = [p for p in h.problems if p.name == "app/damaged"]
        self.assertEqual(len(damaged), 1)
        self.assertEqual((damaged[0].state, damaged[0].newest), ("damaged", 1))

    def test_sixteen_threads(self):
        """One Client shared by 16 threads: every answer is the right one,
        and the pool never holds more connections than threads."""
        errors = []

        def work(i):
            try:
                for j in range(100):
                    if (i + j) % 10 == 0:
                        if "app/plain" not in self.c.list():
                            errors.append("list without app/plain")
                        continue
                    name, want = (("app/plain", b"plain-value-v1") if i % 2 else ("app/absent", None))
                    if want is None:
                        try:
                            self.c.get(name)
                            errors.append("app/absent served")
                        except keyward.NotFound:
                            pass
                        continue
                    with self.c.get(name) as s:
                        if bytes(s) != want or s.name != name:
                            errors.append("wrong value for %s" % name)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertLessEqual(len(self.c._idle), 16)

    def test_reconnect_after_restart(self):
        """A request on a pooled connection the agent closed (it restarted)
        is sent once more; while the agent is down, Unavailable."""
        self.assertEqual(bytes(self.c.get("app/plain")), b"plain-value-v1")
        control("restart")
        self.assertEqual(bytes(self.c.get("app/plain")), b"plain-value-v1")
        control("stop")
        try:
            with self.assertRaises(keyward.Unavailable):
                self.c.get("app/plain")
        finally:
            control("start")
        self.assertEqual(bytes(self.c.get("app/plain")), b"plain-value-v1")


class FakeAgent:
    """A socket that answers Hello, then each request with the frame
    given: the client's handling of answers the real agent does not send.
    It accepts connections once started."""

    def __init__(self, answer, backlog=4, start=True):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "fake.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(backlog)
        self.answer = answer
        if start:
            self.start()

    def start(self):
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.talk, args=(c,), daemon=True).start()

    def talk(self, c):
        try:
            self.answer_each(c)
        except OSError:
            pass  # the client hung up
        finally:
            c.close()

    def answer_each(self, c):
        while True:
            head = c.recv(9, socket.MSG_WAITALL)
            if len(head) < 9:
                return
            n, t, rid = struct.unpack(">IBI", head)
            if n > 5:
                c.recv(n - 5, socket.MSG_WAITALL)
            if t == 0x01:
                c.sendall(wire.encode("hello_ok", rid, {"version": 1, "agent": "fake"}))
            elif self.answer is not None:
                c.sendall(self.answer(rid))

    def close(self):
        self.sock.close()


def trailing(frame):
    """frame with one more byte in its body, counted by its length."""
    return struct.pack(">I", len(frame) - 3) + bytes(frame[4:]) + b"\0"


class AnswersTest(unittest.TestCase):
    def check(self, answer, exc, timeout=5):
        fake = FakeAgent(answer)
        self.addCleanup(fake.close)
        c = keyward.Client(fake.path, timeout=timeout)
        self.addCleanup(c.close)
        with self.assertRaises(exc) as cm:
            c.get("app/plain")
        return cm.exception

    def test_unknown_error_code(self):
        e = self.check(lambda rid: wire.encode("error", rid, {"code": 999, "message": "new"}), keyward.AgentError)
        self.assertIs(type(e), keyward.AgentError)
        self.assertEqual((e.code, e.message), (999, "new"))

    def test_protocol_errors(self):
        secret = {"name": "app/plain", "version": 1, "expires": 0, "value": b"x"}
        for why, answer in [
            ("wrong id", lambda rid: wire.encode("secret", rid + 1, secret)),
            ("trailing byte", lambda rid: trailing(wire.encode("secret", rid, secret))),
            ("wrong type", lambda rid: wire.encode("names", rid, {"names": []})),
            ("wrong name", lambda rid: wire.encode("secret", rid, dict(secret, name="app/other"))),
            ("huge length", lambda rid: struct.pack(">IBI", wire.MAX_FRAME_SIZE + 1, 0x82, rid)),
        ]:
            with self.subTest(why):
                self.check(answer, keyward.ProtocolError)

    def test_busy_agent(self):
        """A connect that finds the agent's backlog full (EAGAIN) is tried
        again until the agent accepts it, or the timeout."""
        fake = FakeAgent(None, backlog=0, start=False)
        self.addCleanup(fake.close)
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(filler.close)
        filler.connect(fake.path)  # the backlog is full now
        with self.assertRaisesRegex(keyward.Unavailable, "too busy"):
            keyward.Client(fake.path, timeout=0.2)
        threading.Timer(0.1, fake.start).start()
        keyward.Client(fake.path, timeout=10).close()

    def test_timeout(self):
        self.check(None, keyward.Unavailable, timeout=0.2)  # never answers


if __name__ == "__main__":
    unittest.main()
