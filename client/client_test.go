package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// testPolicy grants the test process, by its uid, binance/*: the client
// tests run as any user.
var testPolicy = fmt.Sprintf(`
[[rule]]
name = "self"
secrets = ["binance/*"]
users = ["%d"]
allow = ["get", "list"]
`, os.Getuid())

// serveAgent runs an agent serving st on socket until the returned stop.
func serveAgent(t *testing.T, st *store.Store, socket string) (stop func()) {
	t.Helper()
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	cache, _, err := agent.LoadCache(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := agent.New(agent.Config{Policy: pol, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCache(cache)
	l, err := agent.Listen(agent.ListenConfig{Path: socket, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		srv.Shutdown(context.Background())
		<-done
		srv.Close()
	}
	t.Cleanup(stop)
	return stop
}

func TestClient(t *testing.T) {
	st := storetest.MemStore(t, map[string]string{"binance/mm-prod": "v1-secret", "okx/hidden": "nope"})
	socket := filepath.Join(t.TempDir(), "agent.sock")
	serveAgent(t, st, socket)
	ctx := context.Background()

	t.Setenv(client.SocketEnv, socket)
	c, err := client.Dial(ctx, "")
	if err != nil {
		t.Fatalf("Dial($KEYWARD_SOCKET) = %v", err)
	}
	defer c.Close()

	s, err := c.Get(ctx, "binance/mm-prod")
	if err != nil || string(s.Bytes()) != "v1-secret" || s.Version != 1 || !s.Expires.IsZero() {
		t.Fatalf("Get() = %v, %v", s, err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "v1-secret") || strings.Contains(out, "76312d") {
			t.Errorf("Sprintf(%s, secret) = %q reveals the value", f, out)
		}
	}
	b := s.Bytes()
	s.Wipe()
	if !bytes.Equal(b, make([]byte, len(b))) || s.Bytes() != nil {
		t.Errorf("Wipe() left %q", b)
	}

	tests := []struct {
		name    string
		version uint32
		want    error
	}{
		{"okx/hidden", 0, client.ErrDenied},
		{"binance/absent", 0, client.ErrNotFound},
		{"binance/mm-prod", 7, client.ErrNotFound},
		{"Bad/Name", 0, client.ErrBadRequest},
	}
	for _, tt := range tests {
		if _, err := c.GetVersion(ctx, tt.name, tt.version); !errors.Is(err, tt.want) {
			t.Errorf("GetVersion(%q, %d) = %v, want %v", tt.name, tt.version, err, tt.want)
		}
	}
	names, err := c.List(ctx)
	if err != nil || len(names) != 1 || names[0] != "binance/mm-prod" {
		t.Errorf("List() = %v, %v", names, err)
	}
}

// TestReconnectAfterRestart: a client keeps working across an agent
// restart; requests while the agent is down fail with ErrUnavailable.
func TestReconnectAfterRestart(t *testing.T) {
	st := storetest.MemStore(t, map[string]string{"binance/mm-prod": "v1-secret"})
	socket := filepath.Join(t.TempDir(), "agent.sock")
	stop := serveAgent(t, st, socket)
	ctx := context.Background()
	c, err := client.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, "binance/mm-prod"); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := c.Get(ctx, "binance/mm-prod"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Get() with the agent down = %v, want ErrUnavailable", err)
	}
	serveAgent(t, st, socket)
	if s, err := c.Get(ctx, "binance/mm-prod"); err != nil || string(s.Bytes()) != "v1-secret" {
		t.Errorf("Get() after the agent restarted = %v, %v", s, err)
	}
}

// TestContextDeadline: a request to an agent that does not answer ends at
// the context's deadline.
func TestContextDeadline(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept and never answer
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = client.Dial(ctx, socket)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial(mute agent) = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial took %v with a 200ms deadline", d)
	}
	if _, err := client.Dial(context.Background(), filepath.Join(t.TempDir(), "none.sock")); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Dial(no agent) = %v, want ErrUnavailable", err)
	}
}

// TestNewSerialises: a Client over one caller-made connection serves
// concurrent requests one at a time.
func TestNewSerialises(t *testing.T) {
	st := storetest.MemStore(t, map[string]string{"binance/mm-prod": "v1-secret"})
	socket := filepath.Join(t.TempDir(), "agent.sock")
	serveAgent(t, st, socket)
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := client.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8*50)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				s, err := c.Get(context.Background(), "binance/mm-prod")
				if err == nil && string(s.Bytes()) != "v1-secret" {
					err = errors.New("wrong value")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Get on a client.New client: %v", err)
	}
}

// TestNewHonoursDeadline: a Client over a caller-made connection bounds a
// request by its context, as a dialled one does.
func TestNewHonoursDeadline(t *testing.T) {
	server, conn := net.Pipe()
	defer server.Close()
	go func() {
		r := wire.NewReader(server, wire.MaxFrameSize)
		if _, id, _, err := r.ReadFrame(); err == nil {
			server.Write(wire.Marshal(id, &wire.HelloOK{Version: wire.Version1, Agent: "mute"}))
		}
		io.Copy(io.Discard, server) // and never answer again
	}()
	c, err := client.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Get(ctx, "binance/mm-prod"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get(mute agent) = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get took %v with a 200ms deadline", d)
	}
}
