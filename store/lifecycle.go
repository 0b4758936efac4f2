package store

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A State is where a version stands in its secret's lifecycle at a given
// time.
type State uint8

// The states of a version. Only Current, ExpiresSoon and Grace are served.
const (
	StateCurrent     State = iota + 1 // the newest version
	StateExpiresSoon                  // the newest version, expiring within the warning window
	StateGrace                        // superseded, still served until its end
	StateRetired                      // superseded and past its end: no longer served, pruned
	StateExpired                      // the newest version, past its expiry
	StateDamaged                      // the envelope cannot be read or does not belong here
)

var stateNames = [...]string{
	StateCurrent: "current", StateExpiresSoon: "current, expires soon", StateGrace: "grace",
	StateRetired: "retired", StateExpired: "expired", StateDamaged: "damaged",
}

// String returns the state as `keyward list` shows it.
func (s State) String() string {
	if s > 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Served reports whether a version in this state is served.
func (s State) Served() bool { return s == StateCurrent || s == StateExpiresSoon || s == StateGrace }

// A SecretInfo is what the store holds of one secret: every version on
// disk, ascending, each with its lifecycle computed. It is metadata only:
// nothing is decrypted.
type SecretInfo struct {
	Name     string
	Versions []VersionInfo
}

// A VersionInfo is one version of a secret.
type VersionInfo struct {
	Version uint32
	// Envelope is the parsed envelope; nil when the file is damaged.
	Envelope *Envelope
	// Damaged says why the envelope cannot be used (a *DamagedError),
	// nil for a sound one. A version with a damaged successor is not
	// damaged itself, but its end cannot be known: see Until.
	Damaged error
	// Until is when the version stops being served: at its expiry, or
	// once a newer version exists, at the end of the grace period that
	// newer version's rotation gave it, whichever is first (a version
	// never outlives its successor). The zero time means never. When a
	// successor is damaged its grace period is unknown, and Until is
	// the version's own creation: it is not served (fail closed).
	Until time.Time
	// Current is set on the newest version of the secret, damaged or not.
	Current bool
}

// State returns the version's state at now; warn is the expiry warning
// window for the current version.
func (v *VersionInfo) State(now time.Time, warn time.Duration) State {
	switch {
	case v.Damaged != nil:
		return StateDamaged
	case !v.Until.IsZero() && !now.Before(v.Until) && v.Current:
		return StateExpired
	case !v.Until.IsZero() && !now.Before(v.Until):
		return StateRetired
	case !v.Current:
		return StateGrace
	case !v.Until.IsZero() && v.Until.Sub(now) < warn:
		return StateExpiresSoon
	}
	return StateCurrent
}

// Latest returns the newest version, damaged or not.
func (s *SecretInfo) Latest() *VersionInfo { return &s.Versions[len(s.Versions)-1] }

// Find returns the given version, or nil.
func (s *SecretInfo) Find(version uint32) *VersionInfo {
	for i := range s.Versions {
		if s.Versions[i].Version == version {
			return &s.Versions[i]
		}
	}
	return nil
}

// Damaged reports whether any version of the secret is damaged.
func (s *SecretInfo) Damaged() bool {
	for i := range s.Versions {
		if s.Versions[i].Damaged != nil {
			return true
		}
	}
	return false
}

// Secrets reads the header of every envelope in the store and returns
// them grouped by secret, sorted by name, with their lifecycle. An
// envelope that cannot be read, or that was sealed on another host, is a
// damaged version of the secret its file name names; a file whose name is
// not NAME@VERSION.kwe is returned in unnamed. err is set only when the
// directory cannot be read.
func (s *Store) Secrets() (secrets []*SecretInfo, unnamed []error, err error) {
	envs, damaged, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	byName := make(map[string]*SecretInfo)
	var names []string
	group := func(name string) *SecretInfo {
		g := byName[name]
		if g == nil {
			g = &SecretInfo{Name: name}
			byName[name] = g
			names = append(names, name)
		}
		return g
	}
	for _, e := range envs {
		v := VersionInfo{Version: e.Version, Envelope: e}
		if e.Host != s.cfg.Host {
			v.Envelope = nil
			v.Damaged = &DamagedError{filepath.Join(s.cfg.Dir, fileName(e.Name, e.Version)),
				fmt.Errorf("%w: it was sealed on another host (host id %s, this host is %s)", ErrIntegrity, e.Host, s.cfg.Host)}
		}
		g := group(e.Name)
		g.Versions = append(g.Versions, v)
	}
	for _, d := range damaged {
		var de *DamagedError
		name, version, ok := "", uint32(0), false
		if errors.As(d, &de) {
			name, version, ok = parseFileName(filepath.Base(de.Path))
		}
		if !ok {
			unnamed = append(unnamed, d)
			continue
		}
		g := group(name)
		g.Versions = append(g.Versions, VersionInfo{Version: version, Damaged: d})
	}
	slices.Sort(names)
	secrets = make([]*SecretInfo, len(names))
	for i, n := range names {
		g := byName[n]
		slices.SortFunc(g.Versions, func(a, b VersionInfo) int { return cmp.Compare(a.Version, b.Version) })
		g.lifecycle()
		secrets[i] = g
	}
	return secrets, unnamed, nil
}

// lifecycle fills in Until and Current; the versions are sorted.
func (s *SecretInfo) lifecycle() {
	n := len(s.Versions)
	s.Versions[n-1].Current = true
	// From the newest down: a version never outlives its successor.
	var next time.Time // the successor's Until; zero: never
	for i := n - 1; i >= 0; i-- {
		v := &s.Versions[i]
		if v.Envelope == nil {
			next = time.Time{}
			continue
		}
		until := v.Envelope.Expires
		if i+1 < n {
			succ := s.Versions[i+1].Envelope
			if succ == nil {
				until = v.Envelope.Created // the successor's grace is unknown
			} else {
				end := succ.PrevUntil
				if end.IsZero() {
					end = succ.Created // retired at once (a revocation)
				}
				until = earliest(until, end)
				if i+2 < n { // the successor is itself superseded
					until = earliest(until, next)
				}
			}
		}
		v.Until = until
		next = until
	}
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
// unknown. A secret with a damaged version is left alone: an operator
// must look at it first. When only is not nil, only the secrets it
// accepts are pruned.
func (s *Store) Prune(now time.Time, only func(name string) bool) ([]Pruned, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	secrets, _, err := s.Secrets()
	if err != nil {
		return nil, err
	}
	var pruned []Pruned
	for _, sec := range secrets {
		if sec.Damaged() || only != nil && !only(sec.Name) {
			continue
		}
		for _, v := range sec.Versions {
			if v.State(now, 0) != StateRetired {
				continue
			}
			if err := os.Remove(filepath.Join(s.cfg.Dir, fileName(sec.Name, v.Version))); err != nil {
				return pruned, err
			}
			s.removeSidecars(sec.Name, v.Version)
			pruned = append(pruned, Pruned{sec.Name, v.Version, v.Until})
		}
	}
	if len(pruned) > 0 {
		return pruned, syncDir(s.cfg.Dir)
	}
	return nil, nil
}
