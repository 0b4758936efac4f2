package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// watchPolicy lets the test process, by its uid, watch binance/* but
// only get okx/*.
var watchPolicy = fmt.Sprintf(`
[[rule]]
name = "self"
secrets = ["binance/*"]
users = ["%[1]d"]
allow = ["get", "watch", "admin"]

[[rule]]
name = "get-only"
secrets = ["okx/*"]
users = ["%[1]d"]
allow = ["get"]
`, selfUID)

func nextChange(t *testing.T, ch <-chan client.Change) client.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10s")
	}
	panic("unreachable")
}

// TestWatch: a subscriber sees each rotation once, in order; a caller
// without the watch permission cannot subscribe; after an agent restart
// the subscription resumes and reports what changed meanwhile.
func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := storetest.MemStore(t, map[string]string{"binance/mm-prod": "v1", "okx/exec": "x"})
	socket := filepath.Join(publicDir(t), "agent.sock")
	stop := startRun(t, st, watchPolicy, socket, agent.RunConfig{})
	defer func() { stop() }()

	c, err := client.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Watch(ctx, "okx/exec"); !errors.Is(err, client.ErrDenied) {
		t.Errorf("Watch(without the watch permission) = %v, want ErrDenied", err)
	}
	if _, err := c.Watch(ctx, "okx/no-such"); !errors.Is(err, client.ErrDenied) {
		t.Errorf("Watch(missing, without permission) = %v, want ErrDenied", err)
	}
	changes, err := c.Watch(ctx, "binance/mm-prod")
	if err != nil {
		t.Fatalf("Watch() = %v", err)
	}

	rotate := func(v int) {
		t.Helper()
		if _, err := st.Put(ctx, "binance/mm-prod", []byte(fmt.Sprintf("v%d", v)), store.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Reload(ctx, "binance/mm-prod"); err != nil {
			t.Fatalf("Reload() = %v", err)
		}
	}
	for v := 2; v <= 6; v++ {
		rotate(v)
	}
	for v := 2; v <= 6; v++ {
		if got := nextChange(t, changes); got != (client.Change{Name: "binance/mm-prod", Version: uint32(v)}) {
			t.Fatalf("change = %+v, want version %d", got, v)
		}
	}
	select {
	case extra := <-changes:
		t.Fatalf("extra change %+v", extra)
	case <-time.After(100 * time.Millisecond):
	}

	// Restart the agent; rotate while it is down; the watcher resumes.
	stop()
	if _, err := st.Put(ctx, "binance/mm-prod", []byte("v7"), store.PutOptions{NewVersion: true, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	stop = startRun(t, st, watchPolicy, socket, agent.RunConfig{})
	if got := nextChange(t, changes); got != (client.Change{Name: "binance/mm-prod", Version: 7}) {
		t.Fatalf("change after restart = %+v, want version 7", got)
	}
	rotate(8)
	if got := nextChange(t, changes); got.Version != 8 {
		t.Fatalf("change after restart and rotation = %+v, want version 8", got)
	}

	// The agent comes back with the watch permission revoked: the watch
	// ends with ErrDenied instead of retrying for ever.
	stop()
	stop = startRun(t, st, strings.Replace(watchPolicy, `"get", "watch", "admin"`, `"get", "admin"`, 1), socket, agent.RunConfig{})
	if got := nextChange(t, changes); !errors.Is(got.Err, client.ErrDenied) {
		t.Fatalf("change after the permission was revoked = %+v, want ErrDenied", got)
	}
	select {
	case extra, ok := <-changes:
		if ok {
			t.Fatalf("change after the end: %+v", extra)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch channel stayed open after ErrDenied")
	}
}
