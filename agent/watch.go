package agent

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/store"
)

// watchers tracks the connections that watch names, and the version each
// was last told.
type watchers struct {
	mu    sync.Mutex
	conns map[*conn]map[string]uint32
}

// notifyTimeout bounds a notification write: a watcher that does not read
// is dropped rather than holding up reloads.
const notifyTimeout = 200 * time.Millisecond

// watch answers a watch request and subscribes the connection. The caller
// needs the watch permission on every name; otherwise the answer is
// denied, whether or not the names exist.
func (c *conn) watch(out []byte, id uint32, pol *policy.Policy, m *wire.Watch) []byte {
	s := c.s
	for _, n := range m.Names {
		if store.ValidateName(n) != nil {
			c.auditEvent("watch", "", 0, "error", wire.CodeBadRequest, "invalid secret name")
			return wire.AppendFrame(out, id, &wire.Error{Code: wire.CodeBadRequest, Message: "invalid secret name"})
		}
		if d := pol.Decide(c.peer, policy.OpWatch, n); !d.Allowed {
			c.auditDecision("watch", n, 0, "deny", wire.CodeDenied, d)
			return wire.AppendFrame(out, id, errorMessage(wire.CodeDenied))
		}
	}
	versions := make([]uint32, len(m.Names))
	s.watch.mu.Lock()
	seen := s.watch.conns[c]
	if seen == nil {
		seen = make(map[string]uint32)
		s.watch.conns[c] = seen
	}
	for i, n := range m.Names {
		versions[i] = s.current(n)
		seen[n] = versions[i]
	}
	s.watch.mu.Unlock()
	c.auditEvent("watch", m.Names[0], 0, "allow", 0, "watching "+strconv.Itoa(len(m.Names))+" name(s)")
	return wire.AppendFrame(out, id, &wire.Watching{Versions: versions})
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
			v := s.current(n)
			if v == seen[n] || !pol.Decide(c.peer, policy.OpWatch, n).Allowed {
				continue
			}
			seen[n] = v
			frames = wire.AppendFrame(frames, 0, &wire.Changed{Name: n, Version: v})
		}
		if len(frames) > 0 && c.write(frames, notifyTimeout) != nil {
			c.c.Close()
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
