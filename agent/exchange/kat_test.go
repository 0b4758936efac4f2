package exchange

import (
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"
)

// Known answers from the exchanges' own documentation.

// binanceDocSecret is the example secret of Binance's API documentation
// (rest-api.md "SIGNED Endpoint Examples", web-socket-api.md "SIGNED
// request example (HMAC)"), published for illustration.
const (
	binanceDocKey    = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
	binanceDocSecret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
)

// TestBinanceRESTDocExamples checks the HMAC of Binance's two REST
// examples. Their payloads end with recvWindow and timestamp, an order
// Sign does not produce (it follows ccxt: timestamp first), so the MAC is
// checked through the Key, and through HMAC.
func TestBinanceRESTDocExamples(t *testing.T) {
	tests := []struct{ payload, want string }{
		{
			"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
			"c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
		},
		{
			"symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
			"e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
		},
	}
	k, err := NewKey(Credential{Exchange: Binance, KeyID: binanceDocKey, Secret: []byte(binanceDocSecret)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		got, err := k.appendHexMAC(nil, new(Signed), []byte(tt.payload))
		if err != nil || string(got) != tt.want {
			t.Errorf("Key MAC(%q) = %s, %v, want %s", tt.payload, got, err, tt.want)
		}
		got, err = HMAC(crypto.SHA256, Hex, []byte(binanceDocSecret), []byte(tt.payload))
		if err != nil || string(got) != tt.want {
			t.Errorf("HMAC(SHA256, Hex, %q) = %s, %v, want %s", tt.payload, got, err, tt.want)
		}
	}
}

// TestBinanceWSDocExamples signs Binance's two WebSocket API examples end
// to end: the agent adds apiKey and timestamp, sorts, and signs.
func TestBinanceWSDocExamples(t *testing.T) {
	tests := []struct {
		query   string
		window  time.Duration
		payload string
		want    string
	}{
		{
			"symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01000000&price=52000.00",
			100 * time.Millisecond,
			"apiKey=" + binanceDocKey + "&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
			"aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
		},
		{
			"symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1.00000000&price=0.10000000",
			5 * time.Second,
			"apiKey=" + binanceDocKey + "&price=0.10000000&quantity=1.00000000&recvWindow=5000&side=BUY&symbol=１２３４５６&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
			"b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd",
		},
	}
	k, err := NewKey(Credential{Exchange: Binance, KeyID: binanceDocKey, Secret: []byte(binanceDocSecret)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Query: tt.query, RecvWindow: tt.window}
		p, err := Parse(Binance, r)
		if err != nil {
			t.Fatalf("Parse(%+v) = %v", r, err)
		}
		s, err := Sign(k, p, time.UnixMilli(1645423376532), 0)
		if err != nil {
			t.Fatalf("Sign(%q) = %v", tt.query, err)
		}
		if string(s.msg) != tt.payload {
			t.Errorf("Sign(%q) payload = %s, want %s", tt.query, s.msg, tt.payload)
		}
		last := s.Params[len(s.Params)-1]
		if last.Name != "signature" || string(last.Value) != tt.want {
			t.Errorf("Sign(%q) last param = %s=%s, want signature=%s", tt.query, last.Name, last.Value, tt.want)
		}
	}
}

// TestKrakenDocExample signs Kraken's example end to end: the agent puts
// the nonce first in the body, as in the documented payload.
func TestKrakenDocExample(t *testing.T) {
	const (
		secret = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
		body   = "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
		want   = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
	)
	k, err := NewKey(Credential{Exchange: Kraken, KeyID: "example", Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrder", Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Sign(k, p, time.UnixMilli(1616492376594), 1616492376594)
	if err != nil {
		t.Fatal(err)
	}
	if got, wantBody := string(s.Body), "nonce=1616492376594&"+body; got != wantBody {
		t.Errorf("Sign(AddOrder) body = %q, want %q", got, wantBody)
	}
	var got string
	for _, h := range s.Headers {
		if h.Name == "API-Sign" {
			got = string(h.Value)
		}
	}
	if got != want {
		t.Errorf("Sign(AddOrder) API-Sign = %q, want %q", got, want)
	}
}

// TestHMAC checks the generic operation against RFC 4231 test case 2.
func TestHMAC(t *testing.T) {
	key, msg := []byte("Jefe"), []byte("what do ya want for nothing?")
	const (
		sha256Hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
		sha512Hex = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
	)
	tests := []struct {
		h    crypto.Hash
		enc  Encoding
		want string
	}{
		{crypto.SHA256, Hex, sha256Hex},
		{crypto.SHA512, Hex, sha512Hex},
		{crypto.SHA256, Base64, b64(t, sha256Hex)},
		{crypto.SHA512, Base64, b64(t, sha512Hex)},
	}
	for _, tt := range tests {
		got, err := HMAC(tt.h, tt.enc, key, msg)
		if err != nil || string(got) != tt.want {
			t.Errorf("HMAC(%v, %d) = %s, %v, want %s", tt.h, tt.enc, got, err, tt.want)
		}
	}
	if _, err := HMAC(crypto.SHA1, Hex, key, msg); err == nil || !strings.Contains(err.Error(), "SHA256 or crypto.SHA512") {
		t.Errorf("HMAC(SHA1) = %v, want an error naming the hashes accepted", err)
	}
	if _, err := HMAC(crypto.SHA256, Encoding(9), key, msg); err == nil {
		t.Errorf("HMAC(encoding 9) = nil error, want one")
	}
}

func b64(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestProtocolSignExample: the signature in docs/protocol.md's worked Sign
// example is what Sign produces.
func TestProtocolSignExample(t *testing.T) {
	k, err := NewKey(Credential{Exchange: Binance, KeyID: "demo-key", Secret: []byte(binanceDocSecret)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(Binance, &Request{Method: GET, Host: "api.binance.com", Path: "/api/v3/account"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Sign(k, p, time.UnixMilli(1767225600000), 0)
	if err != nil {
		t.Fatal(err)
	}
	const want = "timestamp=1767225600000&recvWindow=10000&signature=145a2e794fb1e41426a0b66ac3bbd4623af4014549b9af44afa3c8015894fb05"
	if string(s.Query) != want || len(s.Body) != 0 || s.Expires.UnixMilli() != 1767225610000 ||
		len(s.Headers) != 1 || s.Headers[0].Name != "X-MBX-APIKEY" || string(s.Headers[0].Value) != "demo-key" {
		t.Errorf("Sign = %+v, want query %q", s, want)
	}
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), want) {
		t.Error("docs/protocol.md's Sign example lacks the signed query")
	}
}
