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
// A failed write loses nothing: the unwritten events stay buffered and are
// retried, and onError is told once per run of failures. While more than
// maxPending bytes wait, Write blocks until they are written, which in the
// agent stops serving: it fails closed rather than serving unaudited.
//
// An AuditWriter is safe for concurrent use; each Write must be one whole
// event, as slog handlers produce.
type AuditWriter struct {
	w        io.Writer
	onError  func(error)
	interval time.Duration

	mu      sync.Mutex // guards buf, spare, failing
	buf     []byte
	spare   []byte // the buffer not being filled, reused to avoid garbage
	failing bool

	writeMu sync.Mutex // serialises writes to w
	stop    chan struct{}
	stopped chan struct{}
}

const (
	auditBatch = 64 << 10
	maxPending = 16 << 20
)

// NewAuditWriter starts an AuditWriter; interval 0 means 10ms. onError, if
// not nil, is called when writes start failing.
func NewAuditWriter(w io.Writer, interval time.Duration, onError func(error)) *AuditWriter {
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	a := &AuditWriter{w: w, onError: onError, interval: interval, stop: make(chan struct{}), stopped: make(chan struct{})}
	go a.loop()
	return a
}

// Write buffers one event.
func (a *AuditWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	for len(a.buf) >= maxPending {
		a.mu.Unlock()
		if err := a.Flush(); err != nil {
			time.Sleep(a.interval)
		}
		a.mu.Lock()
	}
	a.buf = append(a.buf, p...)
	full := len(a.buf) >= auditBatch
	a.mu.Unlock()
	if full {
		a.Flush()
	}
	return len(p), nil
}

// Flush writes every buffered event, or keeps what could not be written
// and returns the error.
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
	n, err := a.w.Write(b)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		// Keep the unwritten events, ahead of those that came since.
		a.buf = append(b[n:len(b):len(b)], a.buf...)
		if !a.failing && a.onError != nil {
			a.onError(err)
		}
		a.failing = true
		return err
	}
	a.failing = false
	if cap(b) <= 4*auditBatch {
		a.spare = b[:0]
	}
	return nil
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
