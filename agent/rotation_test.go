package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// adminPolicy grants the test process, by its uid, get and admin on
// binance/*.
var adminPolicy = fmt.Sprintf(`
[[rule]]
name = "self"
secrets = ["binance/*"]
users = ["%d"]
allow = ["get", "admin"]
`, selfUID)

// runAgent runs the whole daemon (agent.Run) on st until the test ends.
func runAgent(t *testing.T, st *store.Store, policyText string) string {
	t.Helper()
	socket := filepath.Join(publicDir(t), "agent.sock")
	t.Cleanup(startRun(t, st, policyText, socket, agent.RunConfig{}))
	return socket
}

// startRun starts agent.Run on socket and returns the function that stops
// it.
func startRun(t *testing.T, st *store.Store, policyText, socket string, rc agent.RunConfig) (stop func()) {
	t.Helper()
	dir := filepath.Dir(socket)
	policyPath := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(policyPath, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := agent.Listen(agent.ListenConfig{Path: socket, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		rc.Store, rc.PolicyPath, rc.Listener = st, policyPath, l
		rc.Ready = func(ev, _ string) {
			if ev == "ready" {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		}
		done <- agent.Run(ctx, rc)
	}()
	<-ready
	return sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

// TestRotationUnderLoad: 32 clients get a secret in a loop while it is
// rotated 100 times; no get fails, every answer is a version that was
// current at some moment (its value matches its version), and no client
// ever sees versions go backwards.
func TestRotationUnderLoad(t *testing.T) {
	rotations := 100
	if testing.Short() {
		rotations = 20
	}
	ctx := context.Background()
	st := storetest.MemStore(t, map[string]string{"binance/mm-prod": "v0001"})
	socket := runAgent(t, st, adminPolicy)
	admin, err := client.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	var stop atomic.Bool
	var gets, failures atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			c, err := client.Dial(ctx, socket)
			if err != nil {
				failures.Add(1)
				return
			}
			defer c.Close()
			var last uint32
			for !stop.Load() {
				s, err := c.Get(ctx, "binance/mm-prod")
				if err != nil {
					t.Errorf("Get during rotation: %v", err)
					failures.Add(1)
					return
				}
				if want := fmt.Sprintf("v%04d", s.Version); string(s.Bytes()) != want {
					t.Errorf("Get returned version %d with value %q", s.Version, s.Bytes())
				}
				if s.Version < last {
					t.Errorf("versions went backwards for a client: %d after %d", s.Version, last)
				}
				last = s.Version
				gets.Add(1)
			}
		})
	}
	for v := 2; v <= rotations+1; v++ {
		if _, err := st.Put(ctx, "binance/mm-prod", []byte(fmt.Sprintf("v%04d", v)), store.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
			t.Fatal(err)
		}
		got, err := admin.Reload(ctx, "binance/mm-prod")
		if err != nil || got != uint32(v) {
			t.Fatalf("Reload() = %d, %v; want version %d served", got, err, v)
		}
		// The next get after the reload returns sees the new version.
		s, err := admin.Get(ctx, "binance/mm-prod")
		if err != nil || s.Version != uint32(v) {
			t.Fatalf("Get() right after rotation %d = %v, %v", v, s, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 || gets.Load() == 0 {
		t.Errorf("%d gets, %d failures", gets.Load(), failures.Load())
	}
}

// TestGracePeriod: after a rotation, the previous version is served until
// the end of its grace period and refused as expired after it; a version
// with an expiry is refused from then on. The agent's clock is injected.
func TestGracePeriod(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	b := storetest.NewMemBackend()
	dir := filepath.Join(t.TempDir(), "store")
	store.Init(dir)
	st, err := store.New(store.Config{Dir: dir, Backend: b, Host: storetest.TestHost, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	st.Put(ctx, "binance/a", []byte("old"), store.PutOptions{})
	st.Put(ctx, "binance/a", []byte("new"), store.PutOptions{NewVersion: true, Grace: time.Hour})
	st.Put(ctx, "binance/exp", []byte("short-lived"), store.PutOptions{Expires: t0.Add(90 * time.Minute)})
	cache, _, err := agent.LoadCache(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	pol, _ := policy.Parse([]byte(adminPolicy))
	srv, err := agent.New(agent.Config{Policy: pol, Now: func() time.Time { return *now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCache(cache)
	socket := filepath.Join(t.TempDir(), "a.sock")
	l, _ := agent.Listen(agent.ListenConfig{Path: socket, GID: -1})
	go srv.Serve(l)
	defer func() { srv.Shutdown(ctx); srv.Close() }()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(conn)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name    string
		at      time.Duration
		version uint32
		want    string
		err     error
	}{
		{"binance/exp", 89 * time.Minute, 0, "short-lived", nil},
		{"binance/exp", 90 * time.Minute, 0, "", client.ErrExpired},
		{"binance/a", 30 * time.Minute, 1, "old", nil},
		{"binance/a", 30 * time.Minute, 0, "new", nil},
		{"binance/a", 59 * time.Minute, 1, "old", nil},
		{"binance/a", time.Hour, 1, "", client.ErrExpired},
		{"binance/a", 2 * time.Hour, 1, "", client.ErrExpired},
		{"binance/a", 2 * time.Hour, 2, "new", nil},
	} {
		at := t0.Add(tt.at)
		now.Store(&at)
		s, err := c.GetVersion(ctx, tt.name, tt.version)
		if !errors.Is(err, tt.err) || (err == nil && string(s.Bytes()) != tt.want) {
			t.Errorf("at +%v, GetVersion(%q, %d) = %v, %v; want %q, %v", tt.at, tt.name, tt.version, s, err, tt.want, tt.err)
		}
	}
}

// TestExpiryWarning: at start (and daily) the agent writes a warning audit
// event for each secret whose current version expires within the window.
func TestExpiryWarning(t *testing.T) {
	ctx := context.Background()
	st := storetest.MemStore(t, map[string]string{"binance/never": "x"})
	if _, err := st.Put(ctx, "binance/soon", []byte("y"), store.PutOptions{Expires: time.Now().Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "binance/later", []byte("z"), store.PutOptions{Expires: time.Now().Add(30 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	log := &auditLog{}
	trail := audit.New(log, nil)
	defer trail.Close(time.Second)
	socket := filepath.Join(publicDir(t), "agent.sock")
	stop := startRun(t, st, adminPolicy, socket, agent.RunConfig{
		ExpiryWarning: 7 * 24 * time.Hour,
		Server:        agent.Config{Audit: trail},
	})
	defer stop()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var warned []string
		for _, ev := range log.events(t) {
			if ev["op"] == "expiry" {
				warned = append(warned, fmt.Sprint(ev["secret"]))
			}
		}
		if len(warned) > 0 {
			if len(warned) != 1 || warned[0] != "binance/soon" {
				t.Errorf("expiry warnings for %v, want only binance/soon", warned)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("no expiry warning in the audit trail:\n%s", log)
}
