package client_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// The Python and Node.js clients (python/, js/) are tested here against a
// real agent: an agent.Server in this process, on a store sealed by a
// SoftHSM token (reached through the fault-injecting PKCS #11 shim, so
// that a backend outage is real), a real policy and a real Unix socket.
// The language's own test suite runs as a child process with
// KEYWARD_SOCKET set, and fails this test when it fails.
//
// The suites steer the agent through a control socket
// (KEYWARD_TEST_CONTROL), one command a line, one answer a line ("ok" and
// details, or "error: ..."): restart the agent, rotate a secret, switch
// the policy, cause a backend outage, pin the agent's clock. The clock is
// a test hook of agent.Config (Now), not of the keyward binary, so that no
// configuration can move a production agent's clock.

// langSecrets are the plain secrets every suite finds, as version 1.
var langSecrets = map[string]string{
	"app/plain":    "plain-value-v1",
	"app/rotating": "rotating@v1",
	"app/retired":  "retired@v1",
	"app/damaged":  "damaged@v1",
	"app/stale":    "stale@v1",
	"limited/one":  "limited@v1",
	"other/hidden": "hidden@v1",
}

// langSignRules grant sign on the credentials of langCredentials, for
// the requests the suites make (orders, cancels, balances, open orders,
// WebSocket logins) and no withdrawal; and hmac on the plain secrets of
// exchanges without a scheme. %[1]d is the test's uid.
const langSignRules = `
[[rule]]
name = "binance"
secrets = ["binance/*"]
users = ["%[1]d"]
allow = ["sign"]
requests = ["GET /api/v3/account", "POST /api/v3/order", "DELETE /api/v3/order", "GET /api/v3/openOrders",
	"POST /fapi/v1/order", "GET /fapi/v2/balance", "DELETE /fapi/v1/order",
	"WS userDataStream.subscribe.signature", "WS session.logon"]

[[rule]]
name = "bybit"
secrets = ["bybit/*"]
users = ["%[1]d"]
allow = ["sign"]
requests = ["GET /v5/account/wallet-balance", "POST /v5/order/create", "POST /v5/order/cancel", "GET /v5/order/realtime", "WS login"]

[[rule]]
name = "okx"
secrets = ["okx/*"]
users = ["%[1]d"]
allow = ["sign"]
requests = ["GET /api/v5/account/balance", "POST /api/v5/trade/order", "POST /api/v5/trade/cancel-order",
	"GET /api/v5/trade/orders-pending", "POST /api/v5/trade/batch-orders", "WS login"]

[[rule]]
name = "kraken"
secrets = ["kraken/*"]
users = ["%[1]d"]
allow = ["sign"]
requests = ["POST /0/private/Balance", "POST /0/private/AddOrder", "POST /0/private/CancelOrder",
	"POST /0/private/OpenOrders", "POST /0/private/AddOrderBatch", "POST /0/private/GetWebSocketsToken"]

[[rule]]
name = "coinbase"
secrets = ["coinbase/*"]
users = ["%[1]d"]
allow = ["sign"]
requests = ["GET /api/v3/brokerage/accounts", "POST /api/v3/brokerage/orders", "POST /api/v3/brokerage/orders/batch_cancel",
	"GET /api/v3/brokerage/orders/historical/batch", "WS login"]

[[rule]]
name = "generic"
secrets = ["generic/*"]
users = ["%[1]d"]
allow = ["hmac"]
`

// langPolicies are the policies the suites switch between; the first
// one, "default", is in force at start. %[1]d is the test's uid.
var langPolicies = map[string]string{
	"default": langSignRules + `
[[rule]]
name = "apps"
secrets = ["app/*"]
users = ["%[1]d"]
allow = ["get", "list", "watch"]

[[rule]]
name = "limited"
secrets = ["limited/*"]
users = ["%[1]d"]
allow = ["get"]
rate = 1.0
burst = 1
`,
	// The watch permission revoked.
	"revoked": langSignRules + `
[[rule]]
name = "apps"
secrets = ["app/*"]
users = ["%[1]d"]
allow = ["get", "list"]
`,
}

// A langCredential is an exchange API credential of the suites. The agent
// stores it; the suites read it from the file KEYWARD_TEST_CREDENTIALS
// names, for the plain-ccxt side of their differential tests. Test keys,
// made here.
type langCredential struct {
	Exchange string `json:"exchange"` // an exchange the agent signs for, or the ccxt id of another
	APIKey   string `json:"apiKey"`
	Secret   string `json:"secret"`
	Password string `json:"password,omitempty"`
	KeyType  string `json:"keyType,omitempty"` // empty: a plain secret, for the hmac operation
}

// langCredentials makes one credential of each exchange and key type the
// agent signs with, and two plain secrets of exchanges it does not.
func langCredentials(t *testing.T) map[string]langCredential {
	t.Helper()
	seed := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	pemOf := func(typ string, der []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed("keyward binance ed25519")))
	ed := pemOf("PRIVATE KEY", edDER, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rk)
	rsaPEM := pemOf("PRIVATE KEY", rsaDER, err)
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed("keyward coinbase ecdsa"))
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	ecPEM := pemOf("EC PRIVATE KEY", ecDER, err)
	cbEd := base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed("keyward coinbase ed25519")))
	const cbName = "organizations/3f2a3b4c-0000-4000-8000-000000000001/apiKeys/9d8e7f6a-0000-4000-8000-000000000002"
	return map[string]langCredential{
		"binance/hmac":     {"binance", "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j", "", "hmac"},
		"binance/ed25519":  {"binance", "4yNzx3yWC5bS6YTwEkSRaC0nRmSQIIStAUOh1b6kqaBrTLIhjCpI5lJH8q8R8WNO", ed, "", "ed25519"},
		"binance/rsa":      {"binance", "CAvIjXy3F44yW6Pou5k8Dy1swsYDWJZLeoK2r8G4cFDnE9nosRppc2eKc1T8TRTQ", rsaPEM, "", "rsa"},
		"bybit/hmac":       {"bybit", "XXXXXXXXXXXXXXXXXX", "YYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY", "", "hmac"},
		"bybit/rsa":        {"bybit", "bybitRSAkey0001", rsaPEM, "", "rsa"},
		"okx/main":         {"okx", "985d5b66-57ce-40fb-b714-afc0b9787083", "9B8F1B8A0C8A4D7E8F6A5B4C3D2E1F00", "Pass-phrase.1", "hmac"},
		"kraken/main":      {"kraken", "krakenPublicKey+abc/def=", "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==", "", "hmac"},
		"coinbase/ecdsa":   {"coinbase", cbName, ecPEM, "", "ecdsa-p256"},
		"coinbase/ed25519": {"coinbase", "9d8e7f6a-0000-4000-8000-000000000003", cbEd, "", "ed25519"},
		"generic/kucoin":   {"kucoin", "6512a0f4c1b2d30001a2b3c4", "7a2b3c4d-0000-4e5f-8a9b-0123456789ab", "kucoin-pass", ""},
		"generic/gate":     {"gate", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", ""},
	}
}

// putCredentials stores creds and writes them to a file only this user may
// read, whose path it returns.
func putCredentials(t *testing.T, st *store.Store, creds map[string]langCredential) string {
	t.Helper()
	ctx := context.Background()
	for name, c := range creds {
		value, opts := []byte(c.Secret), store.PutOptions{}
		if c.KeyType != "" {
			opts.Credential = &store.CredentialInfo{Exchange: c.Exchange, KeyID: c.APIKey, KeyType: c.KeyType}
			if c.Password != "" {
				value = []byte(c.Secret + "\n" + c.Password)
			}
		}
		if _, err := st.Put(ctx, name, value, opts); err != nil {
			t.Fatalf("Put(%q) = %v", name, err)
		}
	}
	b, err := json.Marshal(creds)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// langAgent is the agent a language suite runs against.
type langAgent struct {
	t      *testing.T
	st     *store.Store
	token  *hsm.Token
	fault  *testenv.FaultPKCS11
	socket string
	// credentials is the file of langCredentials the suites read.
	credentials string
	policies    map[string]*policy.Policy
	clock       atomic.Int64 // Unix milliseconds the agent's clock is pinned to; 0: real time

	mu    sync.Mutex // guards what follows, and serialises control commands
	pol   *policy.Policy
	srv   *agent.Server
	cache *agent.Cache // what srv serves
	done  chan error
}

func startLangAgent(t *testing.T) *langAgent {
	t.Helper()
	soft := testenv.SoftHSM(t)
	fault := testenv.FaultModule(t, soft)
	if fault == nil {
		return nil
	}
	uri, err := hsm.ParseURI(fault.URI("kek"))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := hsm.Init(hsm.Config{URI: uri, PIN: soft.PIN})
	if err != nil {
		t.Fatalf("hsm.Init() = %v", err)
	}
	t.Cleanup(func() { b.Close() })
	st := storetest.NewStore(t, b)
	ctx := context.Background()
	for name, value := range langSecrets {
		if _, err := st.Put(ctx, name, []byte(value), store.PutOptions{}); err != nil {
			t.Fatalf("Put(%q) = %v", name, err)
		}
	}
	// app/retired: version 1 retired at once by version 2.
	if _, err := st.Put(ctx, "app/retired", []byte("retired@v2"), store.PutOptions{NewVersion: true}); err != nil {
		t.Fatal(err)
	}
	// app/damaged: its only envelope does not verify.
	path, err := st.Path("app/damaged", 1)
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env[len(env)-1] ^= 0x55
	if err := os.WriteFile(path, env, 0o600); err != nil {
		t.Fatal(err)
	}

	a := &langAgent{t: t, st: st, token: b, fault: fault, socket: filepath.Join(t.TempDir(), "agent.sock"),
		policies: map[string]*policy.Policy{}, credentials: putCredentials(t, st, langCredentials(t))}
	for name, text := range langPolicies {
		p, err := policy.Parse([]byte(fmt.Sprintf(text, os.Getuid())))
		if err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		a.policies[name] = p
	}
	a.pol = a.policies["default"]
	if err := a.start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.stop()
	})
	return a
}

func (a *langAgent) now() time.Time {
	if ms := a.clock.Load(); ms != 0 {
		return time.UnixMilli(ms)
	}
	return time.Now()
}

// start loads the store (keeping what prev holds when the backend fails)
// and serves it. The caller holds a.mu, or is startLangAgent.
func (a *langAgent) start(prev *agent.Cache) error {
	cache, _, err := agent.LoadCache(context.Background(), a.st, prev)
	if err != nil {
		return err
	}
	srv, err := agent.New(agent.Config{Policy: a.pol, Store: a.st, Backend: "pkcs11", Agent: "keyward test",
		Logger: slog.New(slog.DiscardHandler), Now: a.now})
	if err != nil {
		return err
	}
	srv.SetCache(cache)
	l, err := agent.Listen(agent.ListenConfig{Path: a.socket, GID: -1})
	if err != nil {
		srv.Close()
		return err
	}
	a.srv, a.cache, a.done = srv, cache, make(chan error, 1)
	go func() { a.done <- srv.Serve(l) }()
	return nil
}

// stop shuts the agent down, closing every connection. The caller holds a.mu.
func (a *langAgent) stop() {
	if a.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
	<-a.done
	a.srv.Close()
	a.srv, a.cache = nil, nil
}

// command runs one control command and returns its answer's details.
func (a *langAgent) command(line string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx := context.Background()
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", errors.New("empty command")
	}
	switch {
	case f[0] == "restart" && len(f) == 1:
		a.stop()
		return "", a.start(nil)
	case f[0] == "stop" && len(f) == 1:
		a.stop()
		return "", nil
	case f[0] == "start" && len(f) == 1:
		if a.srv != nil {
			return "", errors.New("the agent is running")
		}
		return "", a.start(nil)
	case f[0] == "policy" && len(f) == 2:
		p := a.policies[f[1]]
		if p == nil {
			return "", fmt.Errorf("no policy %q", f[1])
		}
		a.pol = p
		if a.srv != nil {
			a.srv.SetPolicy(p)
		}
		return "", nil
	case f[0] == "rotate" && len(f) == 2:
		// A new version, the previous one served for an hour more, and
		// the agent told, as keyward rotate does.
		v, err := a.rotate(ctx, f[1], time.Hour)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(int(v)), a.reload(false)
	case f[0] == "outage" && len(f) == 2:
		// A rotation that retires the previous version at once, then a
		// reload while the backend fails: the agent holds nothing it may
		// serve for the name, and answers unavailable.
		v, err := a.rotate(ctx, f[1], 0)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(int(v)), a.reload(true)
	case f[0] == "clock" && len(f) == 2:
		if f[1] == "now" {
			a.clock.Store(0)
			return "", nil
		}
		ms, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || ms <= 0 {
			return "", fmt.Errorf("clock %q: want Unix milliseconds or now", f[1])
		}
		a.clock.Store(ms)
		return "", nil
	}
	return "", fmt.Errorf("unknown command %q", line)
}

func (a *langAgent) rotate(ctx context.Context, name string, grace time.Duration) (uint32, error) {
	envs, _, err := a.st.List()
	if err != nil {
		return 0, err
	}
	next := uint32(1)
	for _, e := range envs {
		if e.Name == name {
			next = max(next, e.Version+1)
		}
	}
	return a.st.Put(ctx, name, fmt.Appendf(nil, "%s@v%d", strings.TrimPrefix(name, "app/"), next),
		store.PutOptions{NewVersion: true, Grace: grace})
}

// reload re-reads the store into the running agent, with the backend
// failing every cryptographic call while it does when outage is set.
func (a *langAgent) reload(outage bool) error {
	if a.srv == nil {
		return nil
	}
	if outage {
		a.fault.Set(testenv.FaultDeviceError)
	}
	cache, _, err := agent.LoadCache(context.Background(), a.st, a.cache)
	if outage {
		a.fault.Set(testenv.FaultPass)
		err = errors.Join(err, a.recovered())
	}
	if err != nil {
		return err
	}
	a.srv.SetCache(cache)
	a.cache = cache
	return nil
}

// recovered waits for the token to come back after an outage, as the
// agent's health check would bring it back, so that what follows (a
// restart) finds it working.
func (a *langAgent) recovered() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		err := a.token.Healthy(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveControl answers control commands on a socket until the test ends.
func (a *langAgent) serveControl(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "control.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					detail, err := a.command(sc.Text())
					answer := strings.TrimSpace("ok " + detail)
					if err != nil {
						answer = "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
					}
					if _, err := fmt.Fprintln(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return path
}

// runSuite runs a language's test suite, as a child process in dir, against
// a fresh agent, and fails t with its output when it fails.
func runSuite(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	a := startLangAgent(t)
	if a == nil {
		return
	}
	control := a.serveControl(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(env, "KEYWARD_SOCKET="+a.socket, "KEYWARD_TEST_CONTROL="+control,
		"KEYWARD_TEST_CREDENTIALS="+a.credentials)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	t.Logf("%s", out)
}

// TestPython runs the Python package's tests (python/tests) against a
// live agent. KEYWARD_TEST_PYTHONPATH, when set, is where the package is
// imported from (scripts/test.sh installs the built wheel there); else
// from python/.
func TestPython(t *testing.T) {
	python := testenv.Require(t, "python3")
	if python == "" {
		return
	}
	dir, err := filepath.Abs(filepath.Join("..", "python"))
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("KEYWARD_TEST_PYTHONPATH")
	if path == "" {
		path = dir
	}
	// Run from tests/, which is all unittest adds to sys.path, so that
	// the package comes from path only.
	runSuite(t, filepath.Join(dir, "tests"), []string{"PYTHONPATH=" + path, "PYTHONDONTWRITEBYTECODE=1"},
		python, "-m", "unittest", "discover", "-v", "-s", ".", "-t", ".")
}

// TestNode runs the Node.js package's tests (js/test) against a live agent.
func TestNode(t *testing.T) {
	node := testenv.Require(t, "node")
	if node == "" {
		return
	}
	dir, err := filepath.Abs(filepath.Join("..", "js"))
	if err != nil {
		t.Fatal(err)
	}
	runSuite(t, dir, nil, node, "--test", "--test-reporter=spec", "test/")
}
