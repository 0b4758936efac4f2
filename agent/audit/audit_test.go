package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/audit"
)

// flakyWriter fails while broken is set.
type flakyWriter struct {
	mu     sync.Mutex
	broken bool
	buf    bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return 0, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func (w *flakyWriter) set(broken bool) {
	w.mu.Lock()
	w.broken = broken
	w.mu.Unlock()
}

func (w *flakyWriter) lines(t *testing.T) []map[string]any {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(w.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, ev)
	}
	return out
}

// TestLogRetries: events emitted while the destination fails are kept and
// written, in order, once it works again, between the trail's start and
// stop events; the failure is reported once.
func TestLogRetries(t *testing.T) {
	w := &flakyWriter{broken: true}
	var mu sync.Mutex
	var reported []error
	l := audit.New(w, func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() })
	l.Emit(audit.Event{Op: "one"})
	time.Sleep(20 * time.Millisecond) // a few batches fail
	l.Emit(audit.Event{Op: "two"})
	time.Sleep(20 * time.Millisecond)
	w.set(false)
	l.Emit(audit.Event{Op: "three"})
	if err := l.Close(5 * time.Second); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	var ops []string
	for _, ev := range w.lines(t) {
		ops = append(ops, ev[audit.KeyOp].(string))
	}
	if strings.Join(ops, ",") != "start,one,two,three,stop" {
		t.Errorf("written ops = %v, want every event once, in order", ops)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 {
		t.Errorf("OnError called %d times, want once per run of failures", len(reported))
	}
}

// TestEventFields: one JSON line per event, with the fields by their Key
// names, the caller from For, latency only for a caller's requests, and
// zero fields left out.
func TestEventFields(t *testing.T) {
	w := &flakyWriter{}
	l := audit.New(w, nil)
	src := l.For(slog.GroupValue(slog.Int("uid", 1001), slog.String("exe", "/opt/mm")))
	src.Emit(audit.Event{Op: "get", Decision: audit.Allow, Secret: "binance/mm-prod", Version: 3, Rule: "bots",
		Reason: "rule bots grants get", Latency: 42 * time.Microsecond})
	l.Emit(audit.Event{Level: slog.LevelWarn, Op: "backend", Decision: audit.Error, Reason: "the token is gone"})
	l.Emit(audit.Event{CallerUID: "4242", Decision: audit.Deny, Suppressed: 7})
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	evs := w.lines(t)
	if len(evs) != 5 || evs[0][audit.KeyOp] != audit.OpStart || evs[4][audit.KeyOp] != audit.OpStop {
		t.Fatalf("%d lines, want a start event, 3 events and a stop event", len(evs))
	}
	evs = evs[1:4]
	get := evs[0]
	for k, want := range map[string]any{
		audit.KeyLog: "audit", "msg": audit.Message, audit.KeyOp: "get", audit.KeyDecision: "allow",
		audit.KeySecret: "binance/mm-prod", audit.KeyVersion: 3.0, audit.KeyRule: "bots", audit.KeyLatency: 42.0,
	} {
		if get[k] != want {
			t.Errorf("get event %s = %v, want %v", k, get[k], want)
		}
	}
	if c, _ := get[audit.KeyCaller].(map[string]any); c["uid"] != 1001.0 || c["exe"] != "/opt/mm" {
		t.Errorf("get event caller = %v", get[audit.KeyCaller])
	}
	if _, ok := get[audit.KeyCode]; ok {
		t.Error("an empty code was written")
	}
	backend := evs[1]
	if backend["level"] != "WARN" || backend[audit.KeyDecision] != "error" || backend[audit.KeyCaller] != nil || backend[audit.KeyLatency] != nil {
		t.Errorf("backend event = %v", backend)
	}
	if report := evs[2]; report[audit.KeyCallerUID] != "4242" || report[audit.KeySuppressed] != 7.0 || report[audit.KeyDecision] != "deny" {
		t.Errorf("denial report = %v", report)
	}
}

// TestOpenFile: a file trail is created 0600 and appended to; a directory
// others may write is refused (they could point the name elsewhere), and
// so is a symbolic link at the name.
func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(audit.Event{Op: "get"})
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("audit file: %v, %v", fi, err)
	}

	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(audit.Config{Path: link}); err == nil {
		t.Error("Open(a symbolic link) = nil error")
	}
	loose := filepath.Join(dir, "loose")
	if err := os.Mkdir(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o777)
	if _, err := audit.Open(audit.Config{Path: filepath.Join(loose, "audit.log")}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Open(in a world-writable directory) = %v, want refused", err)
	}
}
