package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/keyward/keyward/internal/trust"
	"github.com/keyward/keyward/systemd"
)

// Bounds of the queue and of the bytes kept unwritten (see the package doc).
const (
	maxQueued  = 8192
	maxPending = 16 << 20
	every      = 2 * time.Millisecond
)

// Config says where a [Log] writes.
type Config struct {
	// Path is "stderr", or a file that events are appended to (created
	// 0600 if missing). Default "stderr".
	Path string
	// Stderr is standard error; nil means os.Stderr.
	Stderr io.Writer
	// Journal, when Path is "stderr", sends each event to the systemd
	// journal as its own entry (SYSLOG_IDENTIFIER=keyward-audit) instead
	// of JSON: set it when standard error is the journal.
	Journal bool
	// OnError, if set, is told when writes start failing.
	OnError func(error)
}

// A Log writes audit events; see the package doc.
type Log struct {
	h       slog.Handler
	q       *queue
	buf     *bytes.Buffer // what h wrote and is not yet written; nil for the journal
	out     io.Writer
	closeFn func() error
	onError func(error)
	failing bool
	done    chan struct{}
}

// Open opens the destination cfg names and starts the Log's goroutine.
// A file's directories must be trusted (see package internal/trust): the
// agent appends to it with its privileges, so a directory others could
// write would let them point it at any file. The file is not followed if
// it is a symbolic link.
func Open(cfg Config) (*Log, error) {
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	path := cfg.Path
	if path == "" {
		path = "stderr"
	}
	if path == "stderr" && cfg.Journal {
		h := systemd.NewJournalHandler(systemd.AuditIdentifier, stderr, nil)
		return start(h, nil, nil, nil, cfg.OnError), nil
	}
	out, closeFn := stderr, func() error { return nil }
	if path != "stderr" {
		if err := trust.CheckDirs("audit log", path); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("failed to open the audit log: %w", err)
		}
		out, closeFn = f, f.Close
	}
	buf := new(bytes.Buffer)
	return start(jsonHandler(buf), buf, out, closeFn, cfg.OnError), nil
}

func jsonHandler(buf *bytes.Buffer) slog.Handler {
	return slog.NewJSONHandler(buf, nil).WithAttrs([]slog.Attr{slog.String(KeyLog, "audit")})
}

// New returns a Log writing JSON events, one per line, to w, and starts its
// goroutine. Close it to write what is left.
func New(w io.Writer, onError func(error)) *Log {
	buf := new(bytes.Buffer)
	return start(jsonHandler(buf), buf, w, nil, onError)
}

func start(h slog.Handler, buf *bytes.Buffer, out io.Writer, closeFn func() error, onError func(error)) *Log {
	if closeFn == nil {
		closeFn = func() error { return nil }
	}
	l := &Log{h: h, q: newQueue(), buf: buf, out: out, closeFn: closeFn, onError: onError, done: make(chan struct{})}
	go l.run()
	return l
}

// Close writes the events still queued and closes the destination. It
// waits at most wait for a destination that does not take writes.
func (l *Log) Close(wait time.Duration) error {
	l.q.close()
	select {
	case <-l.done:
	case <-time.After(wait):
		return errors.New("audit: events not written: the audit destination does not accept writes")
	}
	return l.closeFn()
}

// Queued returns the number of events waiting for the Log's goroutine.
func (l *Log) Queued() int {
	l.q.mu.Lock()
	defer l.q.mu.Unlock()
	return len(l.q.pending)
}

// run writes queued events every batch interval until the queue is closed
// and drained.
func (l *Log) run() {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	var attrs []slog.Attr
	for {
		batch, closed := l.q.take()
		for i := range batch {
			attrs = write(&batch[i], attrs)
		}
		l.q.done(batch)
		l.flush(closed)
		if closed && (l.buf == nil || l.buf.Len() == 0) {
			return
		}
		<-t.C
	}
}

// flush writes the bytes formatted so far, keeping what could not be
// written; while too much waits it retries until it is written, holding
// the queue (and so Emit) back. At close it gives up after a few tries.
func (l *Log) flush(closing bool) {
	if l.buf == nil {
		return
	}
	for tries := 0; l.buf.Len() > 0; tries++ {
		n, err := l.out.Write(l.buf.Bytes())
		l.buf.Next(n)
		if err == nil {
			l.failing = false
			continue
		}
		if !l.failing && l.onError != nil {
			l.onError(err)
		}
		l.failing = true
		if l.buf.Len() < maxPending || closing && tries >= 3 {
			return
		}
		time.Sleep(10 * every)
	}
}

// queued is one event on its way to the goroutine.
type queued struct {
	h       slog.Handler // carries the caller
	e       Event
	request bool
}

// queue hands events to the goroutine in batches, so that an event costs
// the caller an append under a mutex, not a goroutine wake-up.
type queue struct {
	mu      sync.Mutex
	space   sync.Cond // signalled when the goroutine takes a batch
	pending []queued
	spare   []queued
	closed  bool
}

func newQueue() *queue {
	q := &queue{}
	q.space.L = &q.mu
	return q
}

func (q *queue) push(e queued) {
	q.mu.Lock()
	for len(q.pending) >= maxQueued && !q.closed {
		q.space.Wait()
	}
	q.pending = append(q.pending, e)
	q.mu.Unlock()
}

// take returns the queued events; done gives the slice back for reuse.
func (q *queue) take() (batch []queued, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch, q.pending, q.spare = q.pending, q.spare[:0], nil
	q.space.Broadcast()
	return batch, q.closed
}

func (q *queue) done(batch []queued) {
	clear(batch)
	q.mu.Lock()
	q.spare = batch[:0]
	q.mu.Unlock()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.space.Broadcast()
	q.mu.Unlock()
}
