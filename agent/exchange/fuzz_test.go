package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets check the parser's contract: no panic; on error, nil and
// a short *RequestError wrapping one sentinel; on success, what the exchange
// receives after signing, read back the same way (and by Go's own URL and
// JSON parsers), is what policy saw plus the agent's parameters. Their
// seed corpora are in testdata/fuzz.

// checkRefusal checks the error side of the contract.
func checkRefusal(t *testing.T, p *Parsed, err error) {
	t.Helper()
	var re *RequestError
	switch {
	case p != nil:
		t.Fatalf("Parse returned %+v and %v", p, err)
	case !errors.As(err, &re):
		t.Fatalf("Parse error %v is not a *RequestError", err)
	case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrUnsupported):
		t.Fatalf("Parse error %v wraps no sentinel", err)
	case len(err.Error()) > maxErrorText:
		t.Fatalf("Parse error is %d bytes: %.200s…", len(err.Error()), err)
	}
}

// checkParams checks what every accepted parameter list satisfies.
func checkParams(t *testing.T, params []Param) {
	t.Helper()
	for i, p := range params {
		if p.Name == "" || strings.IndexFunc(p.Name, func(r rune) bool { return r > 0x7f || !nameChar(byte(r)) }) >= 0 {
			t.Fatalf("accepted parameter name %q", p.Name)
		}
		if !p.Raw && (!utf8.ValidString(p.Value) || strings.ContainsFunc(p.Value, func(r rune) bool { return r < 0x20 || r == 0x7f })) {
			t.Fatalf("accepted parameter %q = %q", p.Name, p.Value)
		}
		for _, q := range params[:i] {
			if strings.EqualFold(p.Name, q.Name) {
				t.Fatalf("accepted parameters %q and %q", q.Name, p.Name)
			}
		}
	}
}

var fuzzKeys = map[string]*Key{}

func fuzzKey(t *testing.T, name string) *Key {
	if k := fuzzKeys[name]; k != nil {
		return k
	}
	for n, k := range testKeys(t) {
		fuzzKeys[n] = k
	}
	return fuzzKeys[name]
}

// FuzzParseQuery parses a Binance GET query, signs it, and reads the
// signed query back, with this parser and with net/url.
func FuzzParseQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, query string) {
		p, err := Parse(Binance, binanceGET(query))
		if err != nil {
			checkRefusal(t, p, err)
			return
		}
		checkParams(t, p.Params)
		std, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("Parse accepted %q, net/url refuses it: %v", query, err)
		}
		for _, prm := range p.Params {
			if v := std[prm.Name]; len(v) != 1 || v[0] != prm.Value {
				t.Fatalf("Parse(%q) reads %s=%q, net/url %q", query, prm.Name, prm.Value, v)
			}
		}
		s, err := Sign(fuzzKey(t, "binance-hmac"), p, now, 1)
		if err != nil {
			t.Fatalf("Sign(%q) = %v", query, err)
		}
		var sent []Param
		count := 0
		if sent, err = parseForm(Binance, "query", string(s.Query), nil, &count); err != nil {
			t.Fatalf("the signed query %q does not parse: %v", s.Query, err)
		}
		names := []string{"timestamp"}
		for _, prm := range p.Params {
			names = append(names, prm.Name)
		}
		names = append(names, "recvWindow", "signature")
		var got []string
		for _, prm := range sent {
			got = append(got, prm.Name)
		}
		if !slices.Equal(got, names) || !reflect.DeepEqual(sent[1:len(sent)-2], p.Params) && len(p.Params) > 0 {
			t.Fatalf("the signed query %q carries %q, want %q", s.Query, got, names)
		}
	})
}

// FuzzParseBody parses a Kraken body (form, or JSON when it starts with
// '{'), signs it, and reads the signed body back.
func FuzzParseBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		r := &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrder", Body: body}
		p, err := Parse(Kraken, r)
		if err != nil {
			checkRefusal(t, p, err)
			return
		}
		checkParams(t, p.Params)
		s, err := Sign(fuzzKey(t, "kraken"), p, now, 12345)
		if err != nil {
			t.Fatalf("Sign(%q) = %v", body, err)
		}
		count := 0
		var sent []Param
		if p.json {
			if !json.Valid(s.Body) {
				t.Fatalf("the signed body %q is not JSON", s.Body)
			}
			sent, _, err = parseJSON(Kraken, "body", string(s.Body), false, &count)
		} else {
			sent, err = parseForm(Kraken, "body", string(s.Body), nil, &count)
		}
		if err != nil {
			t.Fatalf("the signed body %q does not parse: %v", s.Body, err)
		}
		if len(sent) == 0 || sent[0].Name != "nonce" || sent[0].Value != "12345" || !reflect.DeepEqual(sent[1:], p.Params) && len(p.Params) > 0 {
			t.Fatalf("the signed body %q carries %+v, want the nonce then %+v", s.Body, sent, p.Params)
		}
	})
}

// FuzzParseJSON parses an OKX JSON body and compares it with
// encoding/json: whatever Parse accepts, encoding/json reads the same.
func FuzzParseJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Parse(OKX, okxPOST(string(body)))
		if err != nil {
			checkRefusal(t, p, err)
			return
		}
		checkParams(t, p.Params)
		for _, it := range p.Items {
			checkParams(t, it)
		}
		if len(body) == 0 { // a POST without parameters
			return
		}
		var std any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&std); err != nil || !json.Valid(body) {
			t.Fatalf("Parse accepted %q, encoding/json refuses it: %v", body, err)
		}
		compare := func(params []Param, obj any) {
			m, ok := obj.(map[string]any)
			if !ok || len(m) != len(params) {
				t.Fatalf("Parse(%q) = %+v, encoding/json %v", body, params, obj)
			}
			for _, prm := range params {
				v, ok := m[prm.Name]
				if s, isStr := v.(string); !ok || isStr == prm.Raw || isStr && s != prm.Value {
					t.Fatalf("Parse(%q) reads %s=%q, encoding/json %#v", body, prm.Name, prm.Value, v)
				}
			}
		}
		if arr, ok := std.([]any); ok {
			if len(arr) != len(p.Items) {
				t.Fatalf("Parse(%q) = %d items, encoding/json %d", body, len(p.Items), len(arr))
			}
			for i := range arr {
				compare(p.Items[i], arr[i])
			}
		} else {
			compare(p.Params, std)
		}
		s, err := Sign(fuzzKey(t, "okx"), p, now, 1)
		if err != nil || !bytes.Equal(s.Body, body) {
			t.Fatalf("Sign(%q) = %q, %v, want the body unchanged", body, s.Body, err)
		}
	})
}

// FuzzParsePath parses a Binance path: whatever Parse accepts is already
// clean and reads the same through net/url.
func FuzzParsePath(f *testing.F) {
	f.Fuzz(func(t *testing.T, p string) {
		parsed, err := Parse(Binance, withPath(binanceGET(""), p))
		if err != nil {
			checkRefusal(t, parsed, err)
			return
		}
		if path.Clean(p) != p {
			t.Fatalf("Parse accepted %q, which cleans to %q", p, path.Clean(p))
		}
		u, err := url.Parse("https://api.binance.com" + p)
		if err != nil || u.Path != p || u.EscapedPath() != p || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("Parse accepted %q, net/url reads %+v, %v", p, u, err)
		}
	})
}

// FuzzNewKey feeds credentials to NewKey: errors wrap ErrBadKey and never
// quote the secret; a key it accepts signs.
func FuzzNewKey(f *testing.F) {
	exchanges := Exchanges()
	requests := map[Exchange]*Request{
		Binance:  binanceGET("symbol=X"),
		Bybit:    {Method: GET, Host: "api.bybit.com", Path: "/v5/order/realtime"},
		OKX:      {Method: GET, Host: "www.okx.com", Path: "/api/v5/account/balance"},
		Kraken:   {Method: POST, Host: "api.kraken.com", Path: "/0/private/Balance"},
		Coinbase: {Method: GET, Host: "api.coinbase.com", Path: "/api/v3/brokerage/accounts"},
	}
	f.Fuzz(func(t *testing.T, x uint8, id string, secret, passphrase []byte) {
		c := Credential{Exchange: exchanges[int(x)%len(exchanges)], KeyID: id, Secret: secret, Passphrase: passphrase}
		k, err := NewKey(c)
		if err != nil {
			if k != nil || !errors.Is(err, ErrBadKey) {
				t.Fatalf("NewKey = %v, %v, want nil and ErrBadKey", k, err)
			}
			if len(secret) >= 8 && !bytes.Contains(secret, []byte("-----")) && strings.Contains(err.Error(), string(secret)) {
				t.Fatalf("NewKey error %q quotes the secret", err)
			}
			if len(passphrase) >= 8 && strings.Contains(err.Error(), string(passphrase)) {
				t.Fatalf("NewKey error %q quotes the passphrase", err)
			}
			return
		}
		p, err := Parse(c.Exchange, requests[c.Exchange])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Sign(k, p, now, 1); err != nil {
			t.Fatalf("Sign with the %s key NewKey accepted = %v", k.Type(), err)
		}
		k.Destroy()
	})
}
