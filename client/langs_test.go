package client_test

import (
	"bufio"
	"context"
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

// langPolicies are the policies the suites switch between; the first
// one, "default", is in force at start. %[1]d is the test's uid.
var langPolicies = map[string]string{
	"default": `
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
	"revoked": `
[[rule]]
name = "apps"
secrets = ["app/*"]
users = ["%[1]d"]
allow = ["get", "list"]
`,
}

// langAgent is the agent a language suite runs against.
type langAgent struct {
	t        *testing.T
	st       *store.Store
	fault    *testenv.FaultPKCS11
	socket   string
	policies map[string]*policy.Policy
	clock    atomic.Int64 // Unix milliseconds the agent's clock is pinned to; 0: real time

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

	a := &langAgent{t: t, st: st, fault: fault, socket: filepath.Join(t.TempDir(), "agent.sock"),
		policies: map[string]*policy.Policy{}}
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
	srv, err := agent.New(agent.Config{Policy: a.pol, Backend: "pkcs11", Agent: "keyward test",
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
		defer a.fault.Set(testenv.FaultPass)
	}
	cache, _, err := agent.LoadCache(context.Background(), a.st, a.cache)
	if err != nil {
		return err
	}
	a.srv.SetCache(cache)
	a.cache = cache
	return nil
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
	cmd.Env = append(os.Environ(), append(env, "KEYWARD_SOCKET="+a.socket, "KEYWARD_TEST_CONTROL="+control)...)
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
