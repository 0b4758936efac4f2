package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/client"
)

// serveCache serves cache under selfPolicy, on the clock now when it is
// not nil, and returns a client.
func serveCache(t *testing.T, cache *agent.Cache, now func() time.Time) *client.Client {
	t.Helper()
	pol, err := policy.Parse([]byte(selfPolicy))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := agent.New(agent.Config{Policy: pol, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCache(cache)
	socket := filepath.Join(t.TempDir(), "agent.sock")
	l, err := agent.Listen(agent.ListenConfig{Path: socket, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		srv.Close()
	})
	c, err := client.Dial(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// faultyBackend is a real (in-memory) backend whose Unwrap can be made to
// fail as a backend that does not answer would, not as tampering would.
type faultyBackend struct {
	*storetest.MemBackend
	down atomic.Bool
}

func (f *faultyBackend) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, errors.New("test backend: the token does not answer")
	}
	return f.MemBackend.Unwrap(ctx, wrapped)
}

func wantGet(t *testing.T, c *client.Client, name string, version uint32, want string, wantErr error) {
	t.Helper()
	s, err := c.GetVersion(context.Background(), name, version)
	switch {
	case wantErr != nil && !errors.Is(err, wantErr):
		t.Errorf("GetVersion(%q, %d) = %v, %v; want %v", name, version, s, err, wantErr)
	case wantErr == nil && (err != nil || string(s.Bytes()) != want):
		t.Errorf("GetVersion(%q, %d) = %v, %v; want %q", name, version, s, err, want)
	}
}

// TestReloadKeepsWhatFails: a reload during which some envelopes are found
// damaged keeps serving the copies loaded before; a first load never rolls
// a secret back to an older version when its newest one is damaged, and
// answers internal (an operator must act), not unavailable.
func TestReloadKeepsWhatFails(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, storetest.NewMemBackend())
	for _, p := range []struct{ name, value string }{{"binance/a", "a-v1"}, {"okx/b", "b-v1"}, {"binance/a", "a-v2"}} {
		if _, err := st.Put(ctx, p.name, []byte(p.value), storePutNew); err != nil {
			t.Fatal(err)
		}
	}
	first, skipped, err := agent.LoadCache(ctx, st, nil)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("LoadCache() = %v, %v", skipped, err)
	}
	corrupt(t, filepath.Join(st.Dir(), "binance+a@2.kwe"))
	truncate(t, filepath.Join(st.Dir(), "okx+b@1.kwe"))

	reloaded, skipped, err := agent.LoadCache(ctx, st, first)
	if err != nil || len(skipped) != 2 {
		t.Fatalf("LoadCache(prev) = %v, %v; want 2 skipped, kept from prev", skipped, err)
	}
	first.Destroy() // the copies must not alias the old cache
	c := serveCache(t, reloaded, nil)
	wantGet(t, c, "binance/a", 0, "a-v2", nil)
	wantGet(t, c, "okx/b", 0, "b-v1", nil)

	fresh, _, err := agent.LoadCache(ctx, st, nil)
	if err != nil {
		t.Fatalf("LoadCache(no prev) = %v", err)
	}
	c = serveCache(t, fresh, nil)
	wantGet(t, c, "binance/a", 0, "", client.ErrInternal) // not a rollback to version 1
	wantGet(t, c, "binance/a", 2, "", client.ErrInternal)
	wantGet(t, c, "okx/b", 0, "", client.ErrInternal)
}

// TestBackendDownServesWhatItHolds: when the newest version cannot be
// loaded because the backend does not answer, the version held is served
// within the grace its successor's rotation gave it, then unavailable; once
// the backend answers, a reload serves the newest version.
func TestBackendDownServesWhatItHolds(t *testing.T) {
	ctx := context.Background()
	b := &faultyBackend{MemBackend: storetest.NewMemBackend()}
	st := storetest.NewStore(t, b)
	if _, err := st.Put(ctx, "binance/a", []byte("a-v1"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	first, _, err := agent.LoadCache(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "binance/a", []byte("a-v2"), store.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	b.down.Store(true)
	stale, skipped, err := agent.LoadCache(ctx, st, first)
	if err != nil || len(skipped) != 1 {
		t.Fatalf("LoadCache(backend down) = %v, %v; want version 2 skipped", skipped, err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	c := serveCache(t, stale, now)
	wantGet(t, c, "binance/a", 0, "a-v1", nil)
	wantGet(t, c, "binance/a", 2, "", client.ErrUnavailable)
	clock.Add(int64(2 * time.Hour)) // past version 1's grace
	wantGet(t, c, "binance/a", 0, "", client.ErrUnavailable)

	b.down.Store(false)
	back, skipped, err := agent.LoadCache(ctx, st, stale)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("LoadCache(backend back) = %v, %v", skipped, err)
	}
	c = serveCache(t, back, now)
	wantGet(t, c, "binance/a", 0, "a-v2", nil)
}

func truncate(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
}

func corrupt(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var storePutNew = store.PutOptions{NewVersion: true, Grace: 24 * time.Hour}
