package store

import (
	"os"
	"path/filepath"
	"time"
)

// RetiredAt returns when envs[i], one version of a secret among envs (all
// versions of that secret, ascending), stops being served: at its expiry,
// or, once a newer version exists, at the end of the grace period that
// newer version's rotation gave it — whichever is first. A superseded
// version never outlives the version after it, so a rotation with no
// grace (a revocation) retires every older version too. The zero time
// means never. The current (latest) version is retired only by its expiry.
func RetiredAt(envs []*Envelope, i int) time.Time {
	t := envs[i].Expires
	if i+1 == len(envs) {
		return t
	}
	next := envs[i+1]
	end := next.PrevUntil
	if end.IsZero() {
		end = next.Created // retired at once
	}
	t = earliest(t, end)
	if i+2 < len(envs) { // the next version is itself superseded
		t = earliest(t, RetiredAt(envs, i+1))
	}
	return t
}

// earliest returns the earlier of two times, where zero means never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// A Pruned is a version removed by [Store.Prune].
type Pruned struct {
	Name    string
	Version uint32
	Retired time.Time
}

// Prune deletes the superseded versions that are no longer served at now
// — past the grace period their successor's rotation gave them, or
// expired — and returns them. The latest version of a secret is never
// removed: an expired one stays, so it is refused as expired rather than
// unknown.
func (s *Store) Prune(now time.Time) ([]Pruned, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	envs, _, err := s.List()
	if err != nil {
		return nil, err
	}
	var pruned []Pruned
	for start := 0; start < len(envs); {
		end := start
		for end < len(envs) && envs[end].Name == envs[start].Name {
			end++
		}
		group := envs[start:end]
		for i := range len(group) - 1 {
			t := RetiredAt(group, i)
			if t.IsZero() || now.Before(t) {
				continue
			}
			e := group[i]
			if err := os.Remove(filepath.Join(s.cfg.Dir, fileName(e.Name, e.Version))); err != nil {
				return pruned, err
			}
			os.Remove(filepath.Join(s.cfg.Dir, sidecarName(e.Name, e.Version)))
			pruned = append(pruned, Pruned{e.Name, e.Version, t})
		}
		start = end
	}
	if len(pruned) > 0 {
		return pruned, syncDir(s.cfg.Dir)
	}
	return nil, nil
}
