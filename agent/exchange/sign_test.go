package exchange

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKeys returns the keys of testCredentials.
func testKeys(t testing.TB) map[string]*Key {
	t.Helper()
	keys := map[string]*Key{}
	for name, c := range testCredentials(t) {
		k, err := NewKey(c)
		if err != nil {
			t.Fatalf("NewKey(%s) = %v", name, err)
		}
		keys[name] = k
	}
	return keys
}

func mustParse(t testing.TB, x Exchange, r *Request) *Parsed {
	t.Helper()
	p, err := Parse(x, r)
	if err != nil {
		t.Fatalf("Parse(%s, %+v) = %v", x, r, err)
	}
	return p
}

var now = time.UnixMilli(1700000000123)

// TestBinancePlacement checks where the agent's parameters go.
func TestBinancePlacement(t *testing.T) {
	k := testKeys(t)["binance-hmac"]
	tests := []struct {
		name        string
		r           *Request
		query, body string // the final ones, signature elided as SIG
		contentType bool
	}{
		{"GET", binanceGET("symbol=X"), "timestamp=1700000000123&symbol=X&recvWindow=10000&signature=SIG", "", false},
		{"GET without parameters", binanceGET(""), "timestamp=1700000000123&recvWindow=10000&signature=SIG", "", false},
		{"DELETE", &Request{Method: DELETE, Host: "api.binance.com", Path: "/api/v3/order", Query: "symbol=X&orderId=1"}, "timestamp=1700000000123&symbol=X&orderId=1&recvWindow=10000&signature=SIG", "", false},
		{"POST", binancePOST("symbol=X&side=BUY"), "", "timestamp=1700000000123&symbol=X&side=BUY&recvWindow=10000&signature=SIG", true},
		{"POST without parameters", binancePOST(""), "", "timestamp=1700000000123&recvWindow=10000&signature=SIG", true},
		{"POST in the query", &Request{Method: POST, Host: "api.binance.com", Path: "/api/v3/order", Query: "symbol=X"}, "timestamp=1700000000123&symbol=X&recvWindow=10000&signature=SIG", "", false},
		{"PUT", &Request{Method: PUT, Host: "fapi.binance.com", Path: "/fapi/v1/order", Body: []byte("symbol=X"), RecvWindow: 3 * time.Second}, "", "timestamp=1700000000123&symbol=X&recvWindow=3000&signature=SIG", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Sign(k, mustParse(t, Binance, tt.r), now, 0)
			if err != nil {
				t.Fatal(err)
			}
			final := string(s.Query) + string(s.Body)
			i := strings.LastIndex(final, "&signature=")
			if i < 0 {
				t.Fatalf("Sign(%s) = query %q body %q, want a signature", tt.name, s.Query, s.Body)
			}
			payload, sig := final[:i], final[i+len("&signature="):]
			sigless := strings.Replace(final, sig, "SIG", 1)
			if got := map[bool]string{true: string(s.Query), false: string(s.Body)}[len(s.Query) > 0]; got == "" || sigless != tt.query+tt.body {
				t.Errorf("Sign(%s) = query %q body %q, want %q %q", tt.name, s.Query, s.Body, tt.query, tt.body)
			}
			if mac, _ := HMAC(crypto.SHA256, Hex, []byte(binanceDocSecret), []byte(payload)); string(mac) != sig {
				t.Errorf("Sign(%s) signature = %s, want HMAC of %q = %s", tt.name, sig, payload, mac)
			}
			if s.Digest != sha256.Sum256([]byte(payload)) {
				t.Errorf("Sign(%s).Digest is not the SHA-256 of %q", tt.name, payload)
			}
			window := tt.r.RecvWindow
			if window == 0 {
				window = 10 * time.Second
			}
			if !s.Expires.Equal(now.Add(window)) {
				t.Errorf("Sign(%s).Expires = %v, want %v", tt.name, s.Expires, now.Add(window))
			}
			want := "X-MBX-APIKEY: " + binanceDocKey + "; "
			if tt.contentType {
				want += `Content-Type: "application/x-www-form-urlencoded"; `
			}
			if got := strings.Replace(fields(s.Headers), `"`+binanceDocKey+`"`, binanceDocKey, 1); got != want {
				t.Errorf("Sign(%s) headers = %s, want %s", tt.name, got, want)
			}
		})
	}
}

// TestAsymmetricSignaturesVerify checks Ed25519 and RSA signatures and the
// ES256 and EdDSA JWTs against the public keys.
func TestAsymmetricSignaturesVerify(t *testing.T) {
	keys := testKeys(t)
	for _, name := range []string{"binance-ed25519", "binance-rsa", "bybit-rsa"} {
		k := keys[name]
		r := binanceGET("symbol=BTCUSDT")
		if k.Exchange() == Bybit {
			r = &Request{Method: GET, Host: "api.bybit.com", Path: "/v5/order/realtime", Query: "category=spot"}
		}
		s, err := Sign(k, mustParse(t, k.Exchange(), r), now, 0)
		if err != nil {
			t.Fatal(err)
		}
		var sig string
		if k.Exchange() == Binance {
			q, _ := url.ParseQuery(string(s.Query))
			sig = q.Get("signature")
		} else {
			sig = string(s.Headers[len(s.Headers)-1].Value)
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			t.Fatalf("Sign(%s) signature %q is not base64: %v", name, sig, err)
		}
		ok := false
		switch pub := k.Public().(type) {
		case ed25519.PublicKey:
			ok = ed25519.Verify(pub, s.msg, raw)
		case *rsa.PublicKey:
			d := sha256.Sum256(s.msg)
			ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], raw) == nil
		}
		if !ok {
			t.Errorf("Sign(%s) signature does not verify", name)
		}
	}
	for _, name := range []string{"coinbase-ecdsa", "coinbase-ed25519"} {
		k := keys[name]
		for _, r := range []*Request{
			{Method: POST, Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders", Body: []byte(`{"product_id":"BTC-USD"}`)},
			{Method: WS, Host: "advanced-trade-ws.coinbase.com", Path: "login"},
		} {
			s, err := Sign(k, mustParse(t, Coinbase, r), now, 7)
			if err != nil {
				t.Fatal(err)
			}
			var jwt string
			if r.Method == WS {
				jwt = string(s.Params[0].Value)
			} else {
				jwt = strings.TrimPrefix(string(s.Headers[0].Value), "Bearer ")
			}
			parts := strings.Split(jwt, ".")
			if len(parts) != 3 {
				t.Fatalf("Sign(%s, %s) JWT = %q", name, r.Method, jwt)
			}
			var claims map[string]any
			c, _ := base64.RawURLEncoding.DecodeString(parts[1])
			if err := json.Unmarshal(c, &claims); err != nil {
				t.Fatalf("Sign(%s, %s) claims %s: %v", name, r.Method, c, err)
			}
			_, hasURI := claims["uri"]
			_, hasURIs := claims["uris"]
			if (hasURI || hasURIs) != (r.Method != WS) || claims["exp"].(float64)-claims["nbf"].(float64) != 120 {
				t.Errorf("Sign(%s, %s) claims = %s", name, r.Method, c)
			}
			if !s.Expires.Equal(time.Unix(now.Unix()+120, 0)) {
				t.Errorf("Sign(%s).Expires = %v", name, s.Expires)
			}
			if !verifyJWT(k, jwt) || s.Digest != sha256.Sum256([]byte(parts[0]+"."+parts[1])) {
				t.Errorf("Sign(%s, %s): the JWT signature does not verify, or the digest is not of its input", name, r.Method)
			}
		}
	}
}

func TestKrakenJSONNonce(t *testing.T) {
	k := testKeys(t)["kraken"]
	tests := []struct{ body, want string }{
		{`{}`, `{"nonce":"42"}`},
		{`{ }`, `{"nonce":"42" }`},
		{`{"pair":"XBTUSD"}`, `{"nonce":"42","pair":"XBTUSD"}`},
		{`{ "pair" : "XBTUSD" } `, `{"nonce":"42", "pair" : "XBTUSD" } `},
	}
	for _, tt := range tests {
		r := &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrderBatch", Body: []byte(tt.body)}
		s, err := Sign(k, mustParse(t, Kraken, r), now, 42)
		if err != nil {
			t.Fatal(err)
		}
		if string(s.Body) != tt.want || !json.Valid(s.Body) {
			t.Errorf("Sign(%s) body = %s, want %s", tt.body, s.Body, tt.want)
		}
		if h := s.Headers[2]; h.Name != "Content-Type" || string(h.Value) != "application/json" {
			t.Errorf("Sign(%s) headers = %s, want JSON content", tt.body, fields(s.Headers))
		}
		if !s.Expires.IsZero() {
			t.Errorf("Sign(%s).Expires = %v, want zero: Kraken requests do not expire", tt.body, s.Expires)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	keys := testKeys(t)
	tests := []struct {
		name string
		key  string
		x    Exchange
		r    *Request
		now  time.Time
		err  error
		want string
	}{
		{"another exchange's key", "bybit-hmac", Binance, binanceGET(""), now, ErrUnsupported, "is a bybit key"},
		{"session.logon with HMAC", "binance-hmac", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "session.logon"}, now, ErrUnsupported, "only Ed25519"},
		{"session.logon with RSA", "binance-rsa", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "session.logon"}, now, ErrUnsupported, "only Ed25519"},
		{"bybit WS with RSA", "bybit-rsa", Bybit, &Request{Method: WS, Host: "stream.bybit.com", Path: "login"}, now, ErrUnsupported, "HMAC keys only"},
		{"time before 1970", "binance-hmac", Binance, binanceGET(""), time.Unix(-1, 0), ErrUnsupported, "before 1970"},
	}
	for _, tt := range tests {
		s, err := Sign(keys[tt.key], mustParse(t, tt.x, tt.r), tt.now, 1)
		if !errors.Is(err, tt.err) || err == nil || !strings.Contains(err.Error(), tt.want) || s != nil {
			t.Errorf("Sign(%s) = %v, %v, want %v with %q", tt.name, s, err, tt.err, tt.want)
		}
	}
}

// signCases is one request per scheme, for the tests below and the
// benchmarks.
func signCases() []struct {
	name, key string
	x         Exchange
	r         *Request
} {
	return []struct {
		name, key string
		x         Exchange
		r         *Request
	}{
		{"binance-hmac", "binance-hmac", Binance, binancePOST("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&newClientOrderId=kw-1")},
		{"binance-ed25519", "binance-ed25519", Binance, binancePOST("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&newClientOrderId=kw-1")},
		{"binance-rsa", "binance-rsa", Binance, binancePOST("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&newClientOrderId=kw-1")},
		{"binance-ws-hmac", "binance-hmac", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Query: "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000"}},
		{"bybit-hmac", "bybit-hmac", Bybit, &Request{Method: POST, Host: "api.bybit.com", Path: "/v5/order/create", Body: []byte(`{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.01","price":"30000","orderLinkId":"kw-3"}`)}},
		{"okx-hmac", "okx", OKX, okxPOST(`{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.01","px":"30000","clOrdId":"kw4"}`)},
		{"kraken-hmac", "kraken", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrder", Body: []byte("ordertype=limit&type=buy&volume=1.25&pair=XBTUSD&price=37500")}},
		{"coinbase-es256", "coinbase-ecdsa", Coinbase, &Request{Method: POST, Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders", Body: []byte(`{"client_order_id":"kw-7","product_id":"BTC-USD","side":"BUY"}`)}},
		{"coinbase-eddsa", "coinbase-ed25519", Coinbase, &Request{Method: POST, Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders", Body: []byte(`{"client_order_id":"kw-7","product_id":"BTC-USD","side":"BUY"}`)}},
	}
}

func sameSigned(a, b *Signed) bool {
	if !bytes.Equal(a.Query, b.Query) || !bytes.Equal(a.Body, b.Body) || a.Digest != b.Digest ||
		!a.Expires.Equal(b.Expires) || fields(a.Headers) != fields(b.Headers) || fields(a.Params) != fields(b.Params) {
		return false
	}
	return true
}

// TestSignTo checks that a reused Signed gives what a fresh one does, and
// that HMAC schemes do not allocate once it has grown.
func TestSignTo(t *testing.T) {
	keys := testKeys(t)
	var reused Signed
	cases := signCases()
	for round := range 2 {
		for _, c := range cases {
			p := mustParse(t, c.x, c.r)
			fresh, err := Sign(keys[c.key], p, now, 99)
			if err != nil {
				t.Fatal(err)
			}
			if err := SignTo(&reused, keys[c.key], p, now, 99); err != nil {
				t.Fatal(err)
			}
			if !sameSigned(fresh, &reused) {
				t.Errorf("round %d: SignTo(%s) = %s %q %q, Sign = %s %q %q", round, c.name,
					fields(reused.Headers), reused.Query, reused.Body, fields(fresh.Headers), fresh.Query, fresh.Body)
			}
		}
	}
	for _, c := range cases {
		if !strings.HasSuffix(c.name, "-hmac") || raceEnabled {
			continue
		}
		k, p := keys[c.key], mustParse(t, c.x, c.r)
		var s Signed
		allocs := testing.AllocsPerRun(100, func() {
			if err := SignTo(&s, k, p, now, 99); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0 {
			t.Errorf("SignTo(%s) allocates %.1f times per call, want 0", c.name, allocs)
		}
	}
}

// TestSignConcurrent signs with one key from many goroutines (run it with
// -race): every result must equal the sequential one.
func TestSignConcurrent(t *testing.T) {
	keys := testKeys(t)
	for _, c := range signCases() {
		if strings.Contains(c.name, "rsa") {
			continue // slow, and stateless in this package
		}
		k, p := keys[c.key], mustParse(t, c.x, c.r)
		want, err := Sign(k, p, now, 5)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				var s Signed
				for range 50 {
					if err := SignTo(&s, k, p, now, 5); err != nil || !sameSigned(&s, want) {
						t.Errorf("concurrent SignTo(%s) = %v, differs from the sequential result", c.name, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

// verifyJWT reports whether jwt's signature verifies under k's public key
// (ES256: r || s; EdDSA).
func verifyJWT(k *Key, jwt string) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return false
	}
	input := []byte(parts[0] + "." + parts[1])
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		if len(sig) != 64 {
			return false
		}
		d := sha256.Sum256(input)
		return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case ed25519.PublicKey:
		return ed25519.Verify(pub, input, sig)
	}
	return false
}
