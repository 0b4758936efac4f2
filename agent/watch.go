package agent

import (
	"slices"
	"strconv"
	"sync"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
)

// watchers tracks the connections that watch names, and the version each
// was last told.
type watchers struct {
	mu    sync.Mutex
	conns map[*conn]map[string]uint32
}

// maxWatched bounds the names one connection may watch.
const maxWatched = 256

// watch answers a watch request and subscribes the connection. The caller
// needs the watch permission on every name; otherwise the answer is
// denied, whether or not the names exist. The answer is written here,
// under the same lock as the registration, so no change can be announced
// before it.
func (c *conn) watch(out []byte, id uint32, pol *policy.Policy, m *wire.Watch) []byte {
	s := c.s
	for _, n := range m.Names {
		if _, refused, ok := c.authorize(out, id, pol, "watch", policy.OpWatch, n); !ok {
			return refused
		}
	}
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	seen := s.watch.conns[c]
	if seen == nil {
		seen = make(map[string]uint32)
	}
	if len(seen)+len(m.Names) > maxWatched {
		c.auditEvent("watch", m.Names[0], 0, audit.Error, wire.CodeBadRequest, "too many watched names")
		return wire.AppendFrame(out, id, &wire.Error{Code: wire.CodeBadRequest, Message: "too many watched names on one connection"})
	}
	s.watch.conns[c] = seen
	versions := make([]uint32, len(m.Names))
	for i, n := range m.Names {
		versions[i], _ = s.current(n)
		seen[n] = versions[i]
	}
	c.auditEvent("watch", m.Names[0], 0, audit.Allow, 0, "watching "+strconv.Itoa(len(m.Names))+" name(s)")
	c.notify(wire.AppendFrame(nil, id, &wire.Watching{Versions: versions}))
	return out
}

// notify queues frames for the connection's notifier goroutine, which
// writes them in order without holding up the caller; a connection whose
// queue overflows (it does not read) is closed.
func (c *conn) notify(frames []byte) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	if c.notifyQ == nil {
		c.notifyQ = make(chan []byte, 64)
		go c.writeNotifications(c.notifyQ)
	}
	select {
	case c.notifyQ <- frames:
	default:
		c.c.Close()
	}
}

func (c *conn) writeNotifications(q chan []byte) {
	for frames := range q {
		err := c.write(frames, c.s.cfg.FrameTimeout)
		clear(frames) // an answer queued here may hold a secret
		if err != nil {
			c.c.Close()
		}
	}
}

// stopNotifications ends the notifier goroutine of a closing connection.
func (c *conn) stopNotifications() {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	if c.notifyQ != nil {
		close(c.notifyQ)
		c.notifyQ = nil
	}
}

// unwatch forgets a closing connection.
func (s *Server) unwatch(c *conn) {
	s.watch.mu.Lock()
	delete(s.watch.conns, c)
	s.watch.mu.Unlock()
}

// notifyWatchers tells every watching connection about the names whose
// current version changed, in order, once per change. A watcher whose
// process is gone or runs something else, or that no longer has the watch
// permission, is not told; one that does not read is closed.
func (s *Server) notifyWatchers() {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	pol := s.policy.Load()
	for c, seen := range s.watch.conns {
		if c.peer.Verify() != nil {
			c.c.Close()
			continue
		}
		var frames []byte
		for _, n := range sortedKeys(seen) {
			v, _ := s.current(n)
			if v == seen[n] || !pol.Decide(c.peer, policy.OpWatch, n).Allowed {
				continue
			}
			seen[n] = v
			frames = wire.AppendFrame(frames, 0, &wire.Changed{Name: n, Version: v})
		}
		if len(frames) > 0 {
			c.notify(frames)
		}
	}
}

func sortedKeys(m map[string]uint32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
