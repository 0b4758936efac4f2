package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// selfAdmin grants the test process get, list and admin on binance/*, and
// get alone on okx/*.
func selfAdmin() string {
	return fmt.Sprintf(`
[[rule]]
name = "self-admin"
secrets = ["binance/*"]
users = ["%d"]
allow = ["get", "list", "admin"]

[[rule]]
name = "self-reader"
secrets = ["okx/*"]
users = ["%d"]
allow = ["get"]
`, os.Getuid(), os.Getuid())
}

func wantCode(t *testing.T, what string, err error, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

// TestAdminThroughAgent: put, rotate, remove and prune through the agent,
// each served when it returns, with the agent's answers for the mistakes
// an administrator makes.
func TestAdminThroughAgent(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, storetest.NewMemBackend())
	if _, err := st.Put(ctx, "okx/exec", []byte("okx-v1"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, runAgent(t, st, selfAdmin()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.Put(ctx, "binance/a", []byte("a-v1"), client.PutOptions{MustExist: true})
	wantCode(t, "rotate of a name that does not exist", err, client.ErrNotFound)
	if s, err := c.Put(ctx, "binance/a", []byte("a-v1"), client.PutOptions{}); err != nil || s.Version != 1 {
		t.Fatalf("Put(new) = %v, %v", s, err)
	}
	wantGet(t, c, "binance/a", 0, "a-v1", nil)
	_, err = c.Put(ctx, "binance/a", []byte("again"), client.PutOptions{})
	wantCode(t, "put of an existing name without a new version", err, client.ErrBadRequest)
	s, err := c.Put(ctx, "binance/a", []byte("a-v2"), client.PutOptions{NewVersion: true, MustExist: true, Grace: time.Hour})
	if err != nil || s.Version != 2 || time.Until(s.PrevUntil) < 59*time.Minute {
		t.Fatalf("Put(rotate, 1h grace) = %+v, %v", s, err)
	}
	wantGet(t, c, "binance/a", 0, "a-v2", nil)
	wantGet(t, c, "binance/a", 1, "a-v1", nil) // in its grace period
	if _, err := c.Put(ctx, "binance/a", []byte("a-v3"), client.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}

	// One older version removed: an older version no longer on disk is
	// expired, not unknown. The current one alone cannot be removed.
	if n, err := c.Remove(ctx, "binance/a", 1); err != nil || n != 1 {
		t.Fatalf("Remove(binance/a@1) = %d, %v", n, err)
	}
	wantGet(t, c, "binance/a", 1, "", client.ErrExpired)
	_, err = c.Remove(ctx, "binance/a", 3)
	wantCode(t, "remove of the current version alone", err, client.ErrNotFound)
	wantGet(t, c, "binance/a", 0, "a-v3", nil)

	// No admin on okx/*: the value is readable, the store is not writable.
	_, err = c.Put(ctx, "okx/exec", []byte("mine"), client.PutOptions{NewVersion: true})
	wantCode(t, "put without the admin permission", err, client.ErrDenied)
	_, err = c.Remove(ctx, "okx/exec", 0)
	wantCode(t, "remove without the admin permission", err, client.ErrDenied)
	wantGet(t, c, "okx/exec", 0, "okx-v1", nil)

	if n, err := c.Remove(ctx, "binance/a", 0); err != nil || n != 2 {
		t.Fatalf("Remove(binance/a) = %d, %v; want 2 versions", n, err)
	}
	wantGet(t, c, "binance/a", 0, "", client.ErrNotFound)
	if pruned, err := c.Prune(ctx); err != nil || len(pruned) != 0 {
		t.Errorf("Prune() = %v, %v; want nothing to prune", pruned, err)
	}
}

// TestHelloWithIDZero: id 0 is reserved for the agent's unasked messages,
// for the first Hello too.
func TestHelloWithIDZero(t *testing.T) {
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{})
	c := dial(t, ta.socket)
	wantError(t, roundTrip(t, c, wire.Marshal(0, &wire.Hello{Versions: []uint16{1}})), wire.CodeBadRequest, "request id 0 is reserved")
	if !isClosed(t, c) {
		t.Error("connection kept open after a Hello with id 0")
	}
}

// TestReloadOfSecretNotLoaded: a Reload answers unavailable, not version
// 0 ("gone"), when the secret is in the store but its newest version did
// not load; Health names it.
func TestReloadOfSecretNotLoaded(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, storetest.NewMemBackend())
	for _, v := range []string{"v1", "v2"} {
		if _, err := st.Put(ctx, "binance/a", []byte(v), store.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	corrupt(t, filepath.Join(st.Dir(), "binance+a@2.kwe"))
	c, err := client.Dial(ctx, runAgent(t, st, selfAdmin()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Reload(ctx, "binance/a")
	wantCode(t, "Reload(a secret whose newest version is damaged)", err, client.ErrUnavailable)
	wantGet(t, c, "binance/a", 0, "", client.ErrInternal)
	h, err := c.Health(ctx)
	if err != nil || len(h.Problems) != 1 || h.Problems[0].Name != "binance/a" || h.Problems[0].State != "damaged" || h.Problems[0].Newest != 2 {
		t.Errorf("Health() = %+v, %v; want binance/a damaged at version 2", h, err)
	}
}

// TestPutNotLoadedIsAFailure: a rotation through the agent whose new
// version the agent cannot load (the backend wrapped its data key, then
// stopped answering before the reload unwrapped it) is reported as a
// failure, not as stored; the version held stays served within its grace,
// and the new one is served once the backend answers again.
func TestPutNotLoadedIsAFailure(t *testing.T) {
	ctx := context.Background()
	b := &faultyBackend{MemBackend: storetest.NewMemBackend()}
	st := storetest.NewStore(t, b)
	if _, err := st.Put(ctx, "binance/a", []byte("a-v1"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	socket := runAgent(t, st, adminPolicy)
	c, err := client.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	b.down.Store(true) // Unwrap fails; Wrap still works
	stored, err := c.Put(ctx, "binance/a", []byte("a-v2"), client.PutOptions{NewVersion: true, MustExist: true, Grace: time.Hour})
	if !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Put() with a backend that does not unwrap = %+v, %v; want %v", stored, err, client.ErrUnavailable)
	}
	wantGet(t, c, "binance/a", 0, "a-v1", nil)

	b.down.Store(false)
	if v, err := c.Reload(ctx, "binance/a"); err != nil || v != 2 {
		t.Errorf("Reload() after the backend answers again = %d, %v; want version 2", v, err)
	}
	wantGet(t, c, "binance/a", 0, "a-v2", nil)
}
