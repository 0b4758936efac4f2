package exchange

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Requests used by the tables: a valid one of each kind, changed by each
// case.
func binanceGET(query string) *Request {
	return &Request{Method: GET, Host: "api.binance.com", Path: "/api/v3/openOrders", Query: query}
}

func binancePOST(body string) *Request {
	return &Request{Method: POST, Host: "api.binance.com", Path: "/api/v3/order", Body: []byte(body)}
}

func okxPOST(body string) *Request {
	return &Request{Method: POST, Host: "www.okx.com", Path: "/api/v5/trade/order", Body: []byte(body)}
}

func withPath(r *Request, path string) *Request { r.Path = path; return r }

// TestParseRefuses is the scope and smuggling table: every way of making
// the agent's view of a request differ from the exchange's is refused,
// with the sentinel callers branch on and a message that says what to do.
func TestParseRefuses(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 17) + "1" + strings.Repeat("}", 17)
	many := strings.Repeat("a1=1&", MaxParams) + "z=1"
	tests := []struct {
		name string
		x    Exchange
		r    *Request
		err  error
		want string // in the message
	}{
		// Paths.
		{"dot-dot segment", Binance, withPath(binanceGET(""), "/api/v3/../v3/order"), ErrAmbiguous, "'..' segment"},
		{"dot segment", Binance, withPath(binanceGET(""), "/api/v3/./order"), ErrAmbiguous, "'.'"},
		{"empty segment", Binance, withPath(binanceGET(""), "/api//v3/order"), ErrAmbiguous, "empty"},
		{"trailing slash", Binance, withPath(binanceGET(""), "/api/v3/order/"), ErrAmbiguous, "empty"},
		{"percent escape in path", Binance, withPath(binanceGET(""), "/api/v3/%6Frder"), ErrAmbiguous, "'%' escape"},
		{"backslash in path", Binance, withPath(binanceGET(""), `/api/v3\order`), ErrAmbiguous, `'\\'`},
		{"semicolon in path", Binance, withPath(binanceGET(""), "/api/v3/order;x=1"), ErrAmbiguous, "';'"},
		{"fragment in path", Binance, withPath(binanceGET(""), "/api/v3/order#x"), ErrAmbiguous, "'#'"},
		{"query in path", Binance, withPath(binanceGET(""), "/api/v3/order?symbol=X"), ErrAmbiguous, "query goes in Query"},
		{"relative path", Binance, withPath(binanceGET(""), "api/v3/order"), ErrMalformed, "start with '/'"},
		{"space in path", Binance, withPath(binanceGET(""), "/api/v3/ord er"), ErrMalformed, "' '"},
		{"unsigned binance path", Binance, withPath(binanceGET(""), "/wapi/v3/x"), ErrUnsupported, "start with one of"},
		{"long path", Binance, withPath(binanceGET(""), "/api/"+strings.Repeat("a", MaxPathSize)), ErrMalformed, "limit"},

		// Query strings.
		{"second question mark", Binance, binanceGET("symbol=BTCUSDT?x=1"), ErrAmbiguous, "'?'"},
		{"duplicate", Binance, binanceGET("symbol=BTCUSDT&symbol=ETHUSDT"), ErrAmbiguous, "appears twice"},
		{"case-folded duplicate", Binance, binanceGET("symbol=BTCUSDT&Symbol=ETHUSDT"), ErrAmbiguous, `"Symbol" appears twice`},
		{"percent-encoded duplicate", Binance, binanceGET("symbol=BTCUSDT&%73ymbol=ETHUSDT"), ErrAmbiguous, "escaped"},
		{"percent-encoded name", Binance, binanceGET("sym%62ol=BTCUSDT"), ErrAmbiguous, "escaped"},
		{"invalid escape", Binance, binanceGET("symbol=BTC%ZZ"), ErrMalformed, "invalid %-escape"},
		{"truncated escape", Binance, binanceGET("symbol=BTC%2"), ErrMalformed, "invalid %-escape"},
		{"plus", Binance, binanceGET("symbol=BTC+USDT"), ErrAmbiguous, "'+'"},
		{"semicolon separator", Binance, binanceGET("symbol=BTCUSDT;side=BUY"), ErrAmbiguous, "';'"},
		{"fragment", Binance, binanceGET("symbol=BTCUSDT#x"), ErrAmbiguous, "'#'"},
		{"second equals", Binance, binanceGET("symbol=a=b"), ErrAmbiguous, "'='"},
		{"empty parameter", Binance, binanceGET("symbol=BTCUSDT&&side=BUY"), ErrMalformed, "empty parameter"},
		{"leading ampersand", Binance, binanceGET("&symbol=BTCUSDT"), ErrMalformed, "empty parameter"},
		{"trailing ampersand", Binance, binanceGET("symbol=BTCUSDT&"), ErrMalformed, "empty parameter"},
		{"no equals", Binance, binanceGET("symbol"), ErrMalformed, "no '='"},
		{"empty name", Binance, binanceGET("=BTCUSDT"), ErrMalformed, "empty name"},
		{"bracketed name", Binance, binanceGET("sym[bol]=x"), ErrMalformed, "names are letters"},
		{"invalid UTF-8", Binance, binanceGET("symbol=%FF"), ErrAmbiguous, "UTF-8"},
		{"NUL", Binance, binanceGET("symbol=%00"), ErrMalformed, "control character"},
		{"C1 control", Binance, binanceGET("symbol=%C2%85"), ErrMalformed, "control character"},
		{"raw space", Binance, binanceGET("symbol=BTC USDT"), ErrMalformed, "percent-encode"},
		{"raw non-ASCII", Binance, binanceGET("symbol=é"), ErrMalformed, "percent-encode"},
		{"timestamp given", Binance, binanceGET("symbol=X&timestamp=1"), ErrAmbiguous, "added by the agent"},
		{"timestamp in capitals", Binance, binanceGET("TIMESTAMP=1"), ErrAmbiguous, "added by the agent"},
		{"signature given", Binance, binanceGET("signature=00"), ErrAmbiguous, "added by the agent"},
		{"recvWindow given", Binance, binanceGET("recvWindow=60000"), ErrAmbiguous, "added by the agent"},
		{"too many parameters", Binance, binanceGET(many), ErrMalformed, "more than 256"},
		{"query too large", Binance, binanceGET("a=" + strings.Repeat("x", MaxQuerySize)), ErrMalformed, "limit"},

		// Form bodies.
		{"query and body", Binance, &Request{Method: POST, Host: "api.binance.com", Path: "/api/v3/order", Query: "symbol=X", Body: []byte("side=BUY")}, ErrAmbiguous, "both the query and the body"},
		{"GET with body", Binance, &Request{Method: GET, Host: "api.binance.com", Path: "/api/v3/order", Body: []byte("symbol=X")}, ErrMalformed, "not the body"},
		{"body duplicate", Binance, binancePOST("symbol=A&side=BUY&SYMBOL=B"), ErrAmbiguous, "appears twice"},
		{"JSON to binance", Binance, binancePOST(`{"symbol":"X"}`), ErrMalformed, "takes name=value"},
		{"body too large", Binance, binancePOST("a=" + strings.Repeat("x", MaxBodySize)), ErrMalformed, "limit"},
		{"batch not JSON", Binance, &Request{Method: POST, Host: "fapi.binance.com", Path: "/fapi/v1/batchOrders", Body: []byte("batchOrders=x")}, ErrMalformed, "JSON"},
		{"batch symbol duplicate", Binance, &Request{Method: POST, Host: "fapi.binance.com", Path: "/fapi/v1/batchOrders", Body: []byte(`batchOrders=[{"symbol":"A","Symbol":"B"}]`)}, ErrAmbiguous, "appears twice"},

		// JSON bodies.
		{"JSON duplicate", OKX, okxPOST(`{"instId":"A","instId":"B"}`), ErrAmbiguous, "appears twice"},
		{"JSON case-folded duplicate", OKX, okxPOST(`{"instId":"A","INSTID":"B"}`), ErrAmbiguous, "appears twice"},
		{"JSON escaped name", OKX, okxPOST(`{"inst\u0049d":"A"}`), ErrAmbiguous, "escaped"},
		{"JSON nested duplicate", OKX, okxPOST(`{"a":{"b":1,"B":2}}`), ErrAmbiguous, "appears twice"},
		{"JSON string at top", OKX, okxPOST(`"instId"`), ErrMalformed, "not an object"},
		{"JSON number at top", OKX, okxPOST(`1`), ErrMalformed, "not an object"},
		{"JSON null at top", OKX, okxPOST(`null`), ErrMalformed, "not an object"},
		{"JSON array of numbers", OKX, okxPOST(`[1,2]`), ErrMalformed, "not an object"},
		{"JSON array to bybit", Bybit, &Request{Method: POST, Host: "api.bybit.com", Path: "/v5/order/create", Body: []byte(`[{"symbol":"A"}]`)}, ErrMalformed, "wants an object"},
		{"JSON trailing data", OKX, okxPOST(`{"instId":"A"} x`), ErrAmbiguous, "data after"},
		{"JSON second object", OKX, okxPOST(`{"instId":"A"}{"instId":"B"}`), ErrAmbiguous, "data after"},
		{"JSON invalid UTF-8", OKX, okxPOST("{\"instId\":\"\xff\"}"), ErrAmbiguous, "UTF-8"},
		{"JSON lone surrogate", OKX, okxPOST(`{"instId":"\ud800"}`), ErrAmbiguous, "surrogate"},
		{"JSON reversed surrogates", OKX, okxPOST(`{"instId":"\udc00\ud800"}`), ErrAmbiguous, "surrogate"},
		{"JSON escaped NUL", OKX, okxPOST(`{"instId":"\u0000"}`), ErrMalformed, "control character"},
		{"JSON raw newline", OKX, okxPOST("{\"instId\":\"a\nb\"}"), ErrMalformed, "control character"},
		{"JSON newline escape", OKX, okxPOST(`{"instId":"a\nb"}`), ErrMalformed, "escape"},
		{"JSON too deep", OKX, okxPOST(deep), ErrMalformed, "deeper than 16"},
		{"JSON leading zero", OKX, okxPOST(`{"sz":01}`), ErrMalformed, "want '}'"},
		{"JSON bad literal", OKX, okxPOST(`{"a":tru}`), ErrMalformed, "starts no value"},
		{"JSON byte order mark", OKX, okxPOST("\ufeff{}"), ErrMalformed, "not an object"},
		{"JSON unterminated", OKX, okxPOST(`{"instId":"A"`), ErrMalformed, "ends early"},
		{"JSON symbol not a string", OKX, okxPOST(`{"instId":123}`), ErrMalformed, "must be a string"},
		{"JSON batch duplicate", OKX, okxPOST(`[{"instId":"A"},{"instId":"B","instid":"C"}]`), ErrAmbiguous, "appears twice"},
		{"JSON batch as string", Bybit, &Request{Method: POST, Host: "api.bybit.com", Path: "/v5/order/create-batch", Body: []byte(`{"category":"spot","request":"[]"}`)}, ErrMalformed, "is a string"},
		{"JSON too many members", OKX, okxPOST("{" + strings.Repeat(`"a":1,`, 0) + manyMembers(MaxParams+1) + "}"), ErrMalformed, "more than 256"},
		{"POST query to OKX", OKX, &Request{Method: POST, Host: "www.okx.com", Path: "/api/v5/trade/order", Query: "instId=A"}, ErrMalformed, "JSON body"},

		// Hosts and methods.
		{"upper-case host", Binance, &Request{Method: GET, Host: "API.binance.com", Path: "/api/v3/account"}, ErrMalformed, "lower case"},
		{"host with port", Binance, &Request{Method: GET, Host: "api.binance.com:443", Path: "/api/v3/account"}, ErrMalformed, "without port"},
		{"host with user", Binance, &Request{Method: GET, Host: "u@api.binance.com", Path: "/api/v3/account"}, ErrMalformed, "without port or user"},
		{"empty host", Binance, &Request{Method: GET, Path: "/api/v3/account"}, ErrMalformed, "host name"},
		{"empty label", Binance, &Request{Method: GET, Host: "api..binance.com", Path: "/api/v3/account"}, ErrMalformed, "empty label"},
		{"lower-case method", Binance, &Request{Method: "get", Host: "api.binance.com", Path: "/api/v3/account"}, ErrUnsupported, "is not one of"},
		{"PATCH", Binance, &Request{Method: "PATCH", Host: "api.binance.com", Path: "/api/v3/account"}, ErrUnsupported, "is not one of"},
		{"kraken GET", Kraken, &Request{Method: GET, Host: "api.kraken.com", Path: "/0/private/Balance"}, ErrUnsupported, "is not one of"},
		{"kraken WS", Kraken, &Request{Method: WS, Host: "ws-auth.kraken.com", Path: "login"}, ErrUnsupported, "is not one of"},
		{"unknown exchange", Exchange("mtgox"), binanceGET(""), ErrUnsupported, "unknown exchange"},

		// Exchange rules.
		{"kraken query", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/Balance", Query: "a=1"}, ErrMalformed, "does not sign the query"},
		{"kraken nonce given", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/Balance", Body: []byte("nonce=1")}, ErrAmbiguous, "added by the agent"},
		{"kraken JSON nonce given", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrderBatch", Body: []byte(`{"Nonce":"1"}`)}, ErrAmbiguous, "added by the agent"},
		{"kraken public path", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/public/Time"}, ErrUnsupported, "/0/private/"},
		{"coinbase GET body", Coinbase, &Request{Method: GET, Host: "api.coinbase.com", Path: "/api/v3/brokerage/accounts", Body: []byte("{}")}, ErrMalformed, "not the body"},
		{"coinbase POST query", Coinbase, &Request{Method: POST, Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders", Query: "a=1"}, ErrMalformed, "JSON body"},
		{"coinbase other path", Coinbase, &Request{Method: GET, Host: "api.coinbase.com", Path: "/api/v2/accounts"}, ErrUnsupported, "/api/v3/"},
		{"coinbase repeated parameter", Coinbase, &Request{Method: GET, Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders/historical/batch", Query: "order_status=OPEN&order_status=FILLED"}, ErrAmbiguous, "appears twice"},
		{"bybit unsigned path", Bybit, &Request{Method: GET, Host: "api.bybit.com", Path: "/v3/private/order"}, ErrUnsupported, "/v5/"},

		// WebSocket requests.
		{"binance WS body", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Body: []byte("a=1")}, ErrMalformed, "in Query"},
		{"binance WS method name", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order/place"}, ErrMalformed, "WebSocket API method"},
		{"binance WS ampersand", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Query: "newClientOrderId=a%26symbol%3DX"}, ErrAmbiguous, "does not escape"},
		{"binance WS too many parameters", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Query: numbered(maxBinanceWSParams + 1)}, ErrMalformed, "at most 251"},
		{"binance WS apiKey given", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Query: "apiKey=x"}, ErrAmbiguous, "added by the agent"},
		{"okx WS path", OKX, &Request{Method: WS, Host: "ws.okx.com", Path: "subscribe"}, ErrMalformed, `"login"`},
		{"okx WS parameters", OKX, &Request{Method: WS, Host: "ws.okx.com", Path: "login", Query: "a=1"}, ErrMalformed, "no parameters"},

		// Receive windows.
		{"recv window too long", Binance, &Request{Method: GET, Host: "api.binance.com", Path: "/api/v3/account", RecvWindow: 61 * time.Second}, ErrMalformed, "1ms to 60s"},
		{"recv window fraction", Bybit, &Request{Method: GET, Host: "api.bybit.com", Path: "/v5/order/realtime", RecvWindow: 1500 * time.Microsecond}, ErrMalformed, "whole number"},
		{"recv window negative", Bybit, &Request{Method: GET, Host: "api.bybit.com", Path: "/v5/order/realtime", RecvWindow: -time.Second}, ErrMalformed, "whole number"},
		{"recv window to okx", OKX, &Request{Method: GET, Host: "www.okx.com", Path: "/api/v5/account/balance", RecvWindow: time.Second}, ErrUnsupported, "no receive window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.x, tt.r)
			if err == nil {
				t.Fatalf("Parse(%s, %+v) = %+v, want an error", tt.x, tt.r, p)
			}
			if p != nil {
				t.Errorf("Parse(%s, %+v) = %+v and an error, want nil", tt.x, tt.r, p)
			}
			var re *RequestError
			if !errors.As(err, &re) || !errors.Is(err, tt.err) {
				t.Errorf("Parse(%s, %+v) = %v, want a *RequestError wrapping %v", tt.x, tt.r, err, tt.err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%s, %+v) = %v, want %q in it", tt.x, tt.r, err, tt.want)
			}
		})
	}
}

// numbered returns the query a0=1&a1=1&… of n parameters.
func numbered(n int) string {
	q := make([]string, n)
	for i := range q {
		q[i] = fmt.Sprintf("a%d=1", i)
	}
	return strings.Join(q, "&")
}

// TestBinanceWSParamsFit: the largest Binance WS request Parse accepts
// signs into MaxSignedParams parameters, what the agent's answer can
// count; one more parameter is refused (TestParseRefuses).
func TestBinanceWSParamsFit(t *testing.T) {
	p, err := Parse(Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: "order.place", Query: numbered(maxBinanceWSParams)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Sign(testKeys(t)["binance-hmac"], p, now, 1)
	if err != nil || len(s.Params) != MaxSignedParams {
		t.Fatalf("Sign = %d parameters, %v; want %d", len(s.Params), err, MaxSignedParams)
	}
}

func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"a%d":1`, i)
	}
	return b.String()
}

// maxErrorText bounds a refusal's text: the agent sends it in an error
// frame, whose message holds at most 65535 bytes, and writes it to the
// audit trail.
const maxErrorText = 2048

// TestParseRefusesLongInput: a refusal quotes at most MaxEcho bytes of
// the request, however long the path, name or value it is about. Quoted
// whole, each of these made a message over 65535 bytes, which the agent
// could not encode into its error frame.
func TestParseRefusesLongInput(t *testing.T) {
	long := strings.Repeat("a", MaxQuerySize)
	for _, tt := range []struct {
		name string
		x    Exchange
		r    *Request
	}{
		{"query without =", Binance, binanceGET(long)},
		{"long name, bad byte", Binance, binanceGET(long[:MaxQuerySize-3] + "!=1")},
		{"long name, '+' in value", Binance, binanceGET(long[:MaxQuerySize-4] + "=a+b")},
		{"path without /", Binance, withPath(binanceGET(""), strings.Repeat("\x00", 0xffff))},
		{"WS method", Binance, &Request{Method: WS, Host: "ws-api.binance.com", Path: strings.Repeat("\x7f", 0xffff)}},
		{"symbol not a string", OKX, okxPOST(`{"instId":[` + strings.Repeat("1,", MaxBodySize/2-16) + `1]}`)},
		{"duplicate member", OKX, okxPOST(`{"` + long[:MaxBodySize/2-8] + `":1,"` + long[:MaxBodySize/2-8] + `":2}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.x, tt.r)
			var re *RequestError
			if p != nil || !errors.As(err, &re) {
				t.Fatalf("Parse = %v, %v; want a *RequestError", p, err)
			}
			if n := len(err.Error()); n > maxErrorText {
				t.Fatalf("the refusal is %d bytes, more than %d: %.200s…", n, maxErrorText, err)
			}
		})
	}
}

// TestParse checks what Parse reports of requests it accepts.
func TestParse(t *testing.T) {
	p := func(s ...string) []Param {
		var ps []Param
		for i := 0; i < len(s); i += 2 {
			ps = append(ps, Param{Name: s[i], Value: s[i+1]})
		}
		return ps
	}
	raw := func(ps []Param, names ...string) []Param {
		for i := range ps {
			for _, n := range names {
				if ps[i].Name == n {
					ps[i].Raw = true
				}
			}
		}
		return ps
	}
	tests := []struct {
		name    string
		x       Exchange
		r       *Request
		params  []Param
		items   [][]Param
		symbols []string
		funds   []string
		window  time.Duration
	}{
		{"binance GET", Binance, binanceGET("symbol=BTCUSDT&limit=10"), p("symbol", "BTCUSDT", "limit", "10"), nil, []string{"BTCUSDT"}, nil, 10 * time.Second},
		{"binance non-ASCII", Binance, binanceGET("symbol=%EF%BC%91%EF%BC%92"), p("symbol", "１２"), nil, []string{"１２"}, nil, 10 * time.Second},
		{"binance JSON-ish value", Binance, binanceGET(`orderIdList=[1,2]&symbol=BTCUSDT`), p("orderIdList", "[1,2]", "symbol", "BTCUSDT"), nil, []string{"BTCUSDT"}, nil, 10 * time.Second},
		{"binance query POST", Binance, &Request{Method: POST, Host: "api.binance.com", Path: "/api/v3/order", Query: "symbol=X", RecvWindow: 5 * time.Second}, p("symbol", "X"), nil, []string{"X"}, nil, 5 * time.Second},
		{"binance batch, encoded", Binance, &Request{Method: POST, Host: "fapi.binance.com", Path: "/fapi/v1/batchOrders",
			Body: []byte("batchOrders=%5B%7B%22symbol%22%3A%22BTCUSDT%22%2C%22side%22%3A%22BUY%22%7D%2C%7B%22symbol%22%3A%22ETHUSDT%22%7D%5D")},
			p("batchOrders", `[{"symbol":"BTCUSDT","side":"BUY"},{"symbol":"ETHUSDT"}]`), [][]Param{p("symbol", "BTCUSDT", "side", "BUY"), p("symbol", "ETHUSDT")},
			[]string{"BTCUSDT", "ETHUSDT"}, nil, 10 * time.Second},
		{"binance batch, raw as ccxt sends it", Binance, &Request{Method: POST, Host: "fapi.binance.com", Path: "/fapi/v1/batchOrders", Body: []byte(`batchOrders=[{"symbol":"BTCUSDT"}]`)},
			p("batchOrders", `[{"symbol":"BTCUSDT"}]`), [][]Param{p("symbol", "BTCUSDT")}, []string{"BTCUSDT"}, nil, 10 * time.Second},
		{"bybit batch", Bybit, &Request{Method: POST, Host: "api.bybit.com", Path: "/v5/order/create-batch", Body: []byte(`{"category":"linear","request":[{"symbol":"BTCUSDT","qty":"1"},{"symbol":"ETHUSDT","qty":"2"}]}`)},
			raw(p("category", "linear", "request", `[{"symbol":"BTCUSDT","qty":"1"},{"symbol":"ETHUSDT","qty":"2"}]`), "request"),
			[][]Param{p("symbol", "BTCUSDT", "qty", "1"), p("symbol", "ETHUSDT", "qty", "2")}, []string{"BTCUSDT", "ETHUSDT"}, nil, 5 * time.Second},
		{"okx batch", OKX, okxPOST(`[{"instId":"BTC-USDT","sz":"1"},{"instId":"ETH-USDT","sz":"2"}]`),
			nil, [][]Param{p("instId", "BTC-USDT", "sz", "1"), p("instId", "ETH-USDT", "sz", "2")}, []string{"BTC-USDT", "ETH-USDT"}, nil, 0},
		{"okx escapes", OKX, okxPOST(` { "instId" : "BTC\/USDT \u00e9\ud83d\ude00" , "sz" : 1.5e3, "x": [true, null, {}] } `),
			raw(p("instId", "BTC/USDT é😀", "sz", "1.5e3", "x", `[true, null, {}]`), "sz", "x"), nil, []string{"BTC/USDT é😀"}, nil, 0},
		{"okx withdrawal", OKX, &Request{Method: POST, Host: "www.okx.com", Path: "/api/v5/asset/withdrawal", Body: []byte(`{"ccy":"USDT","amt":"1","dest":"4","toAddr":"T..."}`)},
			p("ccy", "USDT", "amt", "1", "dest", "4", "toAddr", "T..."), nil, nil, []string{"amt", "dest", "toAddr"}, 0},
		{"kraken batch", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrderBatch", Body: []byte(`{"pair":"XBTUSD","orders":[{"type":"buy"}]}`)},
			raw(p("pair", "XBTUSD", "orders", `[{"type":"buy"}]`), "orders"), [][]Param{p("type", "buy")}, []string{"XBTUSD"}, nil, 0},
		{"kraken form, symbol in capitals", Kraken, &Request{Method: POST, Host: "api.kraken.com", Path: "/0/private/AddOrder", Body: []byte("PAIR=XBTUSD&type=buy")},
			p("PAIR", "XBTUSD", "type", "buy"), nil, []string{"XBTUSD"}, nil, 0},
		{"coinbase order", Coinbase, &Request{Method: POST, Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders", Body: []byte(`{"product_id":"BTC-USD","order_configuration":{"market_market_ioc":{"quote_size":"10"}}}`)},
			raw(p("product_id", "BTC-USD", "order_configuration", `{"market_market_ioc":{"quote_size":"10"}}`), "order_configuration"), nil, []string{"BTC-USD"}, nil, 0},
		{"coinbase v2 send", Coinbase, &Request{Method: POST, Host: "api.coinbase.com", Path: "/v2/accounts/8b3c/transactions", Body: []byte(`{"type":"send","to":"bc1q","amount":"1","currency":"BTC"}`)},
			p("type", "send", "to", "bc1q", "amount", "1", "currency", "BTC"), nil, nil, []string{"to", "amount"}, 0},
		{"bybit WS default window", Bybit, &Request{Method: WS, Host: "stream.bybit.com", Path: "login"}, nil, nil, nil, nil, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.x, tt.r)
			if err != nil {
				t.Fatalf("Parse(%s, %+v) = %v", tt.x, tt.r, err)
			}
			if !reflect.DeepEqual(got.Params, tt.params) {
				t.Errorf("Parse(%+v).Params = %+v, want %+v", tt.r, got.Params, tt.params)
			}
			if !reflect.DeepEqual(got.Items, tt.items) {
				t.Errorf("Parse(%+v).Items = %+v, want %+v", tt.r, got.Items, tt.items)
			}
			if !reflect.DeepEqual(got.Symbols, tt.symbols) {
				t.Errorf("Parse(%+v).Symbols = %q, want %q", tt.r, got.Symbols, tt.symbols)
			}
			if !reflect.DeepEqual(got.FundParams, tt.funds) {
				t.Errorf("Parse(%+v).FundParams = %q, want %q", tt.r, got.FundParams, tt.funds)
			}
			if got.RecvWindow != tt.window {
				t.Errorf("Parse(%+v).RecvWindow = %v, want %v", tt.r, got.RecvWindow, tt.window)
			}
			if got.Query() != tt.r.Query || got.Body() != string(tt.r.Body) {
				t.Errorf("Parse(%+v) kept query %q, body %q; want them as given", tt.r, got.Query(), got.Body())
			}
		})
	}
}

// TestWithdrawalOnOrderPath is the attack a trade-only rule must stop:
// Binance does not sign the path, so a signature for /api/v3/order with
// withdrawal parameters is a valid withdrawal. Parse must show them,
// however they are written.
func TestWithdrawalOnOrderPath(t *testing.T) {
	info, _ := Binance.Info()
	if info.SignsPath {
		t.Fatalf("Binance.Info().SignsPath = true; the attack below assumes it is false")
	}
	tests := []struct {
		body  string
		funds []string
	}{
		{"coin=BTC&address=bc1qattacker&amount=1&symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1", []string{"address", "amount"}},
		{"coin=BTC&Address=bc1qattacker&AMOUNT=1", []string{"Address", "AMOUNT"}},
		{"asset=USDT&amount=100&type=MAIN_UMFUTURE", []string{"asset", "amount"}},
		{"toEmail=attacker%40example.com&asset=USDT&amount=1", []string{"toEmail", "asset", "amount"}},
	}
	for _, tt := range tests {
		p, err := Parse(Binance, binancePOST(tt.body))
		if err != nil {
			t.Fatalf("Parse(%q) = %v", tt.body, err)
		}
		if !reflect.DeepEqual(p.FundParams, tt.funds) {
			t.Errorf("Parse(%q).FundParams = %q, want %q", tt.body, p.FundParams, tt.funds)
		}
	}
	// The ways to hide a parameter from the agent are refused.
	for _, body := range []string{
		"symbol=BTCUSDT&%61ddress=bc1q",         // percent-encoded name
		"symbol=BTCUSDT&address=x&address=bc1q", // duplicate
		"symbol=BTCUSDT&address=x&ADDRESS=bc1q", // case-folded duplicate
		"symbol=BTCUSDT;address=bc1q",           // another separator
		"symbol=BTCUSDT&x=1?address=bc1q",       // a second query
		"symbol=BTCUSDT&x=1#&address=bc1q",      // a fragment
	} {
		if p, err := Parse(Binance, binancePOST(body)); err == nil {
			t.Errorf("Parse(%q) = %+v, want it refused", body, p)
		}
	}
}

func TestInfo(t *testing.T) {
	want := map[Exchange]string{Binance: "symbol", Bybit: "symbol", OKX: "instId", Kraken: "pair", Coinbase: "product_id"}
	if got := Exchanges(); len(got) != len(want) {
		t.Errorf("Exchanges() = %v, want %d exchanges", got, len(want))
	}
	for x, sym := range want {
		info, ok := x.Info()
		if !ok || info.SymbolParam != sym || info.Exchange != x {
			t.Errorf("%s.Info() = %+v, %v, want symbol parameter %q", x, info, ok, sym)
		}
		if len(info.FundParams) == 0 || len(info.Docs) == 0 || len(info.KeyTypes) == 0 {
			t.Errorf("%s.Info() = %+v, want fund parameters, docs and key types", x, info)
		}
		for i := 1; i < len(info.FundParams); i++ {
			if info.FundParams[i-1] >= info.FundParams[i] {
				t.Errorf("%s.Info().FundParams = %q, want them sorted", x, info.FundParams)
			}
		}
		if !info.IsFundParam(strings.ToUpper(info.FundParams[0])) {
			t.Errorf("%s.Info().IsFundParam(%q) = false, want true", x, strings.ToUpper(info.FundParams[0]))
		}
	}
	mine, _ := Binance.Info()
	mine.FundParams[0] = "nothing"
	if again, _ := Binance.Info(); again.FundParams[0] == "nothing" {
		t.Errorf("editing the Info Binance.Info() returned changed the package's")
	}
	if _, ok := Exchange("ftx").Info(); ok {
		t.Errorf(`Exchange("ftx").Info() = _, true, want false`)
	}
}
