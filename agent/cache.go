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
	versions []cacheVersion // ascending
}

type cacheVersion struct {
	version uint32
	expires time.Time // zero: never
	secret  *store.Secret
}

// current returns the latest version.
func (e *cacheEntry) current() *cacheVersion { return &e.versions[len(e.versions)-1] }

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

// LoadCache decrypts every envelope in st. Envelopes that cannot be read or
// decrypted are skipped and returned in skipped, so one damaged secret
// never keeps the others from being served; err is set only when the store
// cannot be listed at all or when nothing could be decrypted although there
// were envelopes (a backend that is down, a wrong key), since serving an
// empty cache then would hide the failure.
func LoadCache(ctx context.Context, st *store.Store) (c *Cache, skipped []error, err error) {
	envs, damaged, err := st.List()
	if err != nil {
		return nil, nil, err
	}
	skipped = damaged
	c = &Cache{secrets: make(map[string]*cacheEntry)}
	for _, e := range envs {
		sec, err := st.OpenEnvelope(ctx, e)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("%s version %d: %w", e.Name, e.Version, err))
			continue
		}
		ent := c.secrets[e.Name]
		if ent == nil {
			ent = &cacheEntry{}
			c.secrets[e.Name] = ent
			c.names = append(c.names, e.Name)
		}
		// List returns versions ascending.
		ent.versions = append(ent.versions, cacheVersion{version: e.Version, expires: e.Expires, secret: sec})
	}
	if len(envs) > 0 && len(c.secrets) == 0 {
		c.Destroy()
		return nil, skipped, fmt.Errorf("none of the %d envelopes could be decrypted; first error: %w", len(envs), skipped[len(damaged)])
	}
	slices.Sort(c.names)
	return c, skipped, nil
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
