"""What the tests share: the wire vectors, and the live agent that
client/langs_test.go (go test -run TestPython ./client/) starts for them."""

import base64
import json
import os
import re
import socket
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "agent" / "wire" / "testdata" / "vectors.json"


def raw(s):
    """Bytes from hex digits, whitespace ignored, text between single
    quotes taken literally: the notation of vectors.json."""
    out = bytearray()
    for i, part in enumerate(s.split("'")):
        if i % 2:
            out += part.encode("utf-8")
        else:
            out += bytes.fromhex(re.sub(r"\s+", "", part))
    return bytes(out)


# The fields that are bytes, base64 in vectors.json, by message type.
BYTES_FIELDS = {
    "secret": {"value"}, "put": {"value"}, "put_credential": {"value"}, "hmac": {"message"},
    "sign": {"query", "body"}, "signed": {"query", "body"},
}


def vectors():
    """The shared vectors: (name, frame, id, type, fields), with bytes
    fields decoded."""
    doc = json.loads(VECTORS.read_text("utf-8"))
    out = []
    for v in doc["vectors"]:
        binary = BYTES_FIELDS.get(v["type"], set())
        fields = {k: base64.b64decode(x) if k in binary else x for k, x in v["message"].items()}
        out.append((v["name"], raw(v["frame"]), v["id"], v["type"], fields))
    return out


SOCKET = os.environ.get("KEYWARD_SOCKET")
CONTROL = os.environ.get("KEYWARD_TEST_CONTROL")


def live(cls):
    """Class decorator for tests that need the live agent: without one they
    skip, or fail when KEYWARD_TEST_REQUIRE_HARDWARE=1."""
    if SOCKET and CONTROL:
        return cls
    why = "no live agent: run go test -run TestPython ./client/"
    if os.environ.get("KEYWARD_TEST_REQUIRE_HARDWARE") == "1":
        def setUpClass(_):
            raise AssertionError(why)
        cls.setUpClass = classmethod(setUpClass)
        return cls
    return unittest.skip(why)(cls)


def control(command):
    """Run one command on the test agent's control socket and return the
    details of its answer; an error answer fails the test."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(CONTROL)
        s.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    answer = answer.decode().strip()
    if answer != "ok" and not answer.startswith("ok "):
        raise AssertionError("control %r: %s" % (command, answer))
    return answer[3:]


def credentials():
    """The test credentials the agent holds (client/langs_test.go)."""
    with open(os.environ["KEYWARD_TEST_CREDENTIALS"], encoding="utf-8") as f:
        return json.load(f)
