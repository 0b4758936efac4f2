package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyward/keyward/client"
)

// valuePrefix + the version number is every version's value, so that an
// answer's value can be checked against its version.
const valuePrefix = "soak-value-"

func valueOf(version uint32) []byte {
	return strconv.AppendUint([]byte(valuePrefix), uint64(version), 10)
}

// A worker is one trading connection: its own socket, a client.New over
// it, and Get in a loop. client.New does not reconnect, so a connection
// the agent closes shows as an error instead of being hidden by a retry.
type worker struct {
	s   *soak
	id  int
	raw *trackedConn
	c   *client.Client

	last        uint32 // the version of the last answer
	answers     uint64
	all, flap   hist // latencies of every get, and of gets started during the flap
	errs        []getError
	errsDropped int
	transitions []transition // every change of version seen
	wrongValue  uint64       // answers whose value is not their version's
	older       []olderAnswer
	reconnects  int
}

// A getError is a get that got no secret.
type getError struct {
	at, end time.Duration // since the soak started
	code    string        // the agent's code, or timeout, closed_by_agent, transport
	msg     string
}

// A transition is an answer whose version differs from the connection's
// previous answer (the first answer is one, from 0).
type transition struct {
	at, end  time.Duration
	from, to uint32
	expires  time.Time // when the agent stops serving the version; zero: not set
}

// An olderAnswer is a get that started after a rotation was reported
// stored and was answered an older version.
type olderAnswer struct {
	at          time.Duration
	got, stored uint32
}

const maxErrsPerWorker = 50000

// trackedConn is a Unix connection that remembers whether the agent
// closed it.
type trackedConn struct {
	*net.UnixConn
	closedByPeer atomic.Bool
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.UnixConn.Read(p)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		c.closedByPeer.Store(true)
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.UnixConn.Write(p)
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		c.closedByPeer.Store(true)
	}
	return n, err
}

func (w *worker) connect() error {
	nc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: w.s.cfg.socket, Net: "unix"})
	if err != nil {
		return err
	}
	raw := &trackedConn{UnixConn: nc}
	raw.SetDeadline(time.Now().Add(w.s.cfg.deadline))
	c, err := client.New(raw)
	if err != nil {
		nc.Close()
		return err
	}
	w.raw, w.c = raw, c
	return nil
}

// drop closes the connection after a transport error: a client.New
// client cannot be used again.
func (w *worker) drop() {
	if w.raw != nil {
		w.raw.Close()
	}
	w.raw, w.c = nil, nil
}

// run gets the secret until ctx ends.
func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		if w.c == nil {
			at := w.s.since()
			if err := w.connect(); err != nil {
				w.fail(at, w.s.since(), "connect", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if w.answers > 0 || len(w.errs) > 0 {
				w.reconnects++
			}
		}
		w.get()
	}
}

// get makes one request and records its answer.
func (w *worker) get() (uint32, error) {
	s := w.s
	stored := s.mustServe.Load()
	inFlap := s.phase.Load() == phaseFlap
	t0 := time.Now()
	w.raw.SetDeadline(t0.Add(s.cfg.deadline)) // client.New does not apply a context's deadline
	sec, err := w.c.Get(context.Background(), s.cfg.name)
	t1 := time.Now()
	lat := t1.Sub(t0)
	w.all.add(lat)
	if inFlap {
		w.flap.add(lat)
	}
	at, end := t0.Sub(s.start), t1.Sub(s.start)
	if err != nil {
		w.fail(at, end, "", err)
		return 0, err
	}
	w.answers++
	v := sec.Version
	if subtle.ConstantTimeCompare(sec.Bytes(), valueOf(v)) != 1 {
		w.wrongValue++
	}
	if v != w.last {
		w.transitions = append(w.transitions, transition{at: at, end: end, from: w.last, to: v, expires: sec.Expires})
		w.last = v
	}
	if v < stored && len(w.older) < 1000 {
		w.older = append(w.older, olderAnswer{at: at, got: v, stored: stored})
	}
	sec.Wipe()
	return v, nil
}

// fail records a get that failed; a transport error drops the connection.
func (w *worker) fail(at, end time.Duration, code string, err error) {
	var ce *client.Error
	switch {
	case code != "":
	case errors.As(err, &ce):
		code = ce.Code.String()
	case w.raw != nil && w.raw.closedByPeer.Load():
		code = "closed_by_agent"
	case errors.Is(err, os.ErrDeadlineExceeded):
		code = "timeout"
	default:
		code = "transport"
	}
	if ce == nil {
		w.drop()
	}
	if len(w.errs) >= maxErrsPerWorker {
		w.errsDropped++
		return
	}
	w.errs = append(w.errs, getError{at: at, end: end, code: code, msg: err.Error()})
}
