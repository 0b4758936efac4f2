package audit

import (
	"bytes"
	"context"
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
	h    slog.Handler
	q    *queue
	path string // the file trail's path, reopened by Reopen; "" for another destination

	// Once started, the goroutine owns the fields down to stopped; Close
	// reads file after the goroutine ends.
	buf     *bytes.Buffer // what h wrote and is not yet written; nil for the journal
	chain   *chain        // nil for the journal
	out     io.Writer
	file    *os.File // the file trail, or nil
	onError func(error)
	attrs   []slog.Attr
	failing bool
	stopped bool
	reopen  chan chan reopened
	done    chan struct{}

	mu      sync.Mutex // guards head and pending, published after each batch
	head    Head
	pending int
}

// Op values of the events the Log writes itself, in a file trail or on
// standard error, never in the journal.
const (
	OpStart  = "start"  // the first event after the Log opens the trail or a new file
	OpStop   = "stop"   // the last event, written by Close
	OpRotate = "rotate" // the last event of a file that Reopen leaves
)

// Open opens the destination cfg names and starts the Log's goroutine.
// A file's directories must be trusted (see package internal/trust): the
// agent appends to it with its privileges, so a directory others could
// write would let them point it at any file. The file is not followed if
// it is a symbolic link. Its last event is read, and the trail continues
// from it with a start event (see the package doc).
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
		return start(&Log{h: h, onError: cfg.OnError}, tail{}), nil
	}
	if path == "stderr" {
		return start(jsonLog(stderr, cfg.OnError, Head{}), tail{empty: true}), nil
	}
	f, t, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l := jsonLog(f, cfg.OnError, t.head)
	l.file, l.path = f, path
	return start(l, t), nil
}

// openFile opens a file trail to append to and reads its last event.
func openFile(path string) (*os.File, tail, error) {
	if err := trust.CheckDirs("audit log", path); err != nil {
		return nil, tail{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, tail{}, fmt.Errorf("failed to open the audit log: %w", err)
	}
	t, err := readTail(f)
	if err != nil {
		f.Close()
		return nil, tail{}, fmt.Errorf("failed to read the end of the audit log %s: %w", path, err)
	}
	return f, t, nil
}

// New returns a Log writing JSON events, one per line, to w, and starts its
// goroutine. Close it to write what is left.
func New(w io.Writer, onError func(error)) *Log {
	return start(jsonLog(w, onError, Head{}), tail{empty: true})
}

// jsonLog returns a Log writing JSON lines to out, chained from head.
func jsonLog(out io.Writer, onError func(error), head Head) *Log {
	buf := new(bytes.Buffer)
	h := slog.NewJSONHandler(buf, nil).WithAttrs([]slog.Attr{slog.String(KeyLog, "audit")})
	return &Log{h: h, buf: buf, chain: newChain(head), out: out, onError: onError}
}

// start writes the start event of a chained Log that continues from t,
// and starts the goroutine.
func start(l *Log, t tail) *Log {
	l.q, l.reopen, l.done = newQueue(), make(chan chan reopened), make(chan struct{})
	if l.chain != nil {
		if t.torn {
			l.buf.WriteByte('\n') // the partial line stays a line of its own
		}
		l.format(l.h, &Event{Level: t.startLevel(), Op: OpStart, Reason: t.startReason()}, false)
		l.publish()
	}
	go l.run()
	return l
}

// Head returns the newest event of a chained Log: written, or about to
// be. It is the zero Head for the journal.
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Stats are a Log's counts, for metrics.
type Stats struct {
	Emitted uint64 // events emitted since the Log started
	Queued  int    // events emitted and not yet formatted (at most 8192)
	Pending int    // bytes formatted and not yet written: more than a batch means the destination fails
}

// Stats returns the Log's counts. No event is ever dropped: while the
// destination fails, events wait (see the package doc).
func (l *Log) Stats() Stats {
	emitted, queued := l.q.counts()
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Emitted: emitted, Queued: queued, Pending: l.pending}
}

// Close writes the events still queued, ends a chained trail with a stop
// event and closes the destination. It waits at most wait for a
// destination that does not take writes.
func (l *Log) Close(wait time.Duration) error {
	l.q.close()
	select {
	case <-l.done:
	case <-time.After(wait):
		return errors.New("audit: events not written: the audit destination does not accept writes")
	}
	if l.file != nil {
		return l.file.Close()
	}
	return nil
}

// reopened is the answer to a Reopen.
type reopened struct {
	ok  bool
	err error
}

// Reopen makes a file trail continue in a new file when the file at its
// path is no longer the one it writes (logrotate renamed it): the old file
// ends with a rotate event, and the new one, created 0600 if missing,
// begins with a start event that continues the chain, so that the files
// verify as one trail. No event is lost: each is in one file or the
// other. It reports whether it opened a new file; it does nothing for
// standard error, the journal, or a file still at its path. When the new
// file cannot be opened, events go on to the old one.
func (l *Log) Reopen() (bool, error) {
	if l.path == "" {
		return false, nil
	}
	answer := make(chan reopened, 1)
	select {
	case l.reopen <- answer:
	case <-l.done:
		return false, errors.New("audit: the log is closed")
	}
	r := <-answer
	return r.ok, r.err
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
	var reopen chan reopened
	for {
		batch, closed := l.q.take()
		for i := range batch {
			l.format(batch[i].h, &batch[i].e, batch[i].request)
		}
		l.q.done(batch)
		if reopen != nil {
			ok, err := l.rotate()
			reopen <- reopened{ok, err}
			reopen = nil
		}
		if closed && l.chain != nil && !l.stopped {
			l.format(l.h, &Event{Op: OpStop, Reason: "the agent closed the trail"}, false)
			l.stopped = true
		}
		l.flush(closed)
		l.publish()
		if closed && (l.buf == nil || l.buf.Len() == 0) {
			return
		}
		select {
		case <-t.C:
		case reopen = <-l.reopen:
		}
	}
}

// format formats one event, sealed by the chain if there is one.
func (l *Log) format(h slog.Handler, e *Event, request bool) {
	l.attrs = e.attrs(l.attrs[:0], request)
	r := slog.NewRecord(time.Now(), e.Level, Message, 0)
	r.AddAttrs(l.attrs...)
	if l.chain == nil {
		// The journal's handler falls back to JSON on standard error: no
		// error is left to act on.
		_ = h.Handle(context.Background(), r)
		return
	}
	start := l.buf.Len()
	_ = h.Handle(context.Background(), r) // writes to memory
	l.chain.seal(l.buf, start)
}

// rotate moves a file trail to a new file at its path, if the file there
// is another (see Reopen).
func (l *Log) rotate() (bool, error) {
	if fi, err := l.file.Stat(); err == nil {
		if at, err := os.Lstat(l.path); err == nil && os.SameFile(fi, at) {
			return false, nil
		}
	}
	f, t, err := openFile(l.path)
	if err != nil {
		return false, err
	}
	l.format(l.h, &Event{Op: OpRotate, Reason: "the trail continues in a new file at " + l.path}, false)
	l.flush(false) // what the old file does not take goes to the new one
	old := l.file
	l.file, l.out = f, f
	old.Close()
	if t.torn {
		l.buf.WriteByte('\n')
	}
	reason := fmt.Sprintf("the trail continues from seq %d, the last event of the file that was at %s before it was renamed", l.chain.seq, l.path)
	if !t.empty {
		reason += "; the lines before this one were in the file already and are not part of the trail"
	}
	l.format(l.h, &Event{Op: OpStart, Reason: reason}, false)
	return true, nil
}

// publish makes the head and the bytes pending visible to Head and Stats.
func (l *Log) publish() {
	if l.chain == nil {
		return
	}
	l.mu.Lock()
	l.head, l.pending = l.chain.head(), l.buf.Len()
	l.mu.Unlock()
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
	emitted uint64
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
	q.emitted++
	q.mu.Unlock()
}

func (q *queue) counts() (emitted uint64, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.emitted, len(q.pending)
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
