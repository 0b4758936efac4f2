package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// Public example keys from the exchanges' API documentation.
const (
	binanceKeyID  = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
	binanceSecret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
	krakenSecret  = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
)

// signNow is the agent's clock in these tests.
var signNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// signPolicy grants the test process sign on binance/mm within a trade
// scope, hmac on plain/mac, sign (and nothing else) on kraken/mm, and
// a budget of 3 orders per minute on the Binance key.
func signPolicy() string {
	return fmt.Sprintf(`
[[rule]]
name     = "trade"
secrets  = ["binance/mm", "plain/mac"]
users    = ["%[1]d"]
allow    = ["sign"]
requests = ["POST /api/v3/order", "GET /api/v3/account"]
symbols  = ["BTCUSDT"]

[[rule]]
name    = "mac"
secrets = ["plain/mac"]
users   = ["%[1]d"]
allow   = ["hmac", "get"]

[[rule]]
name     = "kraken"
secrets  = ["kraken/mm"]
users    = ["%[1]d"]
allow    = ["sign"]
requests = ["POST /0/private/AddOrder", "POST /0/private/Balance"]

[[rule]]
name    = "admin"
secrets = ["binance/*", "okx/*"]
users   = ["%[1]d"]
allow   = ["admin", "sign"]
requests = ["GET /api/v5/account/balance"]

[[budget]]
name    = "binance-orders"
secrets = ["binance/**"]
limit   = 3
window  = "1m"
default_weight = 0
weights = { "POST /api/v3/order" = 1 }
`, os.Getuid())
}

func putCredential(t testing.TB, st *store.Store, name string, x exchange.Exchange, keyID, secret string) {
	t.Helper()
	info, err := agent.CheckCredential(string(x), keyID, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), name, []byte(secret), store.PutOptions{Credential: info, NewVersion: true}); err != nil {
		t.Fatal(err)
	}
}

// signAgent runs agent.Run on st with the clock at *now and a captured
// audit trail; stop ends it.
type signAgent struct {
	socket string
	audit  *auditLog
	stop   func()
}

func startSignAgent(t *testing.T, st *store.Store, now *time.Time) *signAgent {
	t.Helper()
	a := &signAgent{socket: filepath.Join(publicDir(t), "agent.sock"), audit: &auditLog{}}
	trail := audit.New(a.audit, nil)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return *now }
	stop := startRun(t, st, signPolicy(), a.socket, agent.RunConfig{Server: agent.Config{Audit: trail, Now: clock}})
	a.stop = func() { stop(); trail.Close(time.Second) }
	t.Cleanup(a.stop)
	return a
}

func dialAgent(t testing.TB, socket string) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSignThroughAgent: what the agent answers is what the exchange
// package signs with the plaintext key, the secret is never revealed
// (get denied, nothing in the audit trail), and each refusal has its code.
func TestSignThroughAgent(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, storetest.NewMemBackend())
	putCredential(t, st, "binance/mm", exchange.Binance, binanceKeyID, binanceSecret)
	if _, err := st.Put(ctx, "plain/mac", []byte("mac-secret"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	now := signNow
	a := startSignAgent(t, st, &now)
	c := dialAgent(t, a.socket)

	order := "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=9000"
	req := client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Body: []byte(order)}
	got, err := c.Sign(ctx, "binance/mm", req)
	if err != nil {
		t.Fatal(err)
	}
	key, err := exchange.NewKey(exchange.Credential{Exchange: exchange.Binance, KeyID: binanceKeyID, Secret: []byte(binanceSecret)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := exchange.Parse(exchange.Binance, &exchange.Request{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Body: []byte(order)})
	if err != nil {
		t.Fatal(err)
	}
	want, err := exchange.Sign(key, parsed, signNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Body, want.Body) || got.Query != string(want.Query) || len(got.Headers) != len(want.Headers) ||
		got.APIKey != binanceKeyID || got.Exchange != "binance" || got.Version != 1 || !got.Expires.Equal(want.Expires) {
		t.Fatalf("agent signed %+v\nwant %+v", got, want)
	}
	for i, h := range want.Headers {
		if got.Headers[i] != (client.Field{Name: h.Name, Value: string(h.Value)}) {
			t.Errorf("header %d = %v, want %s: %s", i, got.Headers[i], h.Name, h.Value)
		}
	}

	// Sign only: the secret itself is never served.
	wantGet(t, c, "binance/mm", 0, "", client.ErrDenied)

	// Describe gives the key id; HMAC on a plain secret.
	if cr, err := c.Describe(ctx, "binance/mm"); err != nil || *cr != (client.Credential{Version: 1, Exchange: "binance", APIKey: binanceKeyID, KeyType: "hmac"}) {
		t.Errorf("Describe = %+v, %v", cr, err)
	}
	mac, err := c.HMAC(ctx, "plain/mac", crypto.SHA256, client.Hex, []byte("message"))
	m := hmac.New(sha256.New, []byte("mac-secret"))
	m.Write([]byte("message"))
	if err != nil || mac != hex.EncodeToString(m.Sum(nil)) {
		t.Errorf("HMAC = %q, %v; want %x", mac, err, m.Sum(nil))
	}

	refusals := []struct {
		what string
		name string
		req  client.SignRequest
		want error
		text string
	}{
		{"a withdrawal", "binance/mm", client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/sapi/v1/capital/withdraw/apply",
			Body: []byte("coin=BTC&address=bc1q&amount=1")}, client.ErrDenied, ""},
		{"withdrawal parameters on the order path", "binance/mm", client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order",
			Body: []byte(order + "&address=bc1q&amount=1")}, client.ErrDenied, ""},
		{"a symbol off the list", "binance/mm", client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order",
			Body: []byte(strings.Replace(order, "BTCUSDT", "ETHUSDT", 1))}, client.ErrDenied, ""},
		{"a duplicate parameter", "binance/mm", client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order",
			Body: []byte(order + "&symbol=BTCUSDT")}, client.ErrBadRequest, "appears twice"},
		{"the agent's own parameter", "binance/mm", client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order",
			Body: []byte(order + "&timestamp=1")}, client.ErrBadRequest, "timestamp"},
		{"a plain secret", "plain/mac", req, client.ErrBadRequest, "not an exchange credential"},
		{"no rule", "kraken/other", req, client.ErrDenied, ""},
		{"no rule, and absent", "nothing/here", req, client.ErrDenied, ""},
		{"a missing credential the caller may sign with", "binance/missing", req, client.ErrNotFound, ""},
		// Refusals quote the request: cut, not an answer too long to send
		// (which stopped the agent) nor 64 KiB in the audit trail.
		{"a 64 KiB query without '='", "binance/mm", client.SignRequest{Method: "GET", Host: "api.binance.com", Path: "/api/v3/account",
			Query: strings.Repeat("q", 64<<10)}, client.ErrBadRequest, "has no '='"},
		{"a 60 KB path", "binance/mm", client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order/" + strings.Repeat("a", 60000),
			Body: []byte(order)}, client.ErrBadRequest, "more than the limit"},
	}
	for _, r := range refusals {
		_, err := c.Sign(ctx, r.name, r.req)
		if !errors.Is(err, r.want) || !strings.Contains(fmt.Sprint(err), r.text) {
			t.Errorf("%s: Sign = %v, want %v with %q", r.what, err, r.want, r.text)
		}
	}

	// The budget: 3 orders a minute on the key (one is spent above).
	for i := range 2 {
		if _, err := c.Sign(ctx, "binance/mm", req); err != nil {
			t.Fatalf("order %d within the budget: %v", i+2, err)
		}
	}
	if _, err := c.Sign(ctx, "binance/mm", req); !errors.Is(err, client.ErrRateLimited) {
		t.Fatalf("4th order in a minute: %v, want rate limited", err)
	}
	if _, err := c.Sign(ctx, "binance/mm", client.SignRequest{Method: "GET", Host: "api.binance.com", Path: "/api/v3/account"}); err != nil {
		t.Fatalf("a request the budget does not count: %v", err)
	}

	// One audit event per signature, with what was signed and never the
	// secret or the signature.
	a.stop()
	signed := 0
	for _, ev := range a.audit.events(t) {
		if ev["op"] != "sign" {
			continue
		}
		if ev["decision"] == "allow" {
			signed++
			if ev["exchange"] != "binance" || ev["method"] == nil || ev["path"] == nil || len(fmt.Sprint(ev["digest"])) != 64 {
				t.Errorf("allowed sign event lacks fields: %v", ev)
			}
		}
	}
	if signed != 4 {
		t.Errorf("%d allowed sign events, want 4 (one per signature)", signed)
	}
	trail := a.audit.String()
	for line := range strings.Lines(trail) {
		if len(line) > 4096 {
			t.Errorf("an audit event of %d bytes: %.300s…", len(line), line)
		}
	}
	sig := got.Query + string(got.Body)
	for _, leak := range []string{binanceSecret, "mac-secret", sig[strings.LastIndex(sig, "signature=")+len("signature="):]} {
		if strings.Contains(trail, leak) {
			t.Errorf("the audit trail holds %q", leak)
		}
	}
	for _, want := range []string{`"params":"price,quantity,side,symbol,timeInForce,type"`, `"path":"/sapi/v1/capital/withdraw/apply"`, `"code":"rate_limited"`} {
		if !strings.Contains(trail, want) {
			t.Errorf("the audit trail lacks %s:\n%s", want, trail)
		}
	}
}

// TestKrakenNoncesAcrossCallersAndRestarts: 32 callers sign Kraken
// requests for one key at once, with the agent's clock standing still (the
// worst case: every nonce comes from the counter). Every nonce is unique,
// each caller's grow, and after a restart at the same clock every nonce is
// above all nonces issued before.
func TestKrakenNoncesAcrossCallersAndRestarts(t *testing.T) {
	st := storetest.NewStore(t, storetest.NewMemBackend())
	putCredential(t, st, "kraken/mm", exchange.Kraken, "kraken-key", krakenSecret)
	now := signNow
	const callers, each = 32, 10

	run := func() []uint64 {
		a := startSignAgent(t, st, &now)
		defer a.stop()
		var mu sync.Mutex
		var all []uint64
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := client.Dial(context.Background(), a.socket)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				var last uint64
				for range each {
					s, err := c.Sign(context.Background(), "kraken/mm", client.SignRequest{Method: "POST", Host: "api.kraken.com",
						Path: "/0/private/AddOrder", Body: []byte("ordertype=limit&type=buy&volume=1&pair=XBTUSD&price=37500")})
					if err != nil {
						t.Error(err)
						return
					}
					form, err := url.ParseQuery(string(s.Body))
					n, perr := strconv.ParseUint(form.Get("nonce"), 10, 64)
					if err != nil || perr != nil || n <= last {
						t.Errorf("nonce %q after %d (%v %v)", form.Get("nonce"), last, err, perr)
						return
					}
					last = n
					mu.Lock()
					all = append(all, n)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return all
	}
	first := run()
	second := run()
	if len(first) != callers*each || len(second) != callers*each {
		t.Fatalf("got %d and %d nonces, want %d each", len(first), len(second), callers*each)
	}
	all := append(slices.Clone(first), second...)
	slices.Sort(all)
	if len(slices.Compact(all)) != 2*callers*each {
		t.Error("a nonce was issued twice")
	}
	if slices.Min(second) <= slices.Max(first) {
		t.Errorf("after the restart, nonce %d is not above %d issued before", slices.Min(second), slices.Max(first))
	}
	// With the clock still, the counter alone moves: consecutive values,
	// the mark written once a minute of nonces, not at every signature.
	if spread := slices.Max(first) - slices.Min(first); spread != callers*each-1 {
		t.Errorf("first run's nonces span %d, want %d consecutive values", spread+1, callers*each)
	}
	if slices.Min(first) < uint64(signNow.UnixMilli()) {
		t.Errorf("nonce %d is below the time in milliseconds, %d", slices.Min(first), signNow.UnixMilli())
	}
}

// TestPutCredentialThroughAgent: the agent checks a credential before it
// stores it, and a credential's kind stays across rotations.
func TestPutCredentialThroughAgent(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, storetest.NewMemBackend())
	now := time.Now()
	a := startSignAgent(t, st, &now)
	c := dialAgent(t, a.socket)

	_, err := c.PutCredential(ctx, "okx/mm", "okx", "okx-key", []byte("secret-without-passphrase"), client.PutOptions{})
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("okx credential without a passphrase: %v", err)
	}
	_, err = c.PutCredential(ctx, "binance/mm", "bitmex", "k", []byte("s"), client.PutOptions{})
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "does not sign for") {
		t.Fatalf("unknown exchange: %v", err)
	}
	if names, _, _ := st.Secrets(); len(names) != 0 {
		t.Fatalf("refused credentials were stored: %v", names)
	}
	if s, err := c.PutCredential(ctx, "okx/mm", "okx", "okx-key", []byte("OKXSECRET\npass phrase"), client.PutOptions{}); err != nil || s.Version != 1 {
		t.Fatalf("PutCredential = %+v, %v", s, err)
	}
	if cr, err := c.Describe(ctx, "okx/mm"); err != nil || cr.APIKey != "okx-key" || cr.Exchange != "okx" {
		t.Fatalf("Describe = %+v, %v", cr, err)
	}
	s, err := c.Sign(ctx, "okx/mm", client.SignRequest{Method: "GET", Host: "www.okx.com", Path: "/api/v5/account/balance"})
	if err != nil || !slices.ContainsFunc(s.Headers, func(f client.Field) bool { return f.Name == "OK-ACCESS-PASSPHRASE" && f.Value == "pass phrase" }) {
		t.Fatalf("OKX sign = %+v, %v", s, err)
	}
	_, err = c.Put(ctx, "okx/mm", []byte("plain"), client.PutOptions{NewVersion: true})
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "--exchange okx") {
		t.Fatalf("a plain new version of a credential: %v", err)
	}
}

// TestSignTransport: a Go bot signs by using an http.Client: the request
// that reaches the server carries the agent's headers and signed body; a
// request the policy refuses never leaves.
func TestSignTransport(t *testing.T) {
	st := storetest.NewStore(t, storetest.NewMemBackend())
	putCredential(t, st, "binance/mm", exchange.Binance, binanceKeyID, binanceSecret)
	now := signNow
	a := startSignAgent(t, st, &now)
	c := dialAgent(t, a.socket)

	var received []*http.Request
	var bodies []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := new(bytes.Buffer)
		buf.ReadFrom(r.Body)
		received = append(received, r)
		bodies = append(bodies, buf.String())
		fmt.Fprint(w, "{}")
	}))
	defer srv.Close()
	hc := &http.Client{Transport: &client.Transport{Client: c, Name: "binance/mm", Base: srv.Client().Transport}}
	u := srv.URL + "/api/v3/order"
	resp, err := hc.Post(u, "application/x-www-form-urlencoded", strings.NewReader("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(received) != 1 || received[0].Header.Get("X-MBX-APIKEY") != binanceKeyID ||
		!strings.Contains(bodies[0], "timestamp=") || !strings.Contains(bodies[0], "&signature=") {
		t.Fatalf("server received %d requests: %v %q", len(received), received, bodies)
	}
	_, err = hc.Post(u, "application/x-www-form-urlencoded", strings.NewReader("symbol=BTCUSDT&address=bc1q&amount=1"))
	if !errors.Is(err, client.ErrDenied) || len(received) != 1 {
		t.Fatalf("a refused request: %v; server received %d", err, len(received))
	}
}
