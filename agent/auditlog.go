package agent

import (
	"io"
	"sync"
	"time"
)

// An AuditWriter batches audit events for an underlying writer, so that
// serving a request does not wait on a write to the journal or a file:
// events are appended to a buffer and written every interval, or at once
// when 64 KiB are waiting. At most one interval of events (default 10ms)
// can be lost if the process is killed; Close writes what is left.
//
// An AuditWriter is safe for concurrent use; each Write must be one whole
// event, as slog handlers produce.
type AuditWriter struct {
	w        io.Writer
	mu       sync.Mutex // guards buf, spare, err
	buf      []byte
	spare    []byte // the buffer not being filled, reused to avoid garbage
	err      error
	writeMu  sync.Mutex // serialises writes to w
	stop     chan struct{}
	stopped  chan struct{}
	interval time.Duration
}

const auditBatch = 64 << 10

// NewAuditWriter starts an AuditWriter; interval 0 means 10ms.
func NewAuditWriter(w io.Writer, interval time.Duration) *AuditWriter {
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	a := &AuditWriter{w: w, stop: make(chan struct{}), stopped: make(chan struct{}), interval: interval}
	go a.loop()
	return a
}

// Write buffers one event. It returns the error of an earlier failed
// write, so a broken audit destination is noticed.
func (a *AuditWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	if a.err != nil {
		err := a.err
		a.mu.Unlock()
		return 0, err
	}
	a.buf = append(a.buf, p...)
	full := len(a.buf) >= auditBatch
	a.mu.Unlock()
	if full {
		return len(p), a.Flush()
	}
	return len(p), nil
}

// Flush writes every buffered event.
func (a *AuditWriter) Flush() error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.Lock()
	b := a.buf
	a.buf, a.spare = a.spare[:0], nil
	a.mu.Unlock()
	if len(b) == 0 {
		a.mu.Lock()
		a.spare = b
		a.mu.Unlock()
		return nil
	}
	_, err := a.w.Write(b)
	a.mu.Lock()
	if err != nil {
		a.err = err
	}
	if cap(b) <= 4*auditBatch {
		a.spare = b[:0]
	}
	a.mu.Unlock()
	return err
}

func (a *AuditWriter) loop() {
	defer close(a.stopped)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.Flush()
		}
	}
}

// Close stops the background writer and writes what is left.
func (a *AuditWriter) Close() error {
	close(a.stop)
	<-a.stopped
	return a.Flush()
}
