package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

func TestListAndStatus(t *testing.T) {
	ta := startAgent(t, fmt.Sprintf(`
[[rule]]
name = "lister"
secrets = ["binance/*", "okx/*"]
users = ["%[1]d"]
allow = ["get", "list"]

[[rule]]
name = "get-only"
secrets = ["kraken/*"]
users = ["%[1]d"]
allow = ["get"]
`, selfUID), accessSecrets, agentOpts{})
	ctx := context.Background()
	c, err := client.Dial(ctx, ta.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names, err := c.List(ctx)
	if want := []string{"binance/mm-prod", "okx/exec"}; err != nil || !slices.Equal(names, want) {
		t.Errorf("List() = %v, %v; want %v", names, err, want)
	}
	st, err := c.Status(ctx)
	if err != nil || !st.Healthy || st.Secrets != 3 || st.Backend != "mem" || st.Agent != "keyward test" {
		t.Errorf("Status() = %+v, %v", st, err)
	}
	if _, err := c.GetVersion(ctx, "okx/exec", 2); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetVersion(missing version) = %v, want ErrNotFound", err)
	}
}

// TestConcurrentGets: 64 clients × 10,000 gets, zero errors.
func TestConcurrentGets(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 500
	}
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{quietAudit: true})
	ctx := context.Background()
	var wg sync.WaitGroup
	var failures atomic.Int64
	want := []byte(accessSecrets["okx/exec"])
	for range 64 {
		wg.Go(func() {
			c, err := client.Dial(ctx, ta.socket)
			if err != nil {
				failures.Add(1)
				return
			}
			defer c.Close()
			for range n {
				s, err := c.Get(ctx, "okx/exec")
				if err != nil || !bytes.Equal(s.Bytes(), want) {
					failures.Add(1)
					continue
				}
				s.Wipe()
			}
		})
	}
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d gets failed", f, 64*n)
	}
}

// TestAuditDenied: a denied request produces exactly one audit event with
// the caller's uid and exe, and no secret bytes.
func TestAuditDenied(t *testing.T) {
	needRoot(t)
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{})
	dir := publicDir(t)
	bin, _ := childBinary(t, dir, "intruder", nil)
	got := child{bin: bin, uid: 4777, gid: 4777}.run(t, "get", ta.socket, "binance/mm-prod")
	if got != "code denied" {
		t.Fatalf("get as uid 4777 = %q, want code denied", got)
	}
	// Events are written by the audit goroutine: wait for the first, then
	// make sure no second one follows.
	assertAudited(t, ta, "deny", "no rule grants")
	time.Sleep(100 * time.Millisecond)
	var denied []map[string]any
	for _, ev := range ta.audit.events(t) {
		if ev["op"] == "get" {
			denied = append(denied, ev)
		}
	}
	if len(denied) != 1 {
		t.Fatalf("audit has %d get events, want 1:\n%s", len(denied), ta.audit)
	}
	ev := denied[0]
	caller, _ := ev["caller"].(map[string]any)
	if ev["decision"] != "deny" || ev["secret"] != "binance/mm-prod" || ev["code"] != "denied" {
		t.Errorf("audit event = %v; want a denied get of binance/mm-prod", ev)
	}
	if caller["uid"] != float64(4777) || caller["exe"] != bin {
		t.Errorf("audit caller = %v; want uid 4777 and exe %s", caller, bin)
	}
	if _, ok := ev["latency_us"]; !ok {
		t.Errorf("audit event has no latency: %v", ev)
	}
	if strings.Contains(ta.audit.String(), accessSecrets["binance/mm-prod"]) {
		t.Error("the audit trail contains a secret")
	}
}

// TestRunReloadsOnSIGHUP runs the whole daemon: a SIGHUP applies a new
// policy without dropping the open connection, and an invalid policy is
// refused while the running one stays.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	st := storetest.MemStore(t, accessSecrets)
	dir := publicDir(t)
	policyPath := filepath.Join(dir, "policy.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(policyPath+".tmp", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(policyPath+".tmp", policyPath); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(`
[[rule]]
name = "first"
secrets = ["binance/*"]
users = ["%d"]
allow = ["get"]
`, selfUID))
	socket := filepath.Join(dir, "agent.sock")
	l, err := agent.Listen(agent.ListenConfig{Path: socket, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.RunConfig{
			Store:      st,
			PolicyPath: policyPath,
			Listener:   l,
			Ready:      func(event, _ string) { events <- event },
		})
	}()
	if ev := <-events; ev != "ready" {
		t.Fatalf("first event = %q, want ready", ev)
	}

	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(conn) // one connection: it must survive the reload
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "okx/exec"); !errors.Is(err, client.ErrDenied) {
		t.Fatalf("Get(okx/exec) before reload = %v, want ErrDenied", err)
	}

	sighup := func() {
		t.Helper()
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		for _, want := range []string{"reloading", "ready"} {
			select {
			case ev := <-events:
				if ev != want {
					t.Fatalf("event = %q, want %q", ev, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no %q event after SIGHUP", want)
			}
		}
	}
	write(fmt.Sprintf(`
[[rule]]
name = "second"
secrets = ["binance/*", "okx/*"]
users = ["%d"]
allow = ["get"]
`, selfUID))
	sighup()
	if s, err := c.Get(ctx, "okx/exec"); err != nil || string(s.Bytes()) != accessSecrets["okx/exec"] {
		t.Errorf("Get(okx/exec) after reload on the same connection = %v, %v; want the secret", s, err)
	}

	write("[[rule]]\nname = \"broken\"\nsecrets = [\n")
	sighup()
	if _, err := c.Get(ctx, "okx/exec"); err != nil {
		t.Errorf("Get(okx/exec) after an invalid policy = %v; want the running policy kept", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil after a clean stop", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := c.Get(context.Background(), "okx/exec"); err == nil {
		t.Error("the agent still answers after stopping")
	}
	if ev := <-events; ev != "stopping" {
		t.Errorf("last event = %q, want stopping", ev)
	}
}

// TestServeFromSoftHSM is the one agent test on a real PKCS #11 backend:
// the others serve from the in-memory backend, since serving never
// touches the backend once the cache is loaded. The whole daemon loads
// envelopes whose data keys a SoftHSM key wrapped, serves them, and
// reloads a rotated secret through the token. It skips without SoftHSM,
// and fails then when KEYWARD_TEST_REQUIRE_HARDWARE=1.
func TestServeFromSoftHSM(t *testing.T) {
	ctx := context.Background()
	st := storetest.SoftHSMStore(t, accessSecrets)
	const rotated = "binance-value-rotated-91e4"
	logs, trailOut := &auditLog{}, &auditLog{}
	trail := audit.New(trailOut, nil)
	t.Cleanup(func() { // after the agent stopped
		trail.Close(time.Second)
		served := maps.Clone(accessSecrets)
		served["binance/mm-prod@2"] = rotated
		assertNoSecretLogged(t, trailOut.String()+logs.String(), served)
	})
	socket := filepath.Join(publicDir(t), "agent.sock")
	stop := startRun(t, st, fmt.Sprintf(`
[[rule]]
name = "self"
secrets = ["binance/*", "okx/*", "kraken/*"]
users = ["%d"]
allow = ["get", "list", "admin"]
`, selfUID), socket, agent.RunConfig{Server: agent.Config{
		Backend: "pkcs11",
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Audit:   trail,
	}})
	t.Cleanup(stop)

	c, err := client.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, want := range accessSecrets {
		if s, err := c.Get(ctx, name); err != nil || string(s.Bytes()) != want || s.Version != 1 {
			t.Errorf("Get(%q) = %v, %v; want version 1 of the value put", name, s, err)
		}
	}
	if status, err := c.Status(ctx); err != nil || !status.Healthy || status.Secrets != len(accessSecrets) || status.Backend != "pkcs11" {
		t.Errorf("Status() = %+v, %v; want healthy, %d secrets, backend pkcs11", status, err, len(accessSecrets))
	}

	if _, err := st.Put(ctx, "binance/mm-prod", []byte(rotated), store.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Reload(ctx, "binance/mm-prod"); err != nil || v != 2 {
		t.Fatalf("Reload() = %d, %v; want version 2 served", v, err)
	}
	if s, err := c.Get(ctx, "binance/mm-prod"); err != nil || string(s.Bytes()) != rotated || s.Version != 2 {
		t.Errorf("Get(binance/mm-prod) after rotation = %v, %v; want version 2", s, err)
	}
	if s, err := c.GetVersion(ctx, "binance/mm-prod", 1); err != nil || string(s.Bytes()) != accessSecrets["binance/mm-prod"] {
		t.Errorf("GetVersion(binance/mm-prod, 1) within its grace = %v, %v; want version 1", s, err)
	}
}
