"""Latency of the Python client against a running agent, beside an
in-process HMAC in the same run (scripts/bench-clients.sh runs it).

Usage: KEYWARD_SOCKET=... python3 bench.py SECRET CREDENTIAL [N]
Prints one JSON object: p50 and p99 in microseconds of each operation.
"""

import hashlib
import hmac
import json
import sys
import time

import keyward

ORDER = b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000.5&newClientOrderId=kw-1"


def measure(f, n):
    for _ in range(n // 10):  # warm up
        f()
    ns = []
    for _ in range(n):
        t = time.perf_counter_ns()
        f()
        ns.append(time.perf_counter_ns() - t)
    ns.sort()
    return {"p50_us": ns[len(ns) // 2] / 1000, "p99_us": ns[len(ns) * 99 // 100] / 1000}


def main():
    secret, credential = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    key = b"k" * 64
    with keyward.Client() as c:
        def get():
            c.get(secret).wipe()

        def sign():
            c.sign(credential, "POST", "api.binance.com", "/api/v3/order", body=ORDER)

        out = {
            "python": sys.version.split()[0],
            "hmac_in_process": measure(lambda: hmac.new(key, b"timestamp=1700000000123&" + ORDER, hashlib.sha256).hexdigest(), n),
            "get": measure(get, n),
            "sign": measure(sign, n),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
