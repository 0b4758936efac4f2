"""Signing through the live agent: sign, sign_url, describe and hmac, and
what the policy refuses."""

import base64
import hashlib
import hmac
import unittest

import keyward

from harness import control, credentials, live

MS = 1700000000123  # the agent's clock, pinned for these tests


@live
class SignTest(unittest.TestCase):
    def setUp(self):
        self.c = keyward.Client()
        self.addCleanup(self.c.close)
        self.creds = credentials()
        control("clock %d" % MS)
        self.addCleanup(control, "clock now")

    def test_describe(self):
        key = self.creds["binance/hmac"]["apiKey"]
        self.assertEqual(self.c.describe("binance/hmac"), keyward.Credential(1, "binance", key, "hmac"))
        with self.assertRaises(keyward.Denied):
            self.c.describe("other/hidden")

    def test_binance_order(self):
        cred = self.creds["binance/hmac"]
        order = b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000.5"
        s = self.c.sign("binance/hmac", "POST", "api.binance.com", "/api/v3/order", body=order)
        signed = b"timestamp=%d&%s&recvWindow=10000" % (MS, order)
        mac = hmac.new(cred["secret"].encode(), signed, hashlib.sha256).hexdigest()
        self.assertEqual(s.body, signed + b"&signature=" + mac.encode())
        self.assertEqual(s.query, b"")
        self.assertEqual(s.headers, [("X-MBX-APIKEY", cred["apiKey"]),
                                     ("Content-Type", "application/x-www-form-urlencoded")])
        self.assertEqual((s.version, s.exchange, s.api_key, s.expires_ms), (1, "binance", cred["apiKey"], MS + 10000))
        self.assertEqual(s.params, [])

    def test_sign_url(self):
        url = "https://api.binance.com/api/v3/openOrders"
        s = self.c.sign_url("binance/hmac", "GET", url + "?symbol=BTCUSDT", recv_window_ms=5000)
        self.assertTrue(s.query.startswith(b"timestamp=%d&symbol=BTCUSDT&recvWindow=5000&signature=" % MS), s.query)
        self.assertEqual(s.url(url), url + "?" + s.query.decode())
        self.assertEqual(s.expires_ms, MS + 5000)
        for bad in ("http://api.binance.com/api/v3/order", "https://api.binance.com:8443/api/v3/order",
                    "https://u@api.binance.com/api/v3/order", "https://u:pass-word@api.binance.com/api/v3/order"):
            with self.subTest(bad), self.assertRaises(keyward.BadRequest) as cm:
                self.c.sign_url("binance/hmac", "GET", bad)
            self.assertNotIn("pass-word", str(cm.exception))

    def test_websocket_login(self):
        cred = self.creds["okx/main"]
        s = self.c.sign("okx/main", "WS", "ws.okx.com", "login")
        params = dict(s.params)
        self.assertEqual([n for n, _ in s.params], ["apiKey", "passphrase", "timestamp", "sign"])
        self.assertEqual((params["apiKey"], params["passphrase"], params["timestamp"]),
                         (cred["apiKey"], cred["password"], str(MS // 1000)))
        mac = hmac.new(cred["secret"].encode(), b"%dGET/users/self/verify" % (MS // 1000), hashlib.sha256)
        self.assertEqual(params["sign"], base64.b64encode(mac.digest()).decode())

    def test_refused(self):
        for why, name, method, path, body, cls in [
            ("a withdrawal", "binance/hmac", "POST", "/sapi/v1/capital/withdraw/apply",
             b"coin=BTC&address=bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh&amount=1", keyward.Denied),
            ("withdrawal parameters on an order", "binance/hmac", "POST", "/api/v3/order",
             b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&address=bc1q&amount=1", keyward.Denied),
            ("a path no rule names", "binance/hmac", "GET", "/api/v3/myTrades", b"", keyward.Denied),
            ("no rule for the name", "other/hidden", "GET", "/api/v3/account", b"", keyward.Denied),
            ("a parameter twice", "binance/hmac", "POST", "/api/v3/order",
             b"symbol=BTCUSDT&symbol=ETHUSDT&side=BUY", keyward.BadRequest),
            ("a dot-dot path", "binance/hmac", "POST", "/api/v3/../order", b"symbol=BTCUSDT", keyward.BadRequest),
        ]:
            with self.subTest(why), self.assertRaises(cls):
                self.c.sign(name, method, "api.binance.com", path, body=body)

    def test_sign_only_is_not_get(self):
        """A rule that grants only sign never reveals the secret."""
        with self.assertRaises(keyward.Denied):
            self.c.get("binance/hmac")
        with self.assertRaises(keyward.Denied):
            self.c.hmac("binance/hmac", b"anything")

    def test_hmac(self):
        gate = self.creds["generic/gate"]["secret"].encode()
        self.assertEqual(self.c.hmac("generic/gate", b"payload", hash="sha512"),
                         hmac.new(gate, b"payload", hashlib.sha512).hexdigest())
        kucoin = self.creds["generic/kucoin"]["secret"].encode()
        self.assertEqual(self.c.hmac("generic/kucoin", bytearray(b"p"), encoding="base64"),
                         base64.b64encode(hmac.new(kucoin, b"p", hashlib.sha256).digest()).decode())
        with self.assertRaises(ValueError):
            self.c.hmac("generic/gate", b"x", hash="md5")
        with self.assertRaises(keyward.Denied):
            self.c.get("generic/gate")  # hmac grants no value


if __name__ == "__main__":
    unittest.main()
