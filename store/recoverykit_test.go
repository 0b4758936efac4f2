package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/recovery"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

func swtpmDevice(t *testing.T) *tpm.Device {
	t.Helper()
	sw := testenv.SwTPM(t)
	tr, err := tpm.OpenDevice(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	d, err := tpm.Open(tpm.Config{TPM: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestRecoveryRestore: a store on one TPM gets a recovery kit (5 shares,
// threshold 3); the TPM is replaced by another; 2 shares do not restore,
// 3 do, and every secret — sealed before and after the kit — opens on the
// new TPM.
func TestRecoveryRestore(t *testing.T) {
	ctx := context.Background()
	oldTPM := swtpmDevice(t)
	s := newStore(t, oldTPM)
	mustPut(t, s, "binance/mm-prod", "before-kit", store.PutOptions{})
	kit, shares, err := recovery.NewKit(5, 3, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.InitRecovery(ctx, kit, false); err != nil || n != 1 {
		t.Fatalf("InitRecovery() = %d, %v", n, err)
	}
	if _, err := s.InitRecovery(ctx, kit, false); !errors.Is(err, store.ErrKitExists) {
		t.Errorf("InitRecovery(again) = %v, want ErrKitExists", err)
	}
	mustPut(t, s, "okx/exec", "after-kit", store.PutOptions{})
	// A re-seal (the planned-update procedure) moves the kit's binding
	// too, so puts keep working.
	sel16, _ := tpm.ParseSelection("16")
	if _, err := s.Rewrap(ctx, func(w []byte) ([]byte, error) { return oldTPM.Reseal(ctx, w, sel16) }); err != nil {
		t.Fatalf("Rewrap(reseal) = %v", err)
	}
	mustPut(t, s, "binance/mm-prod", "rotated", store.PutOptions{NewVersion: true, Grace: time.Hour})

	// The host's TPM is replaced: nothing opens any more.
	newTPM := swtpmDevice(t)
	s2, err := store.New(store.Config{Dir: s.Dir(), Backend: newTPM, Host: testHost})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Open(ctx, "okx/exec", 0); err == nil {
		t.Fatal("a secret opened on another TPM")
	}
	if _, err := recovery.Combine(kit, shares[:2]); !errors.Is(err, recovery.ErrNotEnoughShares) {
		t.Errorf("Combine(2 shares) = %v, want ErrNotEnoughShares", err)
	}
	priv, err := recovery.Combine(kit, []recovery.Share{shares[4], shares[0], shares[2]})
	if err != nil {
		t.Fatalf("Combine(3 shares) = %v", err)
	}
	defer priv.Destroy()
	if res, err := s2.Restore(ctx, priv, nil); err != nil || res.Envelopes != 3 || res.Kit != kit.ID || res.Dropped != nil {
		t.Fatalf("Restore() = %+v, %v; want 3 envelopes", res, err)
	}
	for _, tt := range []struct {
		name    string
		version uint32
		want    string
	}{{"binance/mm-prod", 1, "before-kit"}, {"binance/mm-prod", 2, "rotated"}, {"okx/exec", 1, "after-kit"}} {
		if got := mustOpen(t, s2, tt.name, tt.version); got != tt.want {
			t.Errorf("after restore, Open(%q, %d) = %q, want %q", tt.name, tt.version, got, tt.want)
		}
	}
	// The kit is now bound to the new TPM, and new puts are sealed to it.
	if k, err := s2.Kit(ctx); err != nil || k.ID != kit.ID {
		t.Errorf("Kit() after restore = %v, %v", k, err)
	}
	mustPut(t, s2, "kraken/risk", "after-restore", store.PutOptions{})
	if _, err := os.Stat(filepath.Join(s2.Dir(), "kraken+risk@1.kwe.kwr")); err != nil {
		t.Errorf("a put after restore was not sealed to the kit: %v", err)
	}
}

// TestRecoveryKitSwap: a kit file replaced by someone who can write the
// store is refused, so new data keys are never sealed to their key.
func TestRecoveryKitSwap(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, swtpmDevice(t))
	kit, _, _ := recovery.NewKit(3, 2, time.Now())
	if _, err := s.InitRecovery(ctx, kit, false); err != nil {
		t.Fatal(err)
	}
	other, _, _ := recovery.NewKit(3, 2, time.Now())
	if err := os.WriteFile(filepath.Join(s.Dir(), "recovery.kit"), other.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a", []byte("x"), store.PutOptions{}); !errors.Is(err, store.ErrIntegrity) {
		t.Errorf("Put() with a swapped kit = %v, want ErrIntegrity", err)
	}
	// A re-wrap to a new key must not bind the swapped kit to it.
	if _, err := s.RewrapTo(ctx, storetest.NewMemBackend(), map[string][]byte{store.RootKeyFile: []byte("new\n")}); !errors.Is(err, store.ErrIntegrity) {
		t.Errorf("RewrapTo() with a swapped kit = %v, want ErrIntegrity", err)
	}
}
