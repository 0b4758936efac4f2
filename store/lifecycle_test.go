package store_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// clockStore is a store on the in-memory backend whose clock the test sets.
func clockStore(t *testing.T, now *time.Time) *store.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := store.Init(dir); err != nil {
		t.Fatal(err)
	}
	s, err := store.New(store.Config{Dir: dir, Backend: storetest.NewMemBackend(), Host: testHost,
		Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func secretInfo(t *testing.T, s *store.Store, name string) *store.SecretInfo {
	t.Helper()
	secrets, unnamed, err := s.Secrets()
	if err != nil || len(unnamed) > 0 {
		t.Fatalf("Secrets() = %v, %v", unnamed, err)
	}
	for _, sec := range secrets {
		if sec.Name == name {
			return sec
		}
	}
	t.Fatalf("Secrets() has no %s", name)
	return nil
}

func TestLifecycle(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	s := clockStore(t, &now)
	put := func(at time.Duration, opts store.PutOptions) {
		now = t0.Add(at)
		opts.NewVersion = true
		mustPut(t, s, "a", "value", opts)
	}
	// v1; v2 rotated with a 7-day grace; v3 rotated with none (a
	// revocation, which retires every older version at once).
	put(0, store.PutOptions{})
	put(time.Hour, store.PutOptions{Grace: 7 * 24 * time.Hour})
	put(2*time.Hour, store.PutOptions{})
	sec := secretInfo(t, s, "a")
	for i, want := range []time.Time{t0.Add(2 * time.Hour), t0.Add(2 * time.Hour), {}} {
		if got := sec.Versions[i].Until; !got.Equal(want) {
			t.Errorf("v%d Until = %v, want %v", i+1, got, want)
		}
	}
	if !sec.Latest().Current || sec.Versions[0].Current || sec.Latest().Version != 3 {
		t.Errorf("Latest() = %+v; want version 3, the only current one", sec.Latest())
	}

	// An expiry before the grace end wins; the current version only
	// expires; states follow the clock.
	now = t0
	s = clockStore(t, &now)
	mustPut(t, s, "b", "v1", store.PutOptions{Expires: t0.Add(30 * time.Minute)})
	now = t0.Add(time.Minute)
	mustPut(t, s, "b", "v2", store.PutOptions{NewVersion: true, Grace: 2 * time.Hour, Expires: t0.Add(5 * time.Hour)})
	sec = secretInfo(t, s, "b")
	if got := sec.Versions[0].Until; !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("expiring v1 Until = %v", got)
	}
	if got := sec.Versions[1].Until; !got.Equal(t0.Add(5 * time.Hour)) {
		t.Errorf("current Until = %v", got)
	}
	for _, tc := range []struct {
		at       time.Duration
		v1, v2   store.State
		warnings time.Duration
	}{
		{10 * time.Minute, store.StateGrace, store.StateCurrent, time.Hour},
		{10 * time.Minute, store.StateGrace, store.StateExpiresSoon, 6 * time.Hour},
		{time.Hour, store.StateRetired, store.StateCurrent, time.Hour},
		{6 * time.Hour, store.StateRetired, store.StateExpired, time.Hour},
	} {
		at := t0.Add(tc.at)
		if v1, v2 := sec.Versions[0].State(at, tc.warnings), sec.Versions[1].State(at, tc.warnings); v1 != tc.v1 || v2 != tc.v2 {
			t.Errorf("at +%v (warn %v): states %s, %s; want %s, %s", tc.at, tc.warnings, v1, v2, tc.v1, tc.v2)
		}
	}
}

// A damaged version is reported in its secret's group, and fails closed:
// the version before it is not served, and prune leaves the secret alone.
func TestLifecycleDamaged(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	s := clockStore(t, &now)
	mustPut(t, s, "a", "v1", store.PutOptions{})
	now = t0.Add(time.Hour)
	mustPut(t, s, "a", "v2", store.PutOptions{NewVersion: true, Grace: time.Minute})
	mustPut(t, s, "a", "v3", store.PutOptions{NewVersion: true, Grace: 24 * time.Hour})
	path := filepath.Join(s.Dir(), "a@3.kwe")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	sec := secretInfo(t, s, "a")
	if len(sec.Versions) != 3 || sec.Latest().Damaged == nil || sec.Latest().State(now, 0) != store.StateDamaged {
		t.Fatalf("Secrets() = %+v; want version 3 damaged", sec.Latest())
	}
	if v2 := sec.Versions[1]; v2.State(now, 0).Served() {
		t.Errorf("v2 under a damaged v3 is %s until %v; want it not served", v2.State(now, 0), v2.Until)
	}
	pruned, err := s.Prune(t0.Add(48*time.Hour), nil)
	if err != nil || len(pruned) != 0 {
		t.Errorf("Prune() of a secret with a damaged version = %v, %v; want nothing deleted", pruned, err)
	}
	if !sec.Damaged() {
		t.Error("Damaged() = false")
	}

	// An envelope copied from another host is damaged here.
	other, err := store.New(store.Config{Dir: s.Dir(), Host: store.DeriveHostID("ffffffffffffffffffffffffffffffff")})
	if err != nil {
		t.Fatal(err)
	}
	secrets, _, _ := other.Secrets()
	for _, v := range secrets[0].Versions {
		if v.Damaged == nil {
			t.Errorf("version %d read by another host is not damaged", v.Version)
		}
	}
}
