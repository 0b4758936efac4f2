package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/store"
)

// A Cache holds every servable secret version in locked memory, so that
// serving never waits on the HSM or TPM. It is immutable once built: a
// reload builds a new Cache and the [Server] swaps it in.
type Cache struct {
	secrets map[string]*cacheEntry
	names   []string // sorted
}

// A failure says why a version on disk is not held fresh.
type failure uint8

const (
	failNone    failure = iota
	failBackend         // the backend could not unwrap it (down, or refused): may pass
	failDamaged         // the envelope is damaged or does not verify: an operator must act
)

type cacheEntry struct {
	versions []cacheVersion // ascending; those held
	latest   uint32         // the newest version on disk, damaged or not
	// failed holds the versions on disk not decrypted by the last load,
	// and why; a version kept from the cache before is in both.
	failed map[uint32]failure
}

type cacheVersion struct {
	version uint32
	until   time.Time // when it stops being served (expiry or end of grace); zero: never
	secret  *store.Secret
	sum     [32]byte // SHA-256 of the envelope it was decrypted from; zero for a kept copy of a damaged file
	// cred is set for an exchange credential: its header's attributes,
	// and the signing key made from the secret when first used.
	cred *credential
}

// A secretState says how the agent serves a secret whose newest version
// it does not hold fresh; see [Server.Health].
type secretState uint8

const (
	stateOK          secretState = iota
	stateStale                   // the newest version did not load (backend); an older one is served within its grace
	stateUnavailable             // the newest version did not load (backend); nothing is servable
	stateDamaged                 // the newest version's file is damaged; a copy loaded before may still be served
)

var secretStateNames = [...]string{stateOK: "ok", stateStale: "stale", stateUnavailable: "unavailable", stateDamaged: "damaged"}

func (s secretState) String() string { return secretStateNames[s] }

// newest returns the newest version held, or nil.
func (e *cacheEntry) newest() *cacheVersion {
	if n := len(e.versions); n > 0 {
		return &e.versions[n-1]
	}
	return nil
}

// current returns the version served for a request of the current one at
// now, or nil and the code to answer. The newest version on disk is served
// when it is held. When it failed to load because the backend could not
// unwrap it, the newest version held is served while it is within its
// grace period or expiry: an outage must not stop trading, nor roll a
// secret back past what the rotation allowed. A damaged newest version is
// never fallen back from: its header, which sets the grace, cannot be
// trusted.
func (e *cacheEntry) current(now time.Time) (*cacheVersion, wire.Code) {
	v := e.newest()
	switch {
	case v != nil && v.version == e.latest:
		if v.expired(now) {
			return nil, wire.CodeExpired
		}
		return v, 0
	case e.failed[e.latest] == failDamaged:
		return nil, wire.CodeInternal
	case v != nil && !v.expired(now):
		return v, 0
	}
	return nil, wire.CodeUnavailable
}

// find returns a given version for a request of it at now, or nil and the
// code to answer.
func (e *cacheEntry) find(version uint32, now time.Time) (*cacheVersion, wire.Code) {
	i, ok := slices.BinarySearchFunc(e.versions, version, func(v cacheVersion, want uint32) int {
		return int(int64(v.version) - int64(want))
	})
	switch {
	case ok && e.versions[i].expired(now):
		return nil, wire.CodeExpired
	case ok:
		return &e.versions[i], 0
	case e.failed[version] == failDamaged:
		return nil, wire.CodeInternal
	case e.failed[version] == failBackend:
		return nil, wire.CodeUnavailable
	case version < e.latest:
		return nil, wire.CodeExpired // an older version no longer on disk: retired and pruned
	}
	return nil, wire.CodeNotFound
}

// lookup returns the version of name a request for version (0: the
// current one) gets at now, or nil and the code to answer.
func (c *Cache) lookup(name string, version uint32, now time.Time) (*cacheVersion, wire.Code) {
	switch e := c.secrets[name]; {
	case e == nil:
		return nil, wire.CodeNotFound
	case version == 0:
		return e.current(now)
	default:
		return e.find(version, now)
	}
}

func (v *cacheVersion) expired(now time.Time) bool {
	return !v.until.IsZero() && !now.Before(v.until)
}

// state says how the entry is served at now, and which version: the one
// a request for the current version gets (0: none).
func (e *cacheEntry) state(now time.Time) (secretState, uint32) {
	v, _ := e.current(now)
	var serving uint32
	if v != nil {
		serving = v.version
	}
	switch f := e.failed[e.latest]; {
	case f == failDamaged:
		return stateDamaged, serving
	case f == failBackend && serving != 0 && serving != e.latest:
		return stateStale, serving
	case f == failBackend && serving == 0:
		return stateUnavailable, 0
	}
	return stateOK, serving
}

// LoadCache decrypts every envelope in st. An envelope that cannot be read
// or decrypted is reported in skipped and never keeps the others from being
// served. On a reload, prev is the cache being served: a version that
// fails now but was loaded before is kept from prev, so a transient HSM
// error or a file damaged since never drops a secret being served. What
// failed is remembered, so that requests get the right answer (see
// cacheEntry.current) and health reports it. err is set only when the
// store cannot be listed, or when there were envelopes and none could be
// decrypted or kept (a backend that is down, a wrong key): serving an empty
// cache then would hide the failure.
func LoadCache(ctx context.Context, st *store.Store, prev *Cache) (c *Cache, skipped []error, err error) {
	secrets, unnamed, err := st.Secrets()
	if err != nil {
		return nil, nil, err
	}
	skipped = unnamed
	c = &Cache{secrets: make(map[string]*cacheEntry, len(secrets))}
	loaded, total := 0, 0
	for _, sec := range secrets {
		ent := &cacheEntry{latest: sec.Latest().Version}
		for _, v := range sec.Versions {
			total++
			held, f, err := loadVersion(ctx, st, &v, prev.held(sec.Name, v.Version))
			if f != failNone {
				if ent.failed == nil {
					ent.failed = make(map[uint32]failure)
				}
				ent.failed[v.Version] = f
				what := fmt.Sprintf("%s version %d", sec.Name, v.Version)
				if held != nil {
					what += " (serving the copy loaded before)"
				}
				skipped = append(skipped, fmt.Errorf("%s: %w", what, err))
			}
			if held != nil {
				ent.versions = append(ent.versions, *held)
				loaded++
			}
		}
		c.secrets[sec.Name] = ent
		c.names = append(c.names, sec.Name)
	}
	if total == 0 && len(unnamed) > 0 {
		return nil, skipped, fmt.Errorf("all %d envelopes in the store are damaged or unreadable; first: %w", len(unnamed), unnamed[0])
	}
	if total > 0 && loaded == 0 {
		c.Destroy()
		return nil, skipped, fmt.Errorf("none of the %d envelopes could be decrypted; first error: %w", total, skipped[len(unnamed)])
	}
	return c, skipped, nil
}

// loadVersion decrypts one version, or keeps the copy held before when it
// cannot, and says why it failed. An envelope unchanged since the copy held
// was decrypted is not decrypted again: a reload costs the backend nothing
// for what did not change, and works while the backend is down.
func loadVersion(ctx context.Context, st *store.Store, v *store.VersionInfo, kept *cacheVersion) (*cacheVersion, failure, error) {
	err := v.Damaged
	var sum [32]byte
	if err == nil {
		sum = sha256.Sum256(v.Envelope.Marshal())
		if kept != nil && kept.sum == sum {
			return kept.copy(v.Until), failNone, nil
		}
		sec, oerr := st.OpenEnvelope(ctx, v.Envelope)
		if oerr == nil {
			return &cacheVersion{version: v.Version, until: v.Until, secret: sec, sum: sum, cred: newCredential(v.Envelope.Credential)}, failNone, nil
		}
		err = oerr
	}
	f := failBackend
	if v.Damaged != nil || errors.Is(err, store.ErrIntegrity) {
		f = failDamaged
	}
	if kept == nil {
		return nil, f, err
	}
	until := v.Until
	if v.Envelope == nil {
		until = kept.until // the damaged file's header is gone: keep the end known before
	}
	cp := kept.copy(until)
	cp.sum = [32]byte{} // not verified against the file on disk now
	return cp, f, err
}

// copy returns a copy of v, in memory of its own, ending at until.
func (v *cacheVersion) copy(until time.Time) *cacheVersion {
	cp := &cacheVersion{version: v.version, until: until, secret: store.NewSecret(v.secret.Bytes()), sum: v.sum}
	if v.cred != nil {
		cp.cred = newCredential(&v.cred.info)
	}
	return cp
}

// held returns a version held by c, or nil. c may be nil.
func (c *Cache) held(name string, version uint32) *cacheVersion {
	if c == nil {
		return nil
	}
	e := c.secrets[name]
	if e == nil {
		return nil
	}
	v, _ := e.find(version, time.Time{})
	return v
}

// failures reports whether a version did not load because of the backend,
// so that the agent retries the load once the backend answers again.
func (c *Cache) failures() (backend int) {
	for _, e := range c.secrets {
		for _, f := range e.failed {
			if f == failBackend {
				backend++
			}
		}
	}
	return backend
}

// Len returns the number of secrets (names) in the cache.
func (c *Cache) Len() int { return len(c.secrets) }

// Destroy zeroes every secret in the cache.
func (c *Cache) Destroy() {
	for _, e := range c.secrets {
		for _, v := range e.versions {
			v.secret.Destroy()
			v.cred.destroy()
		}
	}
}

// A loadChange is a version whose load result differs between two
// caches: it fails now (now is the failure; kept says a copy loaded before
// is still served) or it loads again (now is failNone).
type loadChange struct {
	name    string
	version uint32
	now     failure
	kept    bool
}

// loadChanges compares what did not load in old (nil at start) and cur.
func loadChanges(old, cur *Cache) []loadChange {
	var out []loadChange
	for _, name := range cur.names {
		e := cur.secrets[name]
		var before map[uint32]failure
		if old != nil && old.secrets[name] != nil {
			before = old.secrets[name].failed
		}
		for v, f := range e.failed {
			if before[v] != f {
				_, kept := e.find(v, time.Time{})
				out = append(out, loadChange{name, v, f, kept == 0})
			}
		}
		for v := range before {
			if _, still := e.failed[v]; !still && cur.held(name, v) != nil {
				out = append(out, loadChange{name, v, failNone, false})
			}
		}
	}
	slices.SortFunc(out, func(a, b loadChange) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return int(int64(a.version) - int64(b.version))
	})
	return out
}
