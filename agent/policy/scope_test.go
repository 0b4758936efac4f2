package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/exchange"
)

var signPolicy = `
[[rule]]
name     = "trade"
secrets  = ["binance/mm"]
users    = ["1001"]
allow    = ["sign"]
requests = ["POST /api/v3/order", "DELETE /api/v3/order", "GET /api/v3/account"]
symbols  = ["BTCUSDT", "ETHUSDT"]

[[rule]]
name     = "cancel-only"
secrets  = ["binance/mm"]
users    = ["1002"]
allow    = ["sign"]
requests = ["DELETE /api/v3/order", "DELETE /api/v3/openOrders"]

[[rule]]
name     = "read-only"
secrets  = ["binance/**", "okx/**"]
users    = ["1003"]
allow    = ["sign"]
requests = ["GET /**"]

[[rule]]
name     = "listed-params"
secrets  = ["binance/mm"]
users    = ["1004"]
allow    = ["sign"]
requests = ["POST /api/v3/order"]
params   = ["symbol", "side", "type", "quantity", "price", "timeInForce"]
hosts    = ["testnet.binance.vision"]

[[rule]]
name     = "withdraw"
secrets  = ["binance/treasury"]
users    = ["1005"]
allow    = ["sign"]
requests = ["POST /sapi/v1/capital/withdraw/apply"]
params   = ["coin", "address", "amount", "network"]

[[rule]]
name     = "coinbase-scoped"
secrets  = ["coinbase/mm"]
users    = ["1006"]
allow    = ["sign"]
requests = ["POST /api/v3/brokerage/orders"]
symbols  = ["BTC-USD"]

[[rule]]
name     = "ws"
secrets  = ["binance/mm"]
users    = ["1007"]
allow    = ["sign", "hmac"]
requests = ["WS session.logon"]

[[rule]]
name    = "reader"
secrets = ["binance/mm"]
users   = ["1001"]
allow   = ["get"]
`

// signReq is a request to a policy test: who asks, and what.
type signReq struct {
	uid    uint32
	secret string
	x      exchange.Exchange
	req    exchange.Request
}

func post(path, body string) exchange.Request {
	return exchange.Request{Method: "POST", Host: "api.binance.com", Path: path, Body: []byte(body)}
}

func TestDecideSign(t *testing.T) {
	pol := mustParse(t, signPolicy)
	order := "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=60000&timeInForce=GTC"
	cases := []struct {
		name string
		r    signReq
		rule string // "" means denied
		why  string // in the denial's reason
	}{
		{"trade places an order", signReq{1001, "binance/mm", exchange.Binance, post("/api/v3/order", order)}, "trade", ""},
		{"trade on another symbol", signReq{1001, "binance/mm", exchange.Binance, post("/api/v3/order", strings.Replace(order, "BTCUSDT", "DOGEUSDT", 1))},
			"", `symbol "DOGEUSDT" is not in symbols`},
		{"trade reads the account", signReq{1001, "binance/mm", exchange.Binance, exchange.Request{Method: "GET", Host: "api.binance.com", Path: "/api/v3/account"}}, "trade", ""},
		{"trade cannot sign another path", signReq{1001, "binance/mm", exchange.Binance, post("/sapi/v1/margin/order", order)},
			"", "POST /sapi/v1/margin/order is not in requests"},
		{"cancel-only cancels", signReq{1002, "binance/mm", exchange.Binance, exchange.Request{Method: "DELETE", Host: "api.binance.com", Path: "/api/v3/order", Query: "symbol=BTCUSDT&orderId=7"}}, "cancel-only", ""},
		{"cancel-only cannot place an order", signReq{1002, "binance/mm", exchange.Binance, post("/api/v3/order", order)},
			"", "POST /api/v3/order is not in requests"},
		{"read-only reads", signReq{1003, "binance/mm", exchange.Binance, exchange.Request{Method: "GET", Host: "api.binance.com", Path: "/api/v3/openOrders", Query: "symbol=BTCUSDT"}}, "read-only", ""},
		{"read-only cannot sign a POST", signReq{1003, "binance/mm", exchange.Binance, post("/api/v3/order", order)},
			"", "POST /api/v3/order is not in requests"},
		{"read-only okx", signReq{1003, "okx/mm", exchange.OKX, exchange.Request{Method: "GET", Host: "www.okx.com", Path: "/api/v5/account/balance"}}, "read-only", ""},
		{"listed params", signReq{1004, "binance/mm", exchange.Binance, exchange.Request{Method: "POST", Host: "testnet.binance.vision", Path: "/api/v3/order", Body: []byte(order)}}, "listed-params", ""},
		{"unlisted param", signReq{1004, "binance/mm", exchange.Binance, exchange.Request{Method: "POST", Host: "testnet.binance.vision", Path: "/api/v3/order", Body: []byte(order + "&newClientOrderId=x")}},
			"", `parameter "newClientOrderId" is not in params`},
		{"other host", signReq{1004, "binance/mm", exchange.Binance, post("/api/v3/order", order)},
			"", `host "api.binance.com" is not in hosts`},
		{"withdrawal by the rule that names it", signReq{1005, "binance/treasury", exchange.Binance, post("/sapi/v1/capital/withdraw/apply", "coin=BTC&address=bc1qxyz&amount=1&network=BTC")}, "withdraw", ""},
		{"coinbase cannot enforce symbols", signReq{1006, "coinbase/mm", exchange.Coinbase, exchange.Request{Method: "POST", Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders", Body: []byte(`{"product_id":"BTC-USD"}`)}},
			"", "does not cover the parameters"},
		{"ws logon", signReq{1007, "binance/mm", exchange.Binance, exchange.Request{Method: "WS", Host: "ws-api.binance.com", Path: "session.logon"}}, "ws", ""},
		{"ws rule cannot sign REST", signReq{1007, "binance/mm", exchange.Binance, post("/api/v3/order", order)}, "", "is not in requests"},
		{"a get rule grants no sign", signReq{1001, "binance/other", exchange.Binance, post("/api/v3/order", order)}, "", `no rule grants sign on "binance/other"`},
		{"stranger", signReq{4242, "binance/mm", exchange.Binance, post("/api/v3/order", order)}, "", "no rule grants sign"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := exchange.Parse(tc.r.x, &tc.r.req)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			d := pol.DecideSign(&fakeCaller{uid: tc.r.uid}, tc.r.secret, p)
			if d.Allowed != (tc.rule != "") || d.Rule != tc.rule {
				t.Fatalf("DecideSign = %+v, want rule %q", d, tc.rule)
			}
			if !strings.Contains(d.Reason, tc.why) {
				t.Errorf("reason %q does not say %q", d.Reason, tc.why)
			}
		})
	}
}

// TestTradeRuleCannotWithdraw is the table of tricks for getting a
// withdrawal signed by a rule that grants orders only. Each must be
// refused by the parser or by the policy; none may be signed.
func TestTradeRuleCannotWithdraw(t *testing.T) {
	pol := mustParse(t, signPolicy)
	trader := &fakeCaller{uid: 1001}
	withdrawal := "coin=BTC&address=bc1qxyz&amount=1&network=BTC"
	order := "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1"
	tricks := []struct {
		name string
		req  exchange.Request
	}{
		{"withdrawal parameters on the order path", post("/api/v3/order", order+"&"+withdrawal)},
		{"withdrawal parameters in a batch item", post("/api/v3/order", order+`&batchOrders=[{"symbol":"BTCUSDT","address":"bc1qxyz"}]`)},
		{"the withdrawal path", post("/sapi/v1/capital/withdraw/apply", withdrawal)},
		{"dot-dot to the withdrawal path", post("/api/v3/../../sapi/v1/capital/withdraw/apply", withdrawal)},
		{"dot segment", post("/api/v3/./order", order)},
		{"percent-encoded path", post("/api/v3/%6Frder", order)},
		{"percent-encoded parameter name", post("/api/v3/order", order+"&%61ddress=bc1qxyz&amount=1")},
		{"duplicate parameter", post("/api/v3/order", order+"&symbol=BTCUSDT")},
		{"case-folded parameter", post("/api/v3/order", order+"&Address=bc1qxyz")},
		{"case-folded duplicate", post("/api/v3/order", order+"&SYMBOL=DOGEUSDT")},
		{"second question mark", exchange.Request{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Query: order + "?address=bc1qxyz"}},
		{"question mark in the path", post("/api/v3/order?address=bc1qxyz", order)},
		{"semicolon separator", post("/api/v3/order", order+";address=bc1qxyz")},
		{"fragment", post("/api/v3/order", order+"#&address=bc1qxyz")},
		{"plus in a value", post("/api/v3/order", strings.Replace(order, "BUY", "BUY+", 1))},
		{"split between query and body", exchange.Request{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Query: order, Body: []byte("address=bc1qxyz&amount=1")}},
		{"backslash in the path", post(`/api/v3\order`, order)},
		{"empty segment", post("/api/v3//order", order)},
		{"symbol off the list", post("/api/v3/order", strings.Replace(order, "BTCUSDT", "BTCUSDC", 1))},
	}
	for _, tc := range tricks {
		t.Run(tc.name, func(t *testing.T) {
			p, err := exchange.Parse(exchange.Binance, &tc.req)
			if err != nil {
				var re *exchange.RequestError
				if !errors.As(err, &re) {
					t.Fatalf("Parse error %v is not a RequestError", err)
				}
				return // refused before policy
			}
			if d := pol.DecideSign(trader, "binance/mm", p); d.Allowed {
				t.Fatalf("signed by rule %q: %+v", d.Rule, p)
			}
		})
	}
}

func TestSignRuleErrors(t *testing.T) {
	rule := func(extra string) string {
		return "[[rule]]\nname = \"r\"\nsecrets = [\"x/y\"]\nusers = [\"1001\"]\n" + extra
	}
	cases := []struct{ src, want string }{
		{rule(`allow = ["sign"]`), "needs requests"},
		{rule("allow = [\"sign\"]\nrequests = []"), "needs requests"},
		{rule("allow = [\"get\"]\nrequests = [\"GET /x\"]"), "requests applies to sign only"},
		{rule("allow = [\"hmac\"]\nsymbols = [\"BTCUSDT\"]"), "symbols applies to sign only"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET x\"]"), "must start with '/'"},
		{rule("allow = [\"sign\"]\nrequests = [\"FETCH /x\"]"), "is not METHOD PATH"},
		{rule("allow = [\"sign\"]\nrequests = [\"get /x\"]"), "is not METHOD PATH"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /a/**/b\"]"), "** may only be the last segment"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /a/../b\"]"), `".." segments`},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /a//b\"]"), "empty path segment"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /a?b\"]"), "cannot be in a pattern"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /a%2fb\"]"), "cannot be in a pattern"},
		{rule("allow = [\"sign\"]\nrequests = [\"WS a/b\"]"), "not a path"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /x\"]\nparams = []"), "params is empty"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /x\"]\nparams = [\"a b\"]"), "not a parameter name"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /x\"]\nhosts = [\"API.binance.com\"]"), "lower case"},
		{rule("allow = [\"sign\"]\nrequests = [\"GET /x\"]\nsymbols = [\"BTC USDT\"]"), "is not a symbol"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestRequestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, method, path string
		want                  bool
	}{
		{"POST /api/v3/order", "POST", "/api/v3/order", true},
		{"POST /api/v3/order", "GET", "/api/v3/order", false},
		{"POST /api/v3/order", "POST", "/api/v3/order/test", false},
		{"POST /api/v3/order", "POST", "/api/v3/orderx", false},
		{"GET /api/v3/*", "GET", "/api/v3/account", true},
		{"GET /api/v3/*", "GET", "/api/v3/order/oco", false},
		{"GET /api/**", "GET", "/api/v3/order/oco", true},
		{"GET /api/**", "GET", "/api", false},
		{"GET /**", "GET", "/sapi/v1/capital/config/getall", true},
		{"GET /api/v3/open*", "GET", "/api/v3/openOrders", true},
		{"WS session.logon", "WS", "session.logon", true},
		{"WS order.*", "WS", "order.place", true},
		{"WS order.*", "WS", "session.logon", false},
	}
	for _, tc := range cases {
		p, err := compileRequest(tc.pattern)
		if err != nil {
			t.Fatalf("compileRequest(%q): %v", tc.pattern, err)
		}
		if got := p.match(tc.method, tc.path); got != tc.want {
			t.Errorf("%q matches %s %s = %v, want %v", tc.pattern, tc.method, tc.path, got, tc.want)
		}
	}
}

func TestExplainSign(t *testing.T) {
	pol := mustParse(t, signPolicy)
	req := post("/sapi/v1/capital/withdraw/apply", "coin=BTC&address=bc1qxyz&amount=1&network=BTC")
	p, err := exchange.Parse(exchange.Binance, &req)
	if err != nil {
		t.Fatal(err)
	}
	d, lines := pol.ExplainSign(&fakeCaller{uid: 1001}, "binance/mm", p)
	if d.Allowed {
		t.Fatalf("allowed: %+v", d)
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"rule trade: POST /sapi/v1/capital/withdraw/apply is not in requests",
		"rule cancel-only: uid 1001 is not in users [1002]",
		"rule reader: grants get, not sign",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}
	order := post("/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1")
	p, _ = exchange.Parse(exchange.Binance, &order)
	d, lines = pol.ExplainSign(&fakeCaller{uid: 1001}, "binance/mm", p)
	if !d.Allowed || !strings.Contains(strings.Join(lines, "\n"), "rule trade: grants sign of POST /api/v3/order on binance/mm to this caller: this rule decides") {
		t.Errorf("ExplainSign = %+v\n%s", d, strings.Join(lines, "\n"))
	}
}

var budgetPolicy = signPolicy + `
[[budget]]
name    = "binance-weight"
secrets = ["binance/**"]
limit   = 100
window  = "1m"
weights = { "GET /api/v3/account" = 20, "GET /api/v3/*" = 2, "DELETE /api/v3/openOrders" = 0 }

[[budget]]
name           = "binance-orders"
secrets        = ["binance/mm"]
limit          = 3
window         = "10s"
default_weight = 0
weights        = { "POST /api/v3/order" = 1 }
`

func TestCharge(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	pol := mustParse(t, budgetPolicy)
	pol.now = func() time.Time { return now }
	const key = "binance AbC"
	charge := func(secret, method, path string) string {
		over, _ := pol.Charge(secret, key, method, path)
		return over
	}
	for i := range 5 { // 5×20 of the 100 per minute
		if over := charge("binance/mm", "GET", "/api/v3/account"); over != "" {
			t.Fatalf("account read %d: over %s", i, over)
		}
	}
	if over := charge("binance/mm", "GET", "/api/v3/openOrders"); over != "binance-weight" {
		t.Fatalf("over the weight: %q, want binance-weight", over)
	}
	if over := charge("binance/mm", "DELETE", "/api/v3/openOrders"); over != "" {
		t.Fatalf("a weight of 0 is not counted, got over %q", over)
	}
	if over := charge("okx/mm", "GET", "/api/v3/account"); over != "" {
		t.Fatalf("okx/mm is in no budget, got over %q", over)
	}

	// Another secret holding the same key shares its buckets; another key
	// does not.
	if over := charge("binance/other", "GET", "/api/v3/time"); over != "binance-weight" {
		t.Fatalf("same key under another name: over %q, want binance-weight", over)
	}
	if over, _ := pol.Charge("binance/mm", "binance Other", "GET", "/api/v3/account"); over != "" {
		t.Fatalf("another key: over %q", over)
	}

	now = now.Add(30 * time.Second) // 50 back
	for i := range 2 {
		if over := charge("binance/mm", "GET", "/api/v3/account"); over != "" {
			t.Fatalf("after 30s, read %d: over %s", i, over)
		}
	}

	// The orders budget counts only orders, 3 per 10 s.
	for i := range 3 {
		if over := charge("binance/mm", "POST", "/api/v3/order"); over != "" {
			t.Fatalf("order %d: over %s", i, over)
		}
	}
	if over := charge("binance/mm", "POST", "/api/v3/order"); over != "binance-orders" {
		t.Fatalf("4th order: over %q, want binance-orders", over)
	}

	// A reload with the same budgets keeps what was spent.
	next := mustParse(t, budgetPolicy)
	next.now = pol.now
	next.Inherit(pol)
	if over, _ := next.Charge("binance/mm", key, "POST", "/api/v3/order"); over != "binance-orders" {
		t.Fatalf("after a reload: over %q, want binance-orders", over)
	}
	fresh := mustParse(t, strings.Replace(budgetPolicy, "limit          = 3", "limit          = 4", 1))
	fresh.now = pol.now
	fresh.Inherit(pol)
	if over, _ := fresh.Charge("binance/mm", key, "POST", "/api/v3/order"); over != "" {
		t.Fatalf("a changed limit starts afresh, got over %q", over)
	}
}

func TestBudgetErrors(t *testing.T) {
	base := "[[budget]]\nname = \"b\"\nsecrets = [\"x/*\"]\n"
	cases := []struct{ src, want string }{
		{base + "limit = 10\n", `window "" is not a duration`},
		{base + "limit = 10\nwindow = \"0s\"\n", "is not a duration from 1s"},
		{base + "window = \"1m\"\n", "limit is 0"},
		{base + "limit = 10\nwindow = \"1m\"\nweights = { \"GET x\" = 1 }\n", "must start with '/'"},
		{base + "limit = 10\nwindow = \"1m\"\nweights = { \"GET /x\" = 11 }\n", "weighs 11"},
		{base + "limit = 10\nwindow = \"1m\"\ndefault_weight = -1\n", "default_weight is -1"},
		{base + "limit = 10\nwindow = \"1m\"\nrate = 1\n", `unknown key "rate"`},
		{"[[budget]]\nname = \"b\"\nlimit = 10\nwindow = \"1m\"\n", "secrets is missing"},
		{base + "limit = 10\nwindow = \"1m\"\n" + base + "limit = 10\nwindow = \"1m\"\n", "already used"},
		{"[budget]\nname = \"b\"\n", "write each budget as [[budget]]"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
}
