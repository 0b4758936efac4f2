package agent

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/agent/peer"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
)

// conn is one client connection.
type conn struct {
	s    *Server
	c    *net.UnixConn
	uid  uint32 // from SO_PEERCRED at accept
	peer *peer.Peer
	src  *audit.Source // the audit trail with the caller attribute, formatted once
	rec  auditRecord

	signed exchange.Signed // reused by each sign request
	fields []wire.Field    // reused for a Signed's headers and params

	writeMu sync.Mutex // answers and watch notifications share the connection

	notifyMu sync.Mutex
	notifyQ  chan []byte // watch notifications, written by their own goroutine

	mu      sync.Mutex
	busy    bool // a request is being handled
	stopped bool // Shutdown asked the connection to end
}

// frameReader arms the connection's read deadline: the idle timeout while
// waiting for a frame, the frame timeout from the first byte of a frame
// that did not arrive whole. Deadlines are set only when they change what
// is armed, since a frame usually arrives in one read.
type frameReader struct {
	c       *conn
	started bool      // the current frame's first bytes have arrived
	short   bool      // the frame timeout is armed
	idleAt  time.Time // when the idle deadline was last armed
}

func (f *frameReader) Read(p []byte) (int, error) {
	n, err := f.c.c.Read(p)
	if n > 0 && !f.started {
		f.started = true
		if !wholeFrame(p[:n]) {
			f.short = true
			f.c.c.SetReadDeadline(time.Now().Add(f.c.s.cfg.FrameTimeout))
		}
	}
	return n, err
}

// wholeFrame reports whether b starts with a complete frame.
func wholeFrame(b []byte) bool {
	return len(b) >= 4 && uint64(len(b)) >= 4+uint64(binary.BigEndian.Uint32(b))
}

// interrupt ends an idle connection now, and a busy one after its answer.
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if !c.busy {
		c.c.SetReadDeadline(time.Unix(1, 0))
	}
}

// send writes an answer. On a watching connection it goes through the
// notification queue, so that answers and notifications keep their order.
// A client that stops reading cannot hold the connection: writes have a
// deadline.
func (c *conn) send(out []byte) error {
	c.notifyMu.Lock()
	watching := c.notifyQ != nil
	c.notifyMu.Unlock()
	if watching {
		c.notify(slices.Clone(out))
		return nil
	}
	return c.write(out, c.s.cfg.FrameTimeout)
}

// write writes b with a write deadline, serialised with watch
// notifications.
func (c *conn) write(b []byte, timeout time.Duration) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.c.Write(b)
	return err
}

// arm sets the read deadline for the next frame, unless Shutdown has
// asked the connection to end: the frame timeout if the frame has begun,
// else the idle timeout, re-armed at most once a second while a client
// keeps sending whole frames. Both happen under c.mu, so an interrupt
// cannot be overwritten by a later deadline.
func (c *conn) arm(fr *frameReader) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false
	}
	now := time.Now() // deadlines follow the real clock, not Config.Now
	switch {
	case fr.started:
		fr.short = true
		c.c.SetReadDeadline(now.Add(c.s.cfg.FrameTimeout))
	case fr.short || now.Sub(fr.idleAt) > time.Second:
		fr.short = false
		fr.idleAt = now
		c.c.SetReadDeadline(now.Add(c.s.cfg.IdleTimeout))
	}
	return true
}

// setBusy marks the start or end of handling a request; it reports false
// when the connection must end instead.
func (c *conn) setBusy(busy bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = busy
	return !c.stopped
}

// idle reports whether the connection waits for a request, so that it
// can be evicted without cutting an answer short.
func (c *conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.busy && !c.stopped
}

func (c *conn) serve() {
	s := c.s
	defer s.wg.Done()
	defer s.forget(c)
	defer c.c.Close()

	p, err := peer.Attest(c.c, s.cfg.Hasher)
	if err != nil {
		s.log.Warn("closing a connection whose peer could not be attested", "err", err)
		return
	}
	c.peer = p
	c.src = s.audit.For(p.LogValue())
	defer p.Close()
	defer c.stopNotifications()
	defer s.unwatch(c)

	fr := &frameReader{c: c}
	r := wire.NewReader(fr, wire.MaxRequestSize)
	out := make([]byte, 0, 512)
	defer func() { clear(out[:cap(out)]) }()
	hello := false
	for {
		fr.started = r.Buffered() > 0
		if !c.arm(fr) {
			return
		}
		t, id, body, err := r.ReadFrame()
		if err != nil {
			c.logReadError(err, fr.started)
			return
		}
		if !c.setBusy(true) {
			return
		}
		start := time.Now()
		c.rec = auditRecord{}
		var keep bool
		out, keep = c.handle(out[:0], t, id, body, &hello)
		if c.rec.set && c.rec.countsAsDenial() && !s.denials.allow(p.UID()) {
			// Over this uid's budget of audited denials: refuse, count
			// instead of auditing, and make the caller reconnect.
			if len(out) > 0 {
				out = wire.AppendFrame(out[:0], id, errorMessage(wire.CodeRateLimited))
			}
			c.rec.overBudget()
			keep = false
		}
		if len(out) > 0 {
			err = c.send(out)
			clear(out)
		}
		// The audit event follows the answer, off the caller's latency.
		c.emitAudit(start)
		if err != nil {
			s.log.Debug("write failed", "peer", p, "err", err)
			return
		}
		if !c.setBusy(false) || !keep {
			return
		}
	}
}

func (c *conn) logReadError(err error, started bool) {
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, os.ErrDeadlineExceeded):
		if started {
			c.s.log.Info("closing a connection that stalled mid-frame", "peer", c.peer)
		}
	default:
		c.s.log.Info("closing a connection after a read error", "peer", c.peer, "err", err)
	}
}

// handle answers one request frame, appending the response frame to out.
// keep is false when the connection must be closed after the answer. The
// answers to bad input follow docs/protocol.md, "What the agent does with
// bad input".
func (c *conn) handle(out []byte, t wire.Type, id uint32, body []byte, hello *bool) (_ []byte, keep bool) {
	s := c.s
	badRequest := func(msg string) []byte {
		msg = clipText(msg)
		c.auditEvent(t.String(), "", 0, audit.Error, wire.CodeBadRequest, msg)
		return wire.AppendFrame(out, id, &wire.Error{Code: wire.CodeBadRequest, Message: msg})
	}
	if !*hello {
		m, err := wire.ParseBody(t, body)
		h, ok := m.(*wire.Hello)
		if err != nil || !ok {
			return badRequest("hello required"), false
		}
		if id == 0 {
			return badRequest("request id 0 is reserved"), false
		}
		if !slices.Contains(h.Versions, wire.Version1) {
			return badRequest("unsupported protocol version"), false
		}
		*hello = true
		return wire.AppendFrame(out, id, &wire.HelloOK{Version: wire.Version1, Agent: s.cfg.Agent}), true
	}
	if t >= 0x80 {
		return badRequest("unknown operation"), true
	}
	m, err := wire.ParseBody(t, body)
	switch {
	case errors.Is(err, wire.ErrUnknownType):
		return badRequest("unknown operation"), true
	case err != nil:
		return badRequest("malformed request"), true
	case id == 0:
		return badRequest("request id 0 is reserved"), true
	}
	if err := c.peer.Verify(); err != nil {
		// The process that connected is gone or runs something else now:
		// answer nothing more on this connection.
		c.auditEvent(t.String(), requestName(m), 0, audit.Deny, wire.CodeDenied, err.Error())
		return out, false
	}
	pol := s.policy.Load()
	switch m := m.(type) {
	case *wire.Get:
		return c.get(out, id, pol, m), true
	case *wire.List:
		return c.list(out, id, pol), true
	case *wire.Status:
		c.auditEvent("status", "", 0, audit.Allow, 0, "status is open to every connected caller")
		var secrets int
		if pol.Names(c.peer) {
			secrets = s.Secrets() // the count, to callers the policy names only
		}
		return wire.AppendFrame(out, id, &wire.StatusOK{
			Healthy:  s.backend.healthy(),
			Backend:  s.cfg.Backend,
			Secrets:  uint32(secrets),
			UptimeMS: uint64(s.cfg.Now().Sub(s.started).Milliseconds()),
			Agent:    s.cfg.Agent,
		}), true
	case *wire.Reload:
		return c.reload(out, id, pol, m), true
	case *wire.Watch:
		return c.watch(out, id, pol, m), true
	case *wire.Health:
		return c.health(out, id, pol), true
	case *wire.Put:
		return c.put(out, id, pol, m), true
	case *wire.Remove:
		return c.remove(out, id, pol, m), true
	case *wire.Prune:
		return c.prune(out, id, pol), true
	case *wire.Sign:
		return c.sign(out, id, pol, m), true
	case *wire.HMAC:
		return c.hmac(out, id, pol, m), true
	case *wire.Describe:
		return c.describe(out, id, pol, m), true
	case *wire.PutCredential:
		return c.putCredential(out, id, pol, m), true
	case *wire.Hello:
		return badRequest("unexpected hello"), true
	default:
		return badRequest("unknown operation"), true
	}
}

func requestName(m wire.Message) string {
	if g, ok := m.(*wire.Get); ok {
		return g.Name
	}
	return ""
}

func errorMessage(code wire.Code) *wire.Error {
	return &wire.Error{Code: code, Message: code.Message()}
}

// maxClipText bounds the text of an error answer and what the audit
// trail quotes of a request: text made from a caller's request (an
// exchange parser's refusal, a scope's reason, a bad frame, a raw path)
// must neither overflow an answer's 65,535-byte message, which would stop
// the agent, nor fill the audit trail.
const maxClipText = 1024

// clipText returns msg cut to maxClipText bytes, on a character
// boundary, with "…" where it was cut.
func clipText(msg string) string {
	if len(msg) <= maxClipText {
		return msg
	}
	cut := maxClipText - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

// held looks up a version for a request and records the audit event when
// there is none: the caller was allowed, so the code says why. The
// caller holds s.mu.
func (c *conn) held(out []byte, id uint32, req, name string, version uint32, d policy.Decision) (*cacheVersion, []byte) {
	v, code := c.s.cache.lookup(name, version, c.s.cfg.Now())
	if v == nil {
		decision := audit.Error
		if code == wire.CodeExpired {
			decision = audit.Deny
		}
		c.auditDecision(req, name, version, decision, code, d)
		return nil, wire.AppendFrame(out, id, errorMessage(code))
	}
	return v, out
}

// get answers a get request. A caller without rights gets denied whether
// or not the name exists.
func (c *conn) get(out []byte, id uint32, pol *policy.Policy, m *wire.Get) []byte {
	s := c.s
	d, refused, ok := c.authorize(out, id, pol, "get", policy.OpGet, m.Name)
	if !ok {
		return refused
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, refused := c.held(out, id, "get", m.Name, m.Version, d)
	if v == nil {
		return refused
	}
	var exp int64
	if !v.until.IsZero() {
		exp = v.until.Unix()
	}
	out = wire.AppendFrame(out, id, &wire.Secret{Name: m.Name, Version: v.version, Expires: exp, Value: v.secret.Bytes()})
	c.auditDecision("get", m.Name, v.version, audit.Allow, 0, d)
	return out
}

// list answers with the names the caller may both list and get.
func (c *conn) list(out []byte, id uint32, pol *policy.Policy) []byte {
	s := c.s
	s.mu.RLock()
	names := pol.Visible(c.peer, s.cache.names)
	s.mu.RUnlock()
	size := 4 + 5 + 4
	for _, n := range names {
		size += 1 + len(n)
	}
	if size > wire.MaxFrameSize {
		s.log.Error("list answer does not fit in a frame", "names", len(names), "bytes", size)
		c.auditEvent("list", "", 0, audit.Error, wire.CodeInternal, "too many names for one answer")
		return wire.AppendFrame(out, id, errorMessage(wire.CodeInternal))
	}
	c.auditEvent("list", "", 0, audit.Allow, 0, "")
	return wire.AppendFrame(out, id, &wire.Names{Names: names})
}
