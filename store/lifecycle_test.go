package store_test

import (
	"testing"
	"time"

	"github.com/keyward/keyward/store"
)

func TestRetiredAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	env := func(created, expires, prevUntil time.Duration) *store.Envelope {
		e := &store.Envelope{}
		e.Created = t0.Add(created)
		if expires != 0 {
			e.Expires = t0.Add(expires)
		}
		if prevUntil != 0 {
			e.PrevUntil = t0.Add(prevUntil)
		}
		return e
	}
	// v1; v2 rotated with a 7-day grace; v3 rotated with none (a revocation).
	envs := []*store.Envelope{env(0, 0, 0), env(time.Hour, 0, time.Hour+7*24*time.Hour), env(2*time.Hour, 0, 0)}
	for i, want := range []time.Time{t0.Add(2 * time.Hour), t0.Add(2 * time.Hour), {}} {
		if got := store.RetiredAt(envs, i); !got.Equal(want) {
			t.Errorf("RetiredAt(v%d) = %v, want %v", i+1, got, want)
		}
	}
	// An expiry before the grace end wins; the current version only expires.
	envs = []*store.Envelope{env(0, 30*time.Minute, 0), env(time.Minute, 5*time.Hour, 2*time.Hour)}
	if got := store.RetiredAt(envs, 0); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("RetiredAt(expiring v1) = %v", got)
	}
	if got := store.RetiredAt(envs, 1); !got.Equal(t0.Add(5 * time.Hour)) {
		t.Errorf("RetiredAt(current) = %v", got)
	}
}
