package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/peer"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/store"
)

// ErrServerClosed is returned by [Server.Serve] after [Server.Shutdown].
var ErrServerClosed = errors.New("agent: server closed")

// Config configures a [Server]. Policy is required; every other zero field
// means its default.
type Config struct {
	// Policy decides who may do what. It can be replaced while serving
	// with [Server.SetPolicy].
	Policy *policy.Policy
	// Store is the store the agent serves and writes for administrative
	// requests, opened with its backend. Nil serves only what
	// [Server.SetCache] installs and answers administrative requests
	// unavailable.
	Store *store.Store
	// Backend names the root-key backend in status answers ("pkcs11").
	Backend string
	// Agent is the software name and version sent in hello and status.
	Agent string
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Audit receives one event per decision; nil discards them. The
	// caller closes it after [Server.Close].
	Audit *audit.Log
	// MaxConns bounds open connections; more are closed at accept.
	// Default 1024.
	MaxConns int
	// MaxConnsPerUID bounds the open connections of one uid, so that one
	// user cannot take every slot. Default 256.
	MaxConnsPerUID int
	// FrameTimeout bounds how long a client may take to send the rest of
	// a frame once its first byte arrived. Default 2s.
	FrameTimeout time.Duration
	// IdleTimeout closes connections that send nothing for this long.
	// Default 10m.
	IdleTimeout time.Duration
	// Hasher hashes caller executables; nil means a default one.
	Hasher *peer.Hasher
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Import, if set, imports the bundles provisioners delivered to the
	// host (store.ImportInbox on the fleet inbox) into Store; it runs
	// before the store is read at start and at each reload, and each
	// bundle imported or refused is logged and audited.
	Import func(ctx context.Context) ([]store.InboxResult, error)
	// Metrics, if set, receives the agent's counts and states.
	Metrics Metrics
}

// A Server serves secrets from a [Cache] over Unix stream connections to
// the callers its policy names. Each connection's peer is attested at
// accept, before a byte is read, and re-verified before every answer.
//
// A Server is safe for concurrent use: SetCache and SetPolicy may be called
// while it serves.
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   Metrics
	audit     *audit.Log
	ownAudit  bool // the Server made audit and closes it
	watch     watchers
	denials   *budgets // audited denials per uid
	connects  *budgets // new connections per uid
	refused   refusalLog
	backend   backendState
	started   time.Time
	stop      context.Context // done once Shutdown starts: work for a connection ends
	stopNow   context.CancelFunc
	reportsWG sync.WaitGroup

	mu    sync.RWMutex // guards cache; readers hold it while copying a secret out
	cache *Cache

	storeMu sync.Mutex // one store reload, prune or write at a time

	nonces nonces // exchange nonces per API key

	policy atomic.Pointer[policy.Policy]

	connsMu   sync.Mutex // guards conns, byUID, listeners; taken before a conn's mu
	conns     map[*conn]struct{}
	byUID     map[uint32]map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closing   atomic.Bool
	wg        sync.WaitGroup
}

// New returns a Server with an empty cache.
func New(cfg Config) (*Server, error) {
	if cfg.Policy == nil {
		return nil, errors.New("agent: no policy configured")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.MaxConnsPerUID <= 0 {
		cfg.MaxConnsPerUID = 256
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = 2 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.Hasher == nil {
		cfg.Hasher = peer.NewHasher(0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Agent == "" {
		cfg.Agent = "keyward"
	}
	s := &Server{
		cfg:       cfg,
		log:       orDefault(cfg.Logger, slog.New(slog.DiscardHandler)),
		metrics:   orDefault[Metrics](cfg.Metrics, noMetrics{}),
		audit:     cfg.Audit,
		started:   cfg.Now(),
		cache:     &Cache{secrets: map[string]*cacheEntry{}},
		conns:     make(map[*conn]struct{}),
		byUID:     make(map[uint32]map[*conn]struct{}),
		listeners: make(map[net.Listener]struct{}),
	}
	if s.audit == nil {
		s.audit, s.ownAudit = audit.New(io.Discard, nil), true
	}
	s.stop, s.stopNow = context.WithCancel(context.Background())
	s.policy.Store(cfg.Policy)
	s.backend.ok = true
	s.watch.conns = make(map[*conn]map[string]uint32)
	s.denials = newDenials()
	s.connects = newBudgets(connectRate, connectBurst)
	s.refused.log = s.log
	s.nonces.now = cfg.Now
	if cfg.Store != nil {
		s.nonces.marks = cfg.Store
	}
	s.reportsWG.Go(s.reportLoop)
	return s, nil
}

// reportLoop writes, once a second until the Server stops, the counts of
// refusals over the audit budget.
func (s *Server) reportLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop.Done():
			reportDenials(s.denials, s.audit)
			return
		case <-t.C:
			reportDenials(s.denials, s.audit)
		}
	}
}

// systemEvent audits an act of the agent's own: no caller, no latency.
func (s *Server) systemEvent(level slog.Level, op string, d audit.Decision, secret string, version uint32, reason string) {
	s.audit.Emit(audit.Event{Level: level, Op: op, Decision: d, Secret: secret, Version: version, Reason: reason})
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// SetCache swaps in c, destroys the previous cache once no request is
// copying from it, and tells watching connections what changed.
func (s *Server) SetCache(c *Cache) {
	s.mu.Lock()
	old := s.cache
	s.cache = c
	s.mu.Unlock()
	old.Destroy()
	s.metrics.Secrets(c.Len(), c.expiries(s.cfg.Now()))
	s.notifyWatchers()
}

// servedCache returns the cache being served. Only the goroutine that
// calls SetCache may use it, since SetCache destroys it.
func (s *Server) servedCache() *Cache {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cache
}

// current returns the version of name a request for its current version
// gets now, 0 if none; exists reports whether the store holds the name at
// all (a version of it, loaded or not).
func (s *Server) current(name string) (version uint32, exists bool) {
	now := s.cfg.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.cache.secrets[name]
	if e == nil {
		return 0, false
	}
	if v, _ := e.current(now); v != nil {
		return v.version, true
	}
	return 0, true
}

// warnExpiring writes a warning audit event for each secret whose current
// version stops being served within window.
func (s *Server) warnExpiring(window time.Duration) {
	now := s.cfg.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, name := range s.cache.names {
		v, _ := s.cache.secrets[name].current(now)
		if v == nil || v.until.IsZero() || v.until.Sub(now) > window {
			continue
		}
		s.audit.Emit(audit.Event{Level: slog.LevelWarn, Op: "expiry", Secret: name, Version: v.version, Expires: v.until,
			Reason: "the current version expires within the warning window: rotate it"})
	}
}

// backendFailures returns how many versions did not load because the
// backend did not unwrap them.
func (s *Server) backendFailures() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cache.failures()
}

// SetPolicy replaces the policy for every request that starts after it.
// Per-key budgets the new policy shares with the old carry over what was
// spent ([policy.Policy.Inherit]).
func (s *Server) SetPolicy(p *policy.Policy) {
	p.Inherit(s.policy.Load())
	s.policy.Store(p)
}

// Secrets returns the number of secrets being served.
func (s *Server) Secrets() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cache.Len()
}

// Serve accepts connections on l until l fails or Shutdown is called, and
// serves each in its own goroutine. l must yield *net.UnixConn. Serve
// always returns a non-nil error; after Shutdown, [ErrServerClosed].
func (s *Server) Serve(l net.Listener) error {
	if !s.trackListener(l, true) {
		return ErrServerClosed
	}
	defer s.trackListener(l, false)
	var delay time.Duration
	for {
		cn, err := s.accept(l)
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || temporaryAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go cn.serve()
	}
}

// temporaryAccept reports whether an accept error passes with time: out
// of file descriptors or memory, or a connection aborted before accept.
func temporaryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) trackListener(l net.Listener, add bool) bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

// Shutdown stops accepting, lets requests in flight finish, closes idle
// connections, and waits for every connection to end or ctx to expire.
// Then it closes the rest and waits at most abandonAfter more: a handler
// stuck in a system call on a file the peer chose (an executable on a
// hung file system) is abandoned rather than holding the agent up. It does
// not destroy the cache: call Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopNow()
	s.connsMu.Lock()
	s.closing.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.interrupt()
	}
	s.connsMu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.connsMu.Lock()
	for c := range s.conns {
		c.c.Close()
	}
	s.connsMu.Unlock()
	select {
	case <-done:
	case <-time.After(abandonAfter):
		s.log.Error("connections still busy after shutdown; abandoning them")
	}
	return ctx.Err()
}

// abandonAfter bounds how long Shutdown and Close wait for work that
// should end at once.
const abandonAfter = 2 * time.Second

// Close zeroes every cached secret and stops the Server's own goroutines.
// Call it once, after Shutdown. An audit Log from Config stays open: its
// owner closes it after Close.
func (s *Server) Close() {
	s.stopNow()
	s.SetCache(&Cache{secrets: map[string]*cacheEntry{}})
	s.reportsWG.Wait()
	if s.ownAudit {
		s.audit.Close(abandonAfter)
	}
}

// Harden makes the process unfit for leaking secrets through the system:
// not dumpable (no core files, no ptrace by same-uid processes, /proc/PID
// files owned by root) and a zero core size limit.
func Harden() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("failed to make the process non-dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("failed to disable core files: %w", err)
	}
	return nil
}
