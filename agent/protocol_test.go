package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/client"
)

// selfPolicy grants the test process, by its uid, the test secrets.
var selfPolicy = fmt.Sprintf(`
[[rule]]
name = "self"
secrets = ["binance/*", "okx/*", "kraken/*"]
users = ["%d"]
allow = ["get", "list"]
`, selfUID)

func dial(t testing.TB, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// exchange writes raw bytes and reads one answer frame; it returns nil
// when the agent closed the connection without answering.
func roundTrip(t testing.TB, c net.Conn, raw []byte) wire.Message {
	t.Helper()
	if _, err := c.Write(raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := wire.NewReader(c, wire.MaxFrameSize)
	typ, _, body, err := r.ReadFrame()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	m, err := wire.ParseBody(typ, body)
	if err != nil {
		t.Fatalf("parse answer: %v", err)
	}
	return m
}

func hello() []byte { return wire.Marshal(1, &wire.Hello{Versions: []uint16{1}}) }

func isClosed(t testing.TB, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func wantError(t *testing.T, m wire.Message, code wire.Code, msg string) {
	t.Helper()
	e, ok := m.(*wire.Error)
	if !ok || e.Code != code || (msg != "" && e.Message != msg) {
		t.Errorf("answer = %v, want error %s %q", m, code, msg)
	}
}

func TestProtocolBadInput(t *testing.T) {
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{frameTimeout: 300 * time.Millisecond})
	frame := func(length uint32, rest ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, length), rest...)
	}

	t.Run("first frame not hello", func(t *testing.T) {
		c := dial(t, ta.socket)
		wantError(t, roundTrip(t, c, wire.Marshal(1, &wire.Get{Name: "binance/mm-prod"})), wire.CodeBadRequest, "hello required")
		if !isClosed(t, c) {
			t.Error("connection kept open")
		}
	})
	t.Run("no common version", func(t *testing.T) {
		c := dial(t, ta.socket)
		wantError(t, roundTrip(t, c, wire.Marshal(1, &wire.Hello{Versions: []uint16{2, 3}})), wire.CodeBadRequest, "unsupported protocol version")
	})
	t.Run("oversized length prefix", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		if m := roundTrip(t, c, frame(0xFFFFFFFF, 2, 0, 0, 0, 1)); m != nil {
			t.Errorf("answer = %v, want the connection closed", m)
		}
	})
	t.Run("request over 4096 bytes", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		if m := roundTrip(t, c, frame(wire.MaxRequestSize+1)); m != nil {
			t.Errorf("answer = %v, want the connection closed", m)
		}
	})
	t.Run("length below minimum", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		if m := roundTrip(t, c, frame(2, 2, 0)); m != nil {
			t.Errorf("answer = %v, want the connection closed", m)
		}
	})
	t.Run("unknown operation keeps the connection", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		wantError(t, roundTrip(t, c, frame(5, 0x42, 0, 0, 0, 7)), wire.CodeBadRequest, "unknown operation")
		wantError(t, roundTrip(t, c, frame(5, byte(wire.TypeSecret), 0, 0, 0, 8)), wire.CodeBadRequest, "unknown operation")
		if _, ok := roundTrip(t, c, wire.Marshal(9, &wire.Get{Name: "binance/mm-prod"})).(*wire.Secret); !ok {
			t.Error("get after unknown operations failed")
		}
	})
	t.Run("malformed body keeps the connection", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		bad := wire.Marshal(2, &wire.Get{Name: "binance/mm-prod"})
		bad = append(bad, 0) // trailing byte
		binary.BigEndian.PutUint32(bad, uint32(len(bad)-4))
		wantError(t, roundTrip(t, c, bad), wire.CodeBadRequest, "malformed request")
		wantError(t, roundTrip(t, c, wire.Marshal(0, &wire.List{})), wire.CodeBadRequest, "request id 0 is reserved")
		wantError(t, roundTrip(t, c, hello()), wire.CodeBadRequest, "unexpected hello")
		wantError(t, roundTrip(t, c, wire.Marshal(3, &wire.Get{Name: "binance/../x"})), wire.CodeBadRequest, "invalid secret name")
	})
	t.Run("truncated frame", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		full := wire.Marshal(2, &wire.Get{Name: "binance/mm-prod"})
		c.Write(full[:len(full)-3])
		c.(*net.UnixConn).CloseWrite()
		if !isClosed(t, c) {
			t.Error("agent answered a truncated frame")
		}
	})
	t.Run("stalled frame times out", func(t *testing.T) {
		c := dial(t, ta.socket)
		roundTrip(t, c, hello())
		full := wire.Marshal(2, &wire.Get{Name: "binance/mm-prod"})
		c.Write(full[:3])
		start := time.Now()
		if !isClosed(t, c) {
			t.Error("agent kept a stalled connection")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("stalled connection closed after %v; want about the 300ms frame timeout", d)
		}
	})
}

// TestSlowClientsAndIdleConnections: 1,000 idle connections and clients
// sending one byte per tick do not stop the agent serving others, and its
// memory stays bounded.
func TestSlowClientsAndIdleConnections(t *testing.T) {
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{frameTimeout: 500 * time.Millisecond, maxPerUID: 2000, quietAudit: true})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	idle := make([]net.Conn, 0, 1000)
	for range 1000 {
		c, err := net.Dial("unix", ta.socket)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(idle), err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()

	// Slow clients: one byte of a get frame every 100ms.
	var wg sync.WaitGroup
	slowClosed := make(chan bool, 5)
	for range 5 {
		wg.Go(func() {
			c, err := net.Dial("unix", ta.socket)
			if err != nil {
				slowClosed <- false
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if m := roundTrip(t, c, hello()); m == nil {
				slowClosed <- false
				return
			}
			for _, b := range wire.Marshal(2, &wire.Get{Name: "binance/mm-prod"}) {
				if _, err := c.Write([]byte{b}); err != nil {
					slowClosed <- true
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			slowClosed <- isClosed(t, c)
		})
	}

	cl, err := client.Dial(context.Background(), ta.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 200 {
		s, err := cl.Get(context.Background(), "binance/mm-prod")
		if err != nil || !bytes.Equal(s.Bytes(), []byte(accessSecrets["binance/mm-prod"])) {
			t.Fatalf("get %d with 1,000 idle and 5 slow connections: %v, %v", i, s, err)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(slowClosed)
	for closed := range slowClosed {
		if !closed {
			t.Error("a slow client was not cut off by the frame timeout")
		}
	}

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 64<<20 {
		t.Errorf("heap grew by %d MiB with 1,000 idle connections; want under 64 MiB", grown>>20)
	}
}

// TestConnectionLimitPerUID: a uid's connections beyond MaxConnsPerUID are
// closed, so one user cannot take every slot.
func TestConnectionLimitPerUID(t *testing.T) {
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{maxPerUID: 3, quietAudit: true})
	for range 3 {
		if roundTrip(t, dial(t, ta.socket), hello()) == nil {
			t.Fatal("connection within the per-uid limit refused")
		}
	}
	if !isClosed(t, dial(t, ta.socket)) {
		t.Error("connection over the per-uid limit was kept")
	}
}

// TestConnectionLimit: connections beyond MaxConns are closed at accept and
// the agent keeps serving the others.
func TestConnectionLimit(t *testing.T) {
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{maxConns: 8, quietAudit: true})
	var conns []net.Conn
	for range 8 {
		c := dial(t, ta.socket)
		if roundTrip(t, c, hello()) == nil {
			t.Fatal("connection within the limit refused")
		}
		conns = append(conns, c)
	}
	extra := dial(t, ta.socket)
	if !isClosed(t, extra) {
		t.Error("connection over the limit was kept")
	}
	if _, ok := roundTrip(t, conns[0], wire.Marshal(2, &wire.Get{Name: "okx/exec"})).(*wire.Secret); !ok {
		t.Error("an existing connection stopped being served")
	}
}

// TestDenialFloodIsBounded: a caller without rights cannot flood the audit
// trail: past a budget its requests are refused as rate limited, the
// connection is closed, and the rest is counted in one summary event.
func TestDenialFloodIsBounded(t *testing.T) {
	ta := startAgent(t, selfPolicy, accessSecrets, agentOpts{})
	c := dial(t, ta.socket)
	roundTrip(t, c, hello())
	var frames []byte
	for i := range 1000 {
		frames = wire.AppendFrame(frames, uint32(i+2), &wire.Get{Name: "secret/not-granted"})
	}
	go c.Write(frames) // the agent may close before reading it all
	r := wire.NewReader(c, wire.MaxFrameSize)
	var denied, limited int
	for {
		typ, _, body, err := r.ReadFrame()
		if err != nil {
			break
		}
		m, _ := wire.ParseBody(typ, body)
		switch e, _ := m.(*wire.Error); {
		case e != nil && e.Code == wire.CodeDenied:
			denied++
		case e != nil && e.Code == wire.CodeRateLimited:
			limited++
		default:
			t.Fatalf("unexpected answer %v", m)
		}
	}
	if denied == 0 || denied > 250 || limited != 1 {
		t.Errorf("answers: %d denied, %d rate limited; want at most the budget denied, then one rate limited and the connection closed", denied, limited)
	}
	assertAudited(t, ta, "deny", "over the audit budget")
	n := 0
	for _, ev := range ta.audit.events(t) {
		if ev["op"] == "get" {
			n++
		}
	}
	if n != denied {
		t.Errorf("%d get events audited, want %d (one per denial answered)", n, denied)
	}
}
