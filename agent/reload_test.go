package agent_test

import (
	"context"
	"errors"
	"github.com/keyward/keyward/store"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/client"
)

// serveCache serves cache under selfPolicy and returns a client.
func serveCache(t *testing.T, cache *agent.Cache) *client.Client {
	t.Helper()
	pol, err := policy.Parse([]byte(selfPolicy))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := agent.New(agent.Config{Policy: pol})
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

// TestReloadKeepsWhatFails: a reload during which some envelopes fail to
// decrypt keeps serving the copies loaded before, and a first load never
// rolls a secret back to an older version when its newest one fails.
func TestReloadKeepsWhatFails(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, map[string]string{"binance/a": "a-v1", "okx/b": "b-v1"})
	if _, err := st.Put(ctx, "binance/a", []byte("a-v2"), storePutNew); err != nil {
		t.Fatal(err)
	}
	first, skipped, err := agent.LoadCache(ctx, st, nil)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("LoadCache() = %v, %v", skipped, err)
	}
	for _, f := range []string{"binance+a@2.kwe", "okx+b@1.kwe"} {
		corrupt(t, filepath.Join(st.Dir(), f))
	}

	reloaded, skipped, err := agent.LoadCache(ctx, st, first)
	if err != nil || len(skipped) != 2 {
		t.Fatalf("LoadCache(prev) = %v, %v; want 2 skipped, kept from prev", skipped, err)
	}
	first.Destroy() // the copies must not alias the old cache
	c := serveCache(t, reloaded)
	for name, want := range map[string]string{"binance/a": "a-v2", "okx/b": "b-v1"} {
		if s, err := c.Get(ctx, name); err != nil || string(s.Bytes()) != want {
			t.Errorf("after a failed reload, Get(%q) = %v, %v; want %q", name, s, err, want)
		}
	}

	fresh, _, err := agent.LoadCache(ctx, st, nil)
	if err != nil {
		t.Fatalf("LoadCache(no prev) = %v", err)
	}
	c = serveCache(t, fresh)
	if _, err := c.Get(ctx, "binance/a"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Get(newest version undecryptable) = %v, want ErrUnavailable, not a rollback to version 1", err)
	}
	if s, err := c.GetVersion(ctx, "binance/a", 1); err != nil || string(s.Bytes()) != "a-v1" {
		t.Errorf("GetVersion(1) = %v, %v", s, err)
	}
	if _, err := c.Get(ctx, "okx/b"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Get(only version undecryptable) = %v, want ErrUnavailable", err)
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
