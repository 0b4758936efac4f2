package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/keyward/keyward/agent/wire"
)

// errStale marks a failure that shows the connection was closed by the
// agent before this request reached it, so the request may be retried.
var errStale = errors.New("stale connection")

// conn is one connection to the agent. It is used by one request at a time.
type conn struct {
	rwc io.ReadWriteCloser
	r   *wire.Reader
	out []byte
	id  uint32
}

// close closes the connection and zeroes its read buffer, which may hold
// a secret from an answer that was not consumed.
func (cn *conn) close() {
	cn.r.Reset()
	cn.rwc.Close()
}

// deadliner is implemented by net.Conn.
type deadliner interface{ SetDeadline(time.Time) error }

// dialUnix connects to the agent's socket. A full listen backlog
// (EAGAIN: the agent is busy accepting, or another user floods it) is
// retried with a short backoff until ctx ends, as a blocking connect would
// wait, rather than failed at once.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	wait := 50 * time.Microsecond
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return c, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// connect opens a connection and says hello.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	rwc, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	cn := &conn{rwc: rwc, r: wire.NewReader(rwc, wire.MaxFrameSize), out: make([]byte, 0, 256)}
	err = cn.roundTrip(ctx, &wire.Hello{Versions: []uint16{wire.Version1}}, func(m wire.Message) error {
		if h, ok := m.(*wire.HelloOK); !ok || h.Version != wire.Version1 {
			return fmt.Errorf("%w: unexpected answer %T to hello", ErrProtocol, m)
		}
		return nil
	})
	if err != nil {
		cn.close()
		if errors.Is(err, errStale) {
			err = fmt.Errorf("%w: the agent closed the connection", ErrUnavailable)
		}
		return nil, err
	}
	return cn, nil
}

// roundTrip sends req and reads its answer, honouring ctx's deadline and
// cancellation through the connection's deadline.
func (cn *conn) roundTrip(ctx context.Context, req wire.Message, use func(wire.Message) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := cn.rwc.(deadliner); ok {
		dl, hasDeadline := ctx.Deadline()
		d.SetDeadline(dl)
		if ctx.Done() != nil {
			stop := context.AfterFunc(ctx, func() { d.SetDeadline(time.Unix(1, 0)) })
			defer stop()
		}
		// The connection's deadline may fire a moment before the context
		// notices its own: report the context's error either way.
		defer func() {
			switch {
			case err == nil:
			case ctx.Err() != nil:
				err = fmt.Errorf("%w: %v", ctx.Err(), err)
			case hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl):
				err = fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
			}
		}()
	}
	cn.id++
	if cn.id == 0 {
		cn.id = 1 // id 0 is reserved for messages the agent sends unasked
	}
	cn.out = wire.AppendFrame(cn.out[:0], cn.id, req)
	if _, err := cn.rwc.Write(cn.out); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("%w: %v", errStale, err)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for {
		t, id, body, err := cn.r.ReadFrame()
		var pe *wire.ParseError
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			return fmt.Errorf("%w: %v", errStale, err)
		case errors.As(err, &pe) || errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		default:
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if id == 0 {
			continue // an unrequested message; none is defined for this client yet
		}
		if id != cn.id {
			return fmt.Errorf("%w: answer for request %d, want %d", ErrProtocol, id, cn.id)
		}
		m, err := wire.ParseBody(t, body)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		clear(body)
		if e, ok := m.(*wire.Error); ok {
			return &Error{Code: e.Code, Message: e.Message}
		}
		if err := use(m); err != nil {
			if s, ok := m.(*wire.Secret); ok {
				clear(s.Value) // an answer the caller did not expect
			}
			return err
		}
		return nil
	}
}
