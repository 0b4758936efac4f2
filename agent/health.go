package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
)

// backendState is what the agent knows of its backend from the periodic
// checks Run makes: whether the last one passed, since when, and when one
// last passed. It starts healthy: the store was just loaded with it.
type backendState struct {
	mu     sync.Mutex
	ok     bool
	err    string    // the last check's failure, "" when ok
	since  time.Time // when ok last changed; zero: not since start
	lastOK time.Time
}

// record stores a check's result and reports whether the state changed.
func (b *backendState) record(err error, now time.Time) (changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := err == nil
	changed = ok != b.ok
	if changed {
		b.since = now
	}
	b.ok = ok
	b.err = ""
	if ok {
		b.lastOK = now
	} else {
		b.err = err.Error()
	}
	return changed
}

func (b *backendState) healthy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ok
}

// checkBackend runs one health check, bounded by timeout, records it, and
// reports a change in the log and the audit trail. It returns the check's
// error.
func (s *Server) checkBackend(ctx context.Context, check func(context.Context) error, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := check(cctx)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err() // stopping: not the backend's fault
	}
	now := s.cfg.Now()
	changed := s.backend.record(err, now)
	s.metrics.Backend(err == nil, now)
	if !changed {
		return err
	}
	if err != nil {
		s.log.Error("backend unavailable; serving what the agent holds continues", "err", err)
		s.systemEvent(slog.LevelError, "backend", audit.Error, "", 0,
			"the backend does not answer; the agent serves what it holds and retries: "+err.Error())
	} else {
		s.log.Info("backend available again")
		s.systemEvent(slog.LevelInfo, "backend", audit.Allow, "", 0, "the backend answers again")
	}
	return err
}

// health answers a Health request. Any caller may ask; secrets and their
// problems are told only to callers the policy names, and only for names
// they may list or administer.
func (c *conn) health(out []byte, id uint32, pol *policy.Policy) []byte {
	s := c.s
	m := &wire.HealthOK{Problems: []wire.Issue{}}
	s.backend.mu.Lock()
	m.BackendOK = s.backend.ok
	m.BackendSince = unixOrZero(s.backend.since)
	m.LastOK = unixOrZero(s.backend.lastOK)
	s.backend.mu.Unlock()
	if pol.Names(c.peer) {
		now := s.cfg.Now()
		s.mu.RLock()
		m.Secrets = uint32(s.cache.Len())
		for _, name := range s.cache.names {
			e := s.cache.secrets[name]
			st, serving := e.state(now)
			if st == stateOK {
				continue
			}
			if !pol.Decide(c.peer, policy.OpList, name).Allowed && !pol.Decide(c.peer, policy.OpAdmin, name).Allowed {
				continue
			}
			m.Problems = append(m.Problems, wire.Issue{Name: name, State: st.issue(), Serving: serving, Newest: e.latest})
		}
		s.mu.RUnlock()
	}
	c.auditEvent("health", "", 0, audit.Allow, 0, "health is open to every connected caller")
	return wire.AppendFrame(out, id, m)
}

func (s secretState) issue() wire.IssueState {
	switch s {
	case stateStale:
		return wire.IssueStale
	case stateUnavailable:
		return wire.IssueUnavailable
	}
	return wire.IssueDamaged
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
