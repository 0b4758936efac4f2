package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/recovery"
	"github.com/keyward/keyward/store/storetest"
)

// TestCredentialLifecycle: an exchange credential goes through rotation,
// removal of a version, re-wrapping and recovery onto another backend like
// any secret, its header attributes intact.
func TestCredentialLifecycle(t *testing.T) {
	ctx := context.Background()
	b := storetest.NewMemBackend()
	s := newStore(t, b)
	cred := &store.CredentialInfo{Exchange: "binance", KeyID: "key-1", KeyType: "hmac"}
	kit, shares, err := recovery.NewKit(3, 2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InitRecovery(ctx, kit, false); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "binance/mm", "secret-1", store.PutOptions{Credential: cred})
	cred2 := &store.CredentialInfo{Exchange: "binance", KeyID: "key-2", KeyType: "hmac"}
	mustPut(t, s, "binance/mm", "secret-2", store.PutOptions{Credential: cred2, NewVersion: true})
	mustPut(t, s, "binance/mm", "secret-3", store.PutOptions{Credential: cred2, NewVersion: true})
	if _, err := s.RemoveVersion("binance/mm", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rewrap(ctx, func(w []byte) ([]byte, error) {
		k, err := b.Unwrap(ctx, w)
		if err != nil {
			return nil, err
		}
		return b.Wrap(ctx, k)
	}); err != nil {
		t.Fatal(err)
	}

	// Recovery onto another backend.
	s2, err := store.New(store.Config{Dir: s.Dir(), Backend: storetest.NewMemBackend(), Host: testHost})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := recovery.Combine(kit, shares[:2])
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Destroy()
	if res, err := s2.Restore(ctx, priv, nil); err != nil || res.Envelopes != 2 {
		t.Fatalf("Restore() = %+v, %v; want 2 envelopes", res, err)
	}
	for v, want := range map[uint32]string{2: "secret-2", 3: "secret-3"} {
		sec, h, err := s2.Open(ctx, "binance/mm", v)
		if err != nil {
			t.Fatal(err)
		}
		if string(sec.Bytes()) != want || h.Credential == nil || *h.Credential != *cred2 {
			t.Errorf("version %d after rewrap and restore: %q, %+v", v, sec.Bytes(), h.Credential)
		}
		sec.Destroy()
	}
}
