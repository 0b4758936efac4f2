package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

func TestRewrap(t *testing.T) {
	ctx := context.Background()
	b := storetest.NewMemBackend()
	s := newStore(t, b)
	mustPut(t, s, "a", "value-a", store.PutOptions{})
	mustPut(t, s, "a", "value-a2", store.PutOptions{NewVersion: true})
	mustPut(t, s, "b/c", "value-bc", store.PutOptions{})
	before, _, _ := s.List()

	rewrap := func(w []byte) ([]byte, error) {
		k, err := b.Unwrap(ctx, w)
		if err != nil {
			return nil, err
		}
		return b.Wrap(ctx, k)
	}
	n, err := s.Rewrap(ctx, rewrap)
	if err != nil || n != 3 {
		t.Fatalf("Rewrap() = %d, %v; want 3", n, err)
	}
	after, damaged, _ := s.List()
	if len(after) != 3 || len(damaged) != 0 {
		t.Fatalf("List() after Rewrap = %d, %v", len(after), damaged)
	}
	for i := range after {
		if bytes.Equal(after[i].WrappedKey, before[i].WrappedKey) || after[i].Nonce == before[i].Nonce {
			t.Errorf("%s@%d kept its wrapped key or nonce", after[i].Name, after[i].Version)
		}
	}
	for name, want := range map[string]string{"a": "value-a2", "b/c": "value-bc"} {
		if got := mustOpen(t, s, name, 0); got != want {
			t.Errorf("Open(%q) after Rewrap = %q, want %q", name, got, want)
		}
	}
	if got := mustOpen(t, s, "a", 1); got != "value-a" {
		t.Errorf("Open(a, 1) after Rewrap = %q", got)
	}

	// A failing re-wrap leaves the store as it was.
	boom := errors.New("boom")
	calls := 0
	_, err = s.Rewrap(ctx, func(w []byte) ([]byte, error) {
		if calls++; calls == 2 {
			return nil, boom
		}
		return rewrap(w)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Rewrap(failing) = %v, want %v", err, boom)
	}
	again, _, _ := s.List()
	for i := range again {
		if !bytes.Equal(again[i].Marshal(), after[i].Marshal()) {
			t.Errorf("a failed Rewrap changed %s@%d", again[i].Name, again[i].Version)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(s.Dir(), "*.next")); len(left) > 0 {
		t.Errorf("a failed Rewrap left %v", left)
	}
}

// TestRewrapInterrupted: a re-wrap killed before its commit marker is
// rolled back at the next write, one killed after it is rolled forward.
func TestRewrapInterrupted(t *testing.T) {
	b := storetest.NewMemBackend()
	s := newStore(t, b)
	mustPut(t, s, "a", "value-a", store.PutOptions{})
	path := filepath.Join(s.Dir(), "a@1.kwe")
	orig, _ := os.ReadFile(path)
	s2 := newStore(t, b)
	mustPut(t, s2, "a", "value-new", store.PutOptions{})
	next, _ := os.ReadFile(filepath.Join(s2.Dir(), "a@1.kwe"))

	// Killed before the commit: the .next file is discarded.
	os.WriteFile(path+".next", next, 0o600)
	mustPut(t, s, "z", "z", store.PutOptions{})
	if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
		t.Error("an uncommitted re-wrap replaced an envelope")
	}
	if _, err := os.Stat(path + ".next"); err == nil {
		t.Error("an uncommitted .next file was kept")
	}

	// Killed after the commit: the .next file replaces the envelope.
	os.WriteFile(path+".next", next, 0o600)
	os.WriteFile(filepath.Join(s.Dir(), ".rewrap-committed"), nil, 0o600)
	mustPut(t, s, "y", "y", store.PutOptions{})
	if got := mustOpen(t, s, "a", 1); got != "value-new" {
		t.Errorf("after a committed re-wrap, Open(a) = %q, want the new envelope", got)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), ".rewrap-committed")); err == nil {
		t.Error("the commit marker was kept")
	}
}

// TestKeyRecordAfterInterruptedRewrap builds the state a rewrap killed
// after its commit leaves (the commit marker, and the new envelopes and
// key record still beside the old ones as .next files): reading the key
// record finishes the transaction first, so the key it names is the one
// every envelope is under, and nothing is sealed under the old key.
func TestKeyRecordAfterInterruptedRewrap(t *testing.T) {
	ctx := context.Background()
	oldKey, newKey := storetest.NewMemBackend(), storetest.NewMemBackend()
	s := newStore(t, oldKey)
	mustPut(t, s, "a", "value-a", store.PutOptions{})
	mustPut(t, s, "b", "value-b", store.PutOptions{})

	// The finished rewrap, in a copy of the store.
	done := filepath.Join(t.TempDir(), "done")
	storetest.CopyDir(t, s.Dir(), done)
	sDone, err := store.New(store.Config{Dir: done, Backend: oldKey, Host: testHost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sDone.RewrapTo(ctx, newKey, map[string][]byte{store.RootKeyFile: []byte("new-kek\n")}); err != nil {
		t.Fatal(err)
	}
	// The interrupted one: every changed file as .next, and the marker.
	for _, name := range []string{"a@1.kwe", "b@1.kwe", store.RootKeyFile} {
		b, err := os.ReadFile(filepath.Join(done, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir(), name+".next"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), ".rewrap-committed"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	label, err := store.RootKeyLabel(s.Dir())
	if err != nil || label != "new-kek" {
		t.Fatalf("RootKeyLabel() of an interrupted rewrap = %q, %v; want the new key's label", label, err)
	}
	s2, err := store.New(store.Config{Dir: s.Dir(), Backend: newKey, Host: testHost})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s2, "c", "value-c", store.PutOptions{})
	for name, want := range map[string]string{"a": "value-a", "b": "value-b", "c": "value-c"} {
		if got := mustOpen(t, s2, name, 0); got != want {
			t.Errorf("Open(%s) under the new key = %q, want %q", name, got, want)
		}
	}
}
