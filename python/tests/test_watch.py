"""Watching against the live agent: rotations, restarts, a revoked
permission."""

import unittest

import keyward

from harness import control, live

WAIT = 10  # seconds a change may take to arrive


@live
class WatchTest(unittest.TestCase):
    def setUp(self):
        self.c = keyward.Client()
        self.addCleanup(self.c.close)

    def watch(self, *names):
        w = self.c.watch(*names)
        self.addCleanup(w.close)
        return w

    def rotate(self, name):
        return int(control("rotate " + name))

    def test_rotation(self):
        w = self.watch("app/rotating", "app/plain")
        v = self.rotate("app/rotating")
        self.assertEqual(w.get(WAIT), keyward.Change("app/rotating", v))
        self.assertEqual(bytes(self.c.get("app/rotating")), b"rotating@v%d" % v)
        self.assertIsNone(w.get(0.2))  # nothing else changed

    def test_across_restart(self):
        """After a restart the watch subscribes again, and reports what
        changed while it was away, once."""
        w = self.watch("app/rotating")
        control("restart")
        v = self.rotate("app/rotating")  # while or after it resubscribes
        self.assertEqual(w.get(WAIT), keyward.Change("app/rotating", v))
        control("stop")
        v = self.rotate("app/rotating")  # while the agent is down
        control("start")
        self.assertEqual(w.get(WAIT), keyward.Change("app/rotating", v))
        self.assertIsNone(w.get(0.2))
        v = self.rotate("app/rotating")  # a notification on the new subscription
        self.assertEqual(w.get(WAIT), keyward.Change("app/rotating", v))

    def test_revoked(self):
        """A subscription refused after a restart ends the watch with
        Denied, instead of retrying for ever."""
        w = self.watch("app/rotating")
        self.addCleanup(control, "policy default")
        control("policy revoked")
        control("restart")
        with self.assertRaises(keyward.Denied):
            w.get(WAIT)
        with self.assertRaises(keyward.Denied):
            next(w)

    def test_denied_at_once(self):
        with self.assertRaises(keyward.Denied):
            self.c.watch("other/hidden")
        with self.assertRaises(keyward.BadRequest):
            self.c.watch()

    def test_close(self):
        w = self.watch("app/plain")
        w.close()
        self.assertIsNone(w.get(WAIT))
        self.assertEqual(list(w), [])


if __name__ == "__main__":
    unittest.main()
