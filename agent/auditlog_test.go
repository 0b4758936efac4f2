package agent_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/keyward/keyward/agent"
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

// TestAuditWriterRetries: events written while the destination fails are
// kept and written once it works again; the failure is reported once.
func TestAuditWriterRetries(t *testing.T) {
	w := &flakyWriter{broken: true}
	var reported []error
	a := agent.NewAuditWriter(w, 0, func(err error) { reported = append(reported, err) })
	a.Write([]byte("one\n"))
	if err := a.Flush(); err == nil {
		t.Fatal("Flush() to a failing writer = nil")
	}
	a.Write([]byte("two\n"))
	a.Flush()
	w.set(false)
	a.Write([]byte("three\n"))
	if err := a.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if got := w.buf.String(); got != "one\ntwo\nthree\n" {
		t.Errorf("written = %q, want every event once, in order", got)
	}
	if len(reported) != 1 {
		t.Errorf("onError called %d times, want once per run of failures", len(reported))
	}
}
