"""The codec against the vectors shared with the Go and Node tests, and
against damaged frames."""

import ast
import os
import random
import struct
import unittest
from pathlib import Path

import keyward
from keyward import wire
from keyward.errors import ProtocolError

from harness import vectors


def set_length(frame, n):
    return struct.pack(">I", n) + frame[4:]


class VectorTest(unittest.TestCase):
    def test_covers_every_type(self):
        seen = {v[3] for v in vectors()}
        self.assertEqual(seen, set(wire.MESSAGES), "vectors.json and wire.MESSAGES name different types")

    def test_decode_and_encode(self):
        for name, frame, rid, typ, fields in vectors():
            with self.subTest(name):
                got_type, got_id, got = wire.decode(frame)
                self.assertEqual((got_type, got_id), (typ, rid))
                self.assertEqual(got, fields)
                self.assertEqual(bytes(wire.encode(typ, rid, fields)), frame)

    def test_damaged(self):
        for name, frame, _, _, _ in vectors():
            with self.subTest(name):
                for i in range(len(frame)):
                    # Cut short, length field unchanged; then agreeing.
                    with self.assertRaises(ProtocolError):
                        wire.decode(frame[:i])
                    if i >= wire.HEADER_SIZE:
                        with self.assertRaises(ProtocolError):
                            wire.decode(set_length(frame[:i], i - 4))
                long = frame + b"\0"
                for f in (long, set_length(long, len(long) - 4)):
                    with self.assertRaises(ProtocolError):
                        wire.decode(f)
                for n in (0, 1, 4, wire.MAX_FRAME_SIZE + 1, 0xFFFFFFFF):
                    with self.assertRaises(ProtocolError):
                        wire.decode(set_length(frame, n))

    def test_invalid(self):
        from harness import raw
        for frame, why in [
            (raw("00000005 7e 00000001"), "unknown message type 0x7e"),
            (raw("00000005 80 00000001"), "unknown message type 0x80"),
            (raw("00000006 01 00000001 00"), "0 versions"),
            (raw("00000009 83 00000001 ffffffff"), "count 4294967295"),
            (raw("00000017 84 00000006 02 03 'tpm' 00000000 0000000000000000 00"), "healthy is 2"),
            (raw("00000019 08 00000001 01 'x' 04 0000000000000000 00000000 00000001 'v'"), "flags 0x04 has undefined bits"),
            (raw("00000017 82 00000001 01 'x' 00000001 0000000000000000 ffffffff"), "value length 4294967295"),
            (raw("0000000d 0c 00000001 01 'x' 00000000 03 01"), "hash is 3"),
        ]:
            with self.subTest(why):
                with self.assertRaisesRegex(ProtocolError, why):
                    wire.decode(frame)

    def test_mutations(self):
        """Damaged copies of the vectors (bytes changed, inserted, deleted,
        with the length field made to agree or not) either decode and
        re-encode to the same bytes, or raise ProtocolError."""
        rnd = random.Random(11)
        frames = [v[1] for v in vectors()]
        decoded = 0
        for _ in range(20000):
            f = bytearray(rnd.choice(frames))
            for _ in range(rnd.randint(1, 3)):
                i = rnd.randrange(len(f))
                op = rnd.randrange(3)
                if op == 0:
                    f[i] = rnd.randrange(256)
                elif op == 1:
                    f.insert(i, rnd.randrange(256))
                elif len(f) > 1:
                    del f[i]
            if rnd.random() < 0.7 and len(f) >= 4:
                f[:4] = struct.pack(">I", len(f) - 4)
            try:
                t, rid, fields = wire.decode(bytes(f))
            except ProtocolError:
                continue
            decoded += 1
            self.assertEqual(bytes(wire.encode(t, rid, fields)), bytes(f))
        self.assertGreater(decoded, 1000)

    def test_limits(self):
        big = {"name": "s" * 255, "version": 1, "expires": 0, "value": b"\xa5" * wire.MAX_SECRET_SIZE}
        self.assertEqual(wire.decode(wire.encode("secret", 1, big))[2], big)
        with self.assertRaises(ValueError):
            wire.encode("secret", 1, dict(big, value=b"\0" * (wire.MAX_SECRET_SIZE + 1)))
        with self.assertRaises(ValueError):
            wire.encode("get", 1, {"name": "n" * 256, "version": 0})


class PackageTest(unittest.TestCase):
    def test_imported_from(self):
        """scripts/test.sh tests the wheel it built and installed there."""
        where = os.environ.get("KEYWARD_TEST_PYTHONPATH")
        if not where:
            self.skipTest("testing the package in python/")
        self.assertTrue(Path(keyward.__file__).resolve().is_relative_to(Path(where).resolve()), keyward.__file__)
        self.assertTrue((Path(keyward.__file__).parent / "py.typed").exists())

class SyntaxTest(unittest.TestCase):
    def test_python_3_9(self):
        """The package parses as Python 3.9 (no match, no parenthesised
        context managers), and postpones its annotations, so that 3.10
        forms in them (X | Y) are never evaluated."""
        files = sorted(Path(keyward.__file__).parent.glob("*.py"))
        self.assertGreater(len(files), 3)
        for f in files:
            with self.subTest(f.name):
                src = f.read_text("utf-8")
                tree = ast.parse(src, f.name, feature_version=(3, 9))
                annotated = any(isinstance(n, ast.AnnAssign) or isinstance(n, ast.arg) and n.annotation
                                or isinstance(n, ast.FunctionDef) and n.returns for n in ast.walk(tree))
                if annotated:
                    self.assertIn("from __future__ import annotations", src)


if __name__ == "__main__":
    unittest.main()
