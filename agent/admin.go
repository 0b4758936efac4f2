package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/store"
)

// Administrative requests (Reload, Put, Remove, Prune) change the store
// through the agent, which holds the backend session: an administrator
// needs the admin permission on the names, not the backend's PIN nor a
// shell as the store's owner. Each answers once the agent serves the
// result. One store operation runs at a time (storeMu); each gives up when
// the agent stops.

// adminError answers an administrative request that failed after it was
// allowed: the caller is an administrator of the name, so the message
// says what went wrong; a backend failure is logged in full.
func (c *conn) adminError(out []byte, id uint32, req, name string, d policy.Decision, code wire.Code, msg string, err error) []byte {
	if err != nil {
		c.s.log.Error(req+" failed", "secret", name, "peer", c.peer, "err", err)
	}
	return c.refuse(out, id, req, name, 0, d, code, msg)
}

// reload answers a Reload: the store is re-read, so that a change made
// by a command that wrote the store itself is served before it returns.
func (c *conn) reload(out []byte, id uint32, pol *policy.Policy, m *wire.Reload) []byte {
	s := c.s
	d, refused, ok := c.authorize(out, id, pol, "reload", policy.OpAdmin, m.Name)
	if !ok {
		return refused
	}
	if err := s.reloadStore(s.stop); err != nil {
		return c.adminError(out, id, "reload", m.Name, d, wire.CodeUnavailable, "the agent could not re-read its store; see its log", err)
	}
	v, exists := s.current(m.Name)
	if v == 0 && exists {
		// On disk, but its newest version did not load: the admin must
		// not be told it is gone.
		return c.adminError(out, id, "reload", m.Name, d, wire.CodeUnavailable,
			m.Name+" is in the store but its newest version could not be loaded; see keyward status", nil)
	}
	c.auditDecision("reload", m.Name, v, audit.Allow, 0, d)
	return wire.AppendFrame(out, id, &wire.Reloaded{Version: v})
}

// put answers a Put: the agent seals the value as a new version, stores
// it and serves it.
func (c *conn) put(out []byte, id uint32, pol *policy.Policy, m *wire.Put) []byte {
	defer clear(m.Value) // the parser's copy of the secret
	d, refused, ok := c.authorize(out, id, pol, "put", policy.OpAdmin, m.Name)
	if !ok {
		return refused
	}
	return c.storePut(out, id, d, m.Name, m.Value, m.Flags, m.Expires, m.Grace, nil)
}

// storePut seals and stores a value through the agent: Put, and
// PutCredential with the credential's attributes.
func (c *conn) storePut(out []byte, id uint32, d policy.Decision, name string, value []byte, flags wire.PutFlags,
	expires int64, grace uint32, cred *store.CredentialInfo) []byte {
	s := c.s
	if len(value) == 0 {
		return c.adminError(out, id, "put", name, d, wire.CodeBadRequest, "the value is empty; nothing was stored", nil)
	}
	opts := store.PutOptions{
		NewVersion: flags&wire.PutNewVersion != 0,
		MustExist:  flags&wire.PutMustExist != 0,
		Grace:      time.Duration(grace) * time.Second,
		Credential: cred,
	}
	if expires != 0 {
		opts.Expires = time.Unix(expires, 0)
	}
	v, err := s.writeStore(func(st *store.Store) (uint32, error) { return st.Put(s.stop, name, value, opts) })
	if err == nil && !s.holds(name, v) {
		// The reload keeps serving what it held when the new version does
		// not unwrap (the backend went away after wrapping it): stored is
		// then not served, and the caller must not be told it is.
		err = fmt.Errorf("%w: version %d did not load", errNotServed, v)
	}
	switch {
	case errors.Is(err, store.ErrExists):
		return c.adminError(out, id, "put", name, d, wire.CodeBadRequest, err.Error()+": rotate it, or put --new-version", nil)
	case errors.Is(err, store.ErrNotFound):
		return c.adminError(out, id, "put", name, d, wire.CodeNotFound, err.Error()+": put it first (a rotation never creates a secret)", nil)
	case errors.Is(err, errNoStore):
		return c.adminError(out, id, "put", name, d, wire.CodeUnavailable, err.Error(), nil)
	case errors.Is(err, errNotServed):
		return c.adminError(out, id, "put", name, d, wire.CodeUnavailable,
			fmt.Sprintf("%s version %d is stored but the agent could not load it; see keyward status", name, v), err)
	case err != nil && store.IsInputError(err):
		return c.adminError(out, id, "put", name, d, wire.CodeBadRequest, err.Error(), nil)
	case err != nil:
		return c.adminError(out, id, "put", name, d, wire.CodeUnavailable, "the agent could not seal and store the value; see its log", err)
	}
	var prevUntil int64
	if v > 1 && grace > 0 {
		prevUntil = unixOrZero(s.until(name, v-1))
	}
	c.auditDecision("put", name, v, audit.Allow, 0, d)
	return wire.AppendFrame(out, id, &wire.Stored{Version: v, PrevUntil: prevUntil})
}

// remove answers a Remove: one version, or every version, is deleted and
// no longer served.
func (c *conn) remove(out []byte, id uint32, pol *policy.Policy, m *wire.Remove) []byte {
	s := c.s
	d, refused, ok := c.authorize(out, id, pol, "remove", policy.OpAdmin, m.Name)
	if !ok {
		return refused
	}
	n, err := s.writeStore(func(st *store.Store) (uint32, error) {
		var n int
		var err error
		if m.Version == 0 {
			n, err = st.Remove(m.Name)
		} else {
			n, err = st.RemoveVersion(m.Name, m.Version)
		}
		return uint32(n), err
	})
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrCurrentVersion):
		return c.adminError(out, id, "remove", m.Name, d, wire.CodeNotFound, err.Error(), nil)
	case errors.Is(err, errNoStore):
		return c.adminError(out, id, "remove", m.Name, d, wire.CodeUnavailable, err.Error(), nil)
	case err != nil && !errors.Is(err, errNotServed):
		return c.adminError(out, id, "remove", m.Name, d, wire.CodeUnavailable, "the agent could not remove it; see its log", err)
	}
	c.auditDecision("remove", m.Name, m.Version, audit.Allow, 0, d)
	return wire.AppendFrame(out, id, &wire.Removed{Count: n})
}

// prune answers a Prune for the secrets the caller administers.
func (c *conn) prune(out []byte, id uint32, pol *policy.Policy) []byte {
	s := c.s
	mine := func(name string) bool { return pol.Decide(c.peer, policy.OpAdmin, name).Allowed }
	pruned, err := s.prune(mine)
	if err != nil {
		s.log.Error("prune failed", "peer", c.peer, "err", err)
		c.auditEvent("prune", "", 0, audit.Error, wire.CodeUnavailable, "the agent could not prune; see its log")
		return wire.AppendFrame(out, id, errorMessage(wire.CodeUnavailable))
	}
	m := &wire.Pruned{Versions: make([]wire.PrunedVersion, len(pruned))}
	for i, p := range pruned {
		m.Versions[i] = wire.PrunedVersion{Name: p.Name, Version: p.Version, Retired: p.Retired.Unix()}
	}
	c.auditEvent("prune", "", 0, audit.Allow, 0, fmt.Sprintf("%d version(s) deleted", len(pruned)))
	return wire.AppendFrame(out, id, m)
}

var (
	errNoStore   = errors.New("this agent has no store to write (it serves a fixed set of secrets)")
	errNotServed = errors.New("the change is stored but not served")
)

// writeStore runs one store write and reloads the cache, so that the
// change is served when it returns. A write that succeeded but whose
// result the agent cannot serve returns errNotServed with the result.
func (s *Server) writeStore(write func(*store.Store) (uint32, error)) (uint32, error) {
	st := s.cfg.Store
	if st == nil {
		return 0, errNoStore
	}
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	v, err := write(st)
	if err != nil {
		return v, err
	}
	if err := s.reloadLocked(s.stop); err != nil {
		return v, fmt.Errorf("%w: %w", errNotServed, err)
	}
	return v, nil
}

// holds reports whether the cache holds a version.
func (s *Server) holds(name string, version uint32) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cache.held(name, version) != nil
}

// until returns when a version held stops being served; zero: never, or
// not held.
func (s *Server) until(name string, version uint32) time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v := s.cache.held(name, version); v != nil {
		return v.until
	}
	return time.Time{}
}

// reloadStore imports the fleet inbox, re-reads the store and swaps the
// cache, keeping what fails to load from the cache served.
func (s *Server) reloadStore(ctx context.Context) error {
	if s.cfg.Store == nil {
		return errNoStore
	}
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	s.importInbox(ctx)
	return s.reloadLocked(ctx)
}

// reloadLocked is reloadStore with storeMu held.
func (s *Server) reloadLocked(ctx context.Context) error {
	old := s.servedCache()
	cache, _, err := LoadCache(ctx, s.cfg.Store, old)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		cache.Destroy() // the agent is stopping
		return ctx.Err()
	}
	s.reportLoad(old, cache)
	s.SetCache(cache)
	return nil
}

// reportLoad logs and audits what changed in what could not be loaded
// between two caches: a version that fails now, or loads again.
func (s *Server) reportLoad(old, cur *Cache) {
	for _, ch := range loadChanges(old, cur) {
		switch {
		case ch.now == failDamaged:
			s.log.Error("envelope damaged: an operator must restore it", "secret", ch.name, "version", ch.version, "kept", ch.kept)
			s.systemEvent(slog.LevelError, "load", audit.Error, ch.name, ch.version, damagedReason(ch.kept))
		case ch.now == failBackend:
			s.log.Warn("version not loaded: the backend did not unwrap it", "secret", ch.name, "version", ch.version, "kept", ch.kept)
			s.systemEvent(slog.LevelWarn, "load", audit.Error, ch.name, ch.version,
				"not loaded: the backend did not unwrap it; the agent retries when the backend answers")
		default:
			s.log.Info("version loaded again", "secret", ch.name, "version", ch.version)
			s.systemEvent(slog.LevelInfo, "load", audit.Allow, ch.name, ch.version, "loaded")
		}
	}
}

func damagedReason(kept bool) string {
	if kept {
		return "the envelope is damaged; the copy loaded before is still served: restore the file from a backup or rotate the secret"
	}
	return "the envelope is damaged and is not served: restore the file from a backup or put the secret again"
}

// prune deletes the retired versions of the secrets only accepts (all
// when nil), audits each, and reloads when something was deleted.
func (s *Server) prune(only func(string) bool) ([]store.Pruned, error) {
	if s.cfg.Store == nil {
		return nil, errNoStore
	}
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	pruned, err := s.cfg.Store.Prune(s.cfg.Now(), only)
	for _, p := range pruned {
		s.systemEvent(slog.LevelInfo, "prune", audit.Allow, p.Name, p.Version,
			"retired at "+p.Retired.UTC().Format(time.RFC3339)+": deleted from the store")
	}
	if len(pruned) > 0 {
		if rerr := s.reloadLocked(s.stop); rerr != nil {
			err = errors.Join(err, fmt.Errorf("store reload after pruning: %w", rerr))
		}
	}
	return pruned, err
}
