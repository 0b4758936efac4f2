package agent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keyward/keyward/store"
)

// A Cache holds every servable secret version in locked memory, so that
// serving never waits on the HSM or TPM. It is immutable once built: a
// reload builds a new Cache and the [Server] swaps it in.
type Cache struct {
	secrets map[string]*cacheEntry
	names   []string // sorted
}

type cacheEntry struct {
	versions []cacheVersion // ascending; those that could be decrypted
	latest   uint32         // the highest version on disk
}

type cacheVersion struct {
	version uint32
	until   time.Time // when it stops being served (expiry or end of grace); zero: never
	secret  *store.Secret
}

// current returns the latest version, or nil when the latest version on
// disk could not be decrypted: serving an older one instead would roll the
// secret back.
func (e *cacheEntry) current() *cacheVersion {
	if n := len(e.versions); n > 0 && e.versions[n-1].version == e.latest {
		return &e.versions[n-1]
	}
	return nil
}

// find returns the given version, or nil.
func (e *cacheEntry) find(version uint32) *cacheVersion {
	i, ok := slices.BinarySearchFunc(e.versions, version, func(v cacheVersion, want uint32) int {
		return int(int64(v.version) - int64(want))
	})
	if !ok {
		return nil
	}
	return &e.versions[i]
}

// LoadCache decrypts every envelope in st. An envelope that cannot be read
// or decrypted is reported in skipped and never keeps the others from being
// served. On a reload, prev is the cache being served: a version that
// fails now but was loaded before is kept from prev, so a transient HSM
// error never drops a secret; a name whose newest version is in neither
// is served as unavailable rather than rolled back to an older version.
// err is set only when the store cannot be listed, or when there were
// envelopes and none could be decrypted or kept (a backend that is down,
// a wrong key): serving an empty cache then would hide the failure.
func LoadCache(ctx context.Context, st *store.Store, prev *Cache) (c *Cache, skipped []error, err error) {
	envs, damaged, err := st.List()
	if err != nil {
		return nil, nil, err
	}
	skipped = damaged
	c = &Cache{secrets: make(map[string]*cacheEntry)}
	loaded := 0
	for i, e := range envs {
		ent := c.secrets[e.Name]
		if ent == nil {
			ent = &cacheEntry{}
			c.secrets[e.Name] = ent
			c.names = append(c.names, e.Name)
		}
		ent.latest = max(ent.latest, e.Version) // List returns versions ascending
		sec, err := st.OpenEnvelope(ctx, e)
		if err != nil {
			kept := prev.copyOf(e.Name, e.Version)
			if kept == nil {
				skipped = append(skipped, fmt.Errorf("%s version %d: %w", e.Name, e.Version, err))
				continue
			}
			skipped = append(skipped, fmt.Errorf("%s version %d: %w (serving the copy loaded before)", e.Name, e.Version, err))
			sec = kept
		}
		ent.versions = append(ent.versions, cacheVersion{version: e.Version, until: retiredAt(envs, i), secret: sec})
		loaded++
	}
	if len(envs) == 0 && len(damaged) > 0 {
		return nil, skipped, fmt.Errorf("all %d envelopes in the store are damaged or unreadable; first: %w", len(damaged), damaged[0])
	}
	if len(envs) > 0 && loaded == 0 {
		c.Destroy()
		return nil, skipped, fmt.Errorf("none of the %d envelopes could be decrypted; first error: %w", len(envs), skipped[len(damaged)])
	}
	slices.Sort(c.names)
	return c, skipped, nil
}

// retiredAt is store.RetiredAt for envs[i] among all envelopes of the
// store, sorted by name and version.
func retiredAt(envs []*store.Envelope, i int) time.Time {
	name := envs[i].Name
	lo, hi := i, i+1
	for lo > 0 && envs[lo-1].Name == name {
		lo--
	}
	for hi < len(envs) && envs[hi].Name == name {
		hi++
	}
	return store.RetiredAt(envs[lo:hi], i-lo)
}

// copyOf returns a copy of a version held by c, or nil. c may be nil.
func (c *Cache) copyOf(name string, version uint32) *store.Secret {
	if c == nil {
		return nil
	}
	e := c.secrets[name]
	if e == nil {
		return nil
	}
	v := e.find(version)
	if v == nil {
		return nil
	}
	return store.NewSecret(v.secret.Bytes())
}

// Len returns the number of secrets (names) in the cache.
func (c *Cache) Len() int { return len(c.secrets) }

// Destroy zeroes every secret in the cache.
func (c *Cache) Destroy() {
	for _, e := range c.secrets {
		for _, v := range e.versions {
			v.secret.Destroy()
		}
	}
}
