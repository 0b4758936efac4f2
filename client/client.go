// Package client is the Go client of the keyward agent: what trading
// processes import to fetch secrets over the agent's Unix socket.
//
//	c, err := client.Dial(ctx, "") // $KEYWARD_SOCKET or /run/keyward/agent.sock
//	if err != nil { ... }
//	defer c.Close()
//	s, err := c.Get(ctx, "binance/mm-prod")
//	if errors.Is(err, client.ErrDenied) { ... }
//	defer s.Wipe()
//	sign(s.Bytes())
//
// # Concurrency
//
// A Client is safe for concurrent use. It keeps a small pool of
// connections; each request takes one, so concurrent requests run in
// parallel. A connection that fails is dropped, and a request that failed
// on a connection the agent had closed (for example because it restarted)
// is retried once on a fresh one: every operation is a read, so a retry is
// safe.
//
// # Secrets
//
// A [Secret] holds its value in memory allocated once for it; call
// [Secret.Wipe] when done. Its String, Format and GoString never show the
// value.
//
// The package imports only the standard library and the protocol package.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/keyward/keyward/agent/wire"
)

// DefaultSocket is the agent's socket when neither an argument nor
// $KEYWARD_SOCKET names one.
const DefaultSocket = "/run/keyward/agent.sock"

// SocketEnv is the environment variable that names the agent's socket.
const SocketEnv = "KEYWARD_SOCKET"

// Errors returned for the agent's error codes; test with errors.Is. The
// returned error is an [*Error] carrying the agent's message.
var (
	ErrNotFound    = errors.New("keyward: secret not found")
	ErrDenied      = errors.New("keyward: access denied")
	ErrExpired     = errors.New("keyward: secret expired")
	ErrUnavailable = errors.New("keyward: agent unavailable")
	ErrBadRequest  = errors.New("keyward: bad request")
	ErrRateLimited = errors.New("keyward: rate limited")
	ErrInternal    = errors.New("keyward: agent internal error")
	// ErrProtocol means the agent sent something this client does not
	// understand, or the connection broke mid-answer.
	ErrProtocol = errors.New("keyward: protocol error")
	// ErrClosed means the Client was used after Close.
	ErrClosed = errors.New("keyward: client closed")
)

var codeErrors = map[wire.Code]error{
	wire.CodeNotFound:    ErrNotFound,
	wire.CodeDenied:      ErrDenied,
	wire.CodeExpired:     ErrExpired,
	wire.CodeUnavailable: ErrUnavailable,
	wire.CodeBadRequest:  ErrBadRequest,
	wire.CodeRateLimited: ErrRateLimited,
	wire.CodeInternal:    ErrInternal,
}

// An Error is an error answer from the agent.
type Error struct {
	Code    wire.Code
	Message string
}

// Error returns the agent's message and code.
func (e *Error) Error() string { return fmt.Sprintf("agent: %s (%s)", e.Message, e.Code) }

// Is reports whether target is the sentinel for e's code.
func (e *Error) Is(target error) bool {
	s, ok := codeErrors[e.Code]
	if !ok {
		return target == ErrInternal
	}
	return s == target
}

// maxIdle bounds the connections a Client keeps open while idle.
const maxIdle = 64

// A Client talks to one agent. Create it with [Dial] or [New].
type Client struct {
	dial func(ctx context.Context) (io.ReadWriteCloser, error)

	// turns, when not nil, allows that many requests at a time: one for a
	// Client made by New, whose single connection serialises them.
	turns chan struct{}

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// Dial returns a Client for the agent listening on the Unix socket at
// path; an empty path means $KEYWARD_SOCKET, then [DefaultSocket]. It
// connects once to check that the agent answers.
func Dial(ctx context.Context, path string) (*Client, error) {
	if path == "" {
		path = os.Getenv(SocketEnv)
	}
	if path == "" {
		path = DefaultSocket
	}
	c := &Client{dial: func(ctx context.Context) (io.ReadWriteCloser, error) { return dialUnix(ctx, path) }}
	cn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.put(cn)
	return c, nil
}

// New returns a Client that speaks the protocol over rw, a single
// connection the caller opened. It does not reconnect; concurrent requests
// take turns on the connection.
func New(rw io.ReadWriter) (*Client, error) {
	used := false
	c := &Client{turns: make(chan struct{}, 1), dial: func(context.Context) (io.ReadWriteCloser, error) {
		if used {
			return nil, errors.New("the connection given to client.New is gone")
		}
		used = true
		if d, ok := rw.(deadliner); ok {
			return deadlineNopCloser{nopCloser{rw}, d}, nil
		}
		return nopCloser{rw}, nil
	}}
	cn, err := c.connect(context.Background())
	if err != nil {
		return nil, err
	}
	c.put(cn)
	return c, nil
}

type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }

// deadlineNopCloser keeps the deadlines of a connection given to New, so
// that contexts bound its requests.
type deadlineNopCloser struct {
	nopCloser
	deadliner
}

// Close closes the Client's idle connections. Requests in flight finish;
// later ones fail with [ErrClosed].
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, cn := range idle {
		cn.close()
	}
	return nil
}

// A Secret is a secret value returned by the agent.
type Secret struct {
	// Name and Version identify the value.
	Name    string
	Version uint32
	// Expires is when the agent stops serving this version; zero: never.
	Expires time.Time

	value []byte
}

// Bytes returns the value. It aliases the Secret's memory: do not keep it
// past Wipe.
func (s *Secret) Bytes() []byte { return s.value }

// Wipe zeroes the value.
func (s *Secret) Wipe() {
	clear(s.value)
	s.value = nil
}

// String shows the name, version and length, never the value.
func (s *Secret) String() string {
	return fmt.Sprintf("%s version %d [%d bytes]", s.Name, s.Version, len(s.value))
}

// GoString is like String.
func (s *Secret) GoString() string { return s.String() }

// Format is like String for every verb.
func (s *Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// Get returns the current version of a secret.
func (c *Client) Get(ctx context.Context, name string) (*Secret, error) {
	return c.GetVersion(ctx, name, 0)
}

// GetVersion returns a given version of a secret; 0 means the current one.
func (c *Client) GetVersion(ctx context.Context, name string, version uint32) (*Secret, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var s *Secret
	err := c.do(ctx, &wire.Get{Name: name, Version: version}, func(m wire.Message) error {
		r, ok := m.(*wire.Secret)
		if !ok || r.Name != name || (version != 0 && r.Version != version) {
			return fmt.Errorf("%w: unexpected answer %T to get", ErrProtocol, m)
		}
		// r.Value is the parser's own copy, not the connection's buffer
		// (which is zeroed after use): it becomes the Secret's memory.
		s = &Secret{Name: r.Name, Version: r.Version, value: r.Value}
		if r.Expires != 0 {
			s.Expires = time.Unix(r.Expires, 0)
		}
		return nil
	})
	return s, err
}

// List returns the names of the secrets the caller may get.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var names []string
	err := c.do(ctx, &wire.List{}, func(m wire.Message) error {
		r, ok := m.(*wire.Names)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to list", ErrProtocol, m)
		}
		names = r.Names
		return nil
	})
	return names, err
}

// Status is the agent's health.
type Status struct {
	Healthy bool
	Backend string
	Secrets int
	Uptime  time.Duration
	Agent   string
}

// Status returns the agent's health.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st *Status
	err := c.do(ctx, &wire.Status{}, func(m wire.Message) error {
		r, ok := m.(*wire.StatusOK)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to status", ErrProtocol, m)
		}
		st = &Status{Healthy: r.Healthy, Backend: r.Backend, Secrets: int(r.Secrets),
			Uptime: time.Duration(r.UptimeMS) * time.Millisecond, Agent: r.Agent}
		return nil
	})
	return st, err
}

// do sends req on a pooled connection and passes the answer to use while
// the connection's buffer still holds it. Error answers become *Error. A
// request that failed on a connection the agent had closed is sent again
// on a fresh one: only reads use do.
func (c *Client) do(ctx context.Context, req wire.Message, use func(wire.Message) error) error {
	return c.send(ctx, req, use, true)
}

// doOnce is do for a request that changes something: it is never sent
// twice, since the agent may have acted on it before the connection broke.
func (c *Client) doOnce(ctx context.Context, req wire.Message, use func(wire.Message) error) error {
	return c.send(ctx, req, use, false)
}

func (c *Client) send(ctx context.Context, req wire.Message, use func(wire.Message) error, retry bool) error {
	if c.turns != nil {
		select {
		case c.turns <- struct{}{}:
			defer func() { <-c.turns }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx)
		if err != nil {
			return err
		}
		err = cn.roundTrip(ctx, req, use)
		var werr *Error
		switch {
		case err == nil || errors.As(err, &werr):
			c.put(cn)
			return err
		case errors.Is(err, errStale) && reused && attempt == 0 && retry:
			cn.close()
			continue
		default:
			cn.close()
			return err
		}
	}
}

// get takes an idle connection or opens a new one.
func (c *Client) get(ctx context.Context) (cn *conn, reused bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	if n := len(c.idle); n > 0 {
		cn = c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, true, nil
	}
	c.mu.Unlock()
	cn, err = c.connect(ctx)
	return cn, false, err
}

// put returns a healthy connection to the pool.
func (c *Client) put(cn *conn) {
	c.mu.Lock()
	if !c.closed && len(c.idle) < maxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.close()
	}
}

// Reload asks the agent to re-read name from its store, after a rotation
// or removal, and returns the version it now serves (0: none). The caller
// needs the admin permission on name.
func (c *Client) Reload(ctx context.Context, name string) (uint32, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	var v uint32
	err := c.do(ctx, &wire.Reload{Name: name}, func(m wire.Message) error {
		r, ok := m.(*wire.Reloaded)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to reload", ErrProtocol, m)
		}
		v = r.Version
		return nil
	})
	return v, err
}
