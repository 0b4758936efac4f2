package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

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
