package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/recovery"
)

// withConfig reopens the store in s's directory with another backend,
// host or fleet kit: the same disk on other hardware, or reconfigured.
func withConfig(t *testing.T, s *store.Store, b store.Backend, host store.HostID, fleet *recovery.Kit) *store.Store {
	t.Helper()
	s2, err := store.New(store.Config{Dir: s.Dir(), Backend: b, Host: host, FleetKit: fleet})
	if err != nil {
		t.Fatal(err)
	}
	return s2
}

// hsmKeys makes a key on each of n tokens of one SoftHSM module: the HSM
// of a host, then those of its replacements. (SoftHSM lists the tokens it
// finds at its first use, so they are made first.)
func hsmKeys(t *testing.T, n int) []*hsm.Token {
	t.Helper()
	tok := testenv.SoftHSM(t)
	toks := []*testenv.SoftHSMToken{tok}
	for i := 1; i < n; i++ {
		toks = append(toks, tok.AddToken(t, fmt.Sprintf("replacement-%d", i)))
	}
	keys := make([]*hsm.Token, n)
	for i, tk := range toks {
		uri, err := hsm.ParseURI(tk.URI("kek"))
		if err != nil {
			t.Fatal(err)
		}
		if keys[i], _, err = hsm.Init(hsm.Config{URI: uri, PIN: tk.PIN}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { keys[i].Close() })
	}
	return keys
}

func exists(t *testing.T, s *store.Store, file string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(s.Dir(), file))
	return err == nil
}

// TestFleetKitRestoreOntoNewHost: a host configured with a fleet kit
// seals every data key to it — those put before it was configured when
// it adopts the kit, later ones at put — beside its own host kit. The
// host dies; its store is copied onto a new machine (another machine id,
// another HSM token). Too few shares and a forged share are refused and
// named; 3 fleet shares restore every version, re-bound to the new host,
// where they open and no longer open for the old host id. The host kit,
// which these shares cannot verify, is dropped; the restored store is
// sealed to the fleet kit again, under its new binding, so a second
// restore onto a third machine works too.
func TestFleetKitRestoreOntoNewHost(t *testing.T) {
	ctx := context.Background()
	fleet, shares, err := recovery.NewKit(5, 3, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys := hsmKeys(t, 3)
	oldHSM := keys[0]
	s := newStore(t, oldHSM)
	mustPut(t, s, "binance/mm-prod", "v1-before-fleet", store.PutOptions{})
	hostKit, _, _ := recovery.NewKit(3, 2, time.Now())
	if _, err := s.InitRecovery(ctx, hostKit, false); err != nil {
		t.Fatal(err)
	}

	s = withConfig(t, s, oldHSM, testHost, fleet)
	if n, err := s.AdoptFleetKit(ctx); err != nil || n != 1 {
		t.Fatalf("AdoptFleetKit() = %d, %v; want the 1 key put before", n, err)
	}
	if n, err := s.AdoptFleetKit(ctx); err != nil || n != 0 {
		t.Fatalf("AdoptFleetKit(again) = %d, %v; want nothing to do", n, err)
	}
	// A version put by a keyward not configured with the kit is sealed
	// to it at the next adoption (the agent's start).
	mustPut(t, withConfig(t, s, oldHSM, testHost, nil), "kraken/risk", "unsealed", store.PutOptions{})
	if exists(t, s, "kraken+risk@1.kwe.kwf") {
		t.Fatal("a put without the fleet kit sealed to it")
	}
	if n, err := s.AdoptFleetKit(ctx); err != nil || n != 1 || !exists(t, s, "kraken+risk@1.kwe.kwf") {
		t.Fatalf("AdoptFleetKit(one missing) = %d, %v; want it sealed", n, err)
	}
	if _, err := s.Remove("kraken/risk"); err != nil || exists(t, s, "kraken+risk@1.kwe.kwf") {
		t.Fatalf("Remove() = %v, or left its sealed key", err)
	}
	mustPut(t, s, "binance/mm-prod", "v2-rotated", store.PutOptions{NewVersion: true, Grace: time.Hour})
	mustPut(t, s, "okx/exec", "okx-value", store.PutOptions{})
	for _, f := range []string{"binance+mm-prod@1.kwe.kwf", "binance+mm-prod@2.kwe.kwf", "okx+exec@1.kwe.kwf", "okx+exec@1.kwe.kwr", "fleet.kit"} {
		if !exists(t, s, f) {
			t.Errorf("%s is missing: a data key was not sealed to both kits", f)
		}
	}

	// The replacement machine: another machine id, another token.
	newHost := store.DeriveHostID("fedcba9876543210fedcba9876543210")
	newHSM := keys[1]
	s2 := withConfig(t, s, newHSM, newHost, fleet)
	if _, _, err := s2.Open(ctx, "okx/exec", 0); err == nil {
		t.Fatal("a secret opened on other hardware before restore")
	}
	if _, err := s2.RecoveryKit("0123456789abcdef"); !errors.Is(err, store.ErrNoKit) ||
		!strings.Contains(err.Error(), "host kit "+hostKit.ID+" and fleet kit "+fleet.ID) {
		t.Errorf("RecoveryKit(unknown) = %v, want ErrNoKit naming both kits", err)
	}
	kit, err := s2.RecoveryKit(shares[0].KitID)
	if err != nil || kit.ID != fleet.ID {
		t.Fatalf("RecoveryKit(fleet) = %v, %v", kit, err)
	}
	if _, err := recovery.Combine(kit, shares[:2]); !errors.Is(err, recovery.ErrNotEnoughShares) {
		t.Errorf("Combine(2 shares) = %v, want ErrNotEnoughShares", err)
	}
	_, others := newTestKitSplit(t, fleet)
	var se *recovery.ShareError
	if _, err := recovery.Combine(kit, []recovery.Share{shares[0], shares[1], others[2], shares[3]}); !errors.As(err, &se) || se.Index != 3 {
		t.Errorf("Combine(share 3 from another split) = %v, want share 3 named", err)
	}
	priv, err := recovery.Combine(kit, []recovery.Share{shares[4], shares[1], shares[2]})
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Destroy()
	res, err := s2.Restore(ctx, priv, nil)
	if err != nil || res.Envelopes != 3 || res.Kit != fleet.ID || len(res.Dropped) != 1 || res.Dropped[0] != hostKit.ID {
		t.Fatalf("Restore() = %+v, %v; want 3 envelopes, the host kit dropped", res, err)
	}
	for _, tt := range []struct {
		name    string
		version uint32
		want    string
	}{{"binance/mm-prod", 1, "v1-before-fleet"}, {"binance/mm-prod", 2, "v2-rotated"}, {"okx/exec", 1, "okx-value"}} {
		if got := mustOpen(t, s2, tt.name, tt.version); got != tt.want {
			t.Errorf("after restore, Open(%q, %d) = %q, want %q", tt.name, tt.version, got, tt.want)
		}
	}
	if _, _, err := withConfig(t, s, newHSM, testHost, fleet).Open(ctx, "okx/exec", 0); !errors.Is(err, store.ErrIntegrity) {
		t.Errorf("Open() with the old host id after restore = %v, want ErrIntegrity (re-bound)", err)
	}
	if exists(t, s2, "recovery.kit") || exists(t, s2, "recovery.kit.binding") || exists(t, s2, "okx+exec@1.kwe.kwr") {
		t.Errorf("the unverified host kit was kept")
	}
	if k, err := s2.Kit(ctx); err != nil || k != nil {
		t.Errorf("Kit() after restore = %v, %v; want no host kit", k, err)
	}
	mustPut(t, s2, "kraken/risk", "after-restore", store.PutOptions{})

	// A third machine, restored from the second with the same shares.
	thirdHost := store.DeriveHostID("00112233445566778899aabbccddeeff")
	s3 := withConfig(t, s, keys[2], thirdHost, fleet)
	if res, err := s3.Restore(ctx, priv, nil); err != nil || res.Envelopes != 4 {
		t.Fatalf("Restore(third machine) = %+v, %v; want 4 envelopes", res, err)
	}
	if got := mustOpen(t, s3, "kraken/risk", 0); got != "after-restore" {
		t.Errorf("kraken/risk on the third machine = %q", got)
	}
}

// newTestKitSplit returns another split of kit's key: shares that pass
// their checksums and name the kit, but do not fit its shares. It stands
// for a forged share.
func newTestKitSplit(t *testing.T, kit *recovery.Kit) (*recovery.Kit, []recovery.Share) {
	t.Helper()
	other, shares, err := recovery.NewKit(kit.Shares, kit.Threshold, kit.Created)
	if err != nil {
		t.Fatal(err)
	}
	for i := range shares {
		text := strings.Replace(shares[i].String(), other.ID, kit.ID, 1)
		// The checksum covers the kit id: recompute it as a forger would.
		s, err := recovery.ParseShare(recomputeChecksum(t, text))
		if err != nil {
			t.Fatal(err)
		}
		shares[i] = s
	}
	return other, shares
}

// recomputeChecksum replaces the checksum of a share's canonical text with
// the one its other words give (docs/recovery.md: the first 5 bytes of
// SHA-256 of the text before it, in lowercase base32).
func recomputeChecksum(t *testing.T, text string) string {
	t.Helper()
	i := strings.LastIndexByte(text, ' ')
	prefix := text[:i]
	sum := sha256.Sum256([]byte(prefix))
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	return prefix + " " + enc.EncodeToString(sum[:5])
}

// TestPutAdoptsFleetKit: the first put after the host is given a fleet
// kit (or another one) seals every earlier data key to it first; a host
// kit restore keeps the configured fleet kit, re-sealed for the new host.
func TestPutAdoptsFleetKit(t *testing.T) {
	ctx := context.Background()
	keys := hsmKeys(t, 2)
	s := newStore(t, keys[0])
	mustPut(t, s, "a", "value-a", store.PutOptions{})
	hostKit, hostShares, _ := recovery.NewKit(3, 2, time.Now())
	if _, err := s.InitRecovery(ctx, hostKit, false); err != nil {
		t.Fatal(err)
	}
	first, _, _ := recovery.NewKit(3, 2, time.Now())
	mustPut(t, withConfig(t, s, keys[0], testHost, first), "b", "value-b", store.PutOptions{})
	second, secondShares, _ := recovery.NewKit(3, 2, time.Now())
	mustPut(t, withConfig(t, s, keys[0], testHost, second), "c", "value-c", store.PutOptions{})
	if k, _ := s.RecoveryKit(second.ID); k == nil {
		t.Fatalf("the store does not record fleet kit %s", second.ID)
	}

	newHost := store.DeriveHostID("fedcba9876543210fedcba9876543210")
	s2 := withConfig(t, s, keys[1], newHost, second)
	priv, err := recovery.Combine(hostKit, hostShares[:2])
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Destroy()
	if res, err := s2.Restore(ctx, priv, nil); err != nil || res.Envelopes != 3 || res.Dropped != nil {
		t.Fatalf("Restore(host kit) = %+v, %v; want 3 envelopes, nothing dropped", res, err)
	}
	if k, err := s2.Kit(ctx); err != nil || k.ID != hostKit.ID {
		t.Errorf("Kit() = %v, %v; want the host kit bound to the new key", k, err)
	}
	// Every key, "a" and "b" included, is sealed to the second fleet
	// kit under the new binding: the fleet shares restore it again.
	fleetPriv, err := recovery.Combine(second, secondShares[1:])
	if err != nil {
		t.Fatal(err)
	}
	defer fleetPriv.Destroy()
	s3 := withConfig(t, s, keys[0], testHost, second)
	if res, err := s3.Restore(ctx, fleetPriv, nil); err != nil || res.Envelopes != 3 {
		t.Fatalf("Restore(fleet kit, back to the first key) = %+v, %v", res, err)
	}
	for name, want := range map[string]string{"a": "value-a", "b": "value-b", "c": "value-c"} {
		if got := mustOpen(t, s3, name, 0); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

// TestRestoreNothing: a restore into a store with no envelope (the backup
// was not copied, or copied elsewhere) fails instead of reporting
// success; so does one whose sealed keys are missing, and nothing changes.
func TestRestoreNothing(t *testing.T) {
	ctx := context.Background()
	keys := hsmKeys(t, 2)
	kit, shares, _ := recovery.NewKit(3, 2, time.Now())
	priv, err := recovery.Combine(kit, shares[:2])
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Destroy()
	empty := newStore(t, keys[1])
	if _, err := empty.Restore(ctx, priv, nil); !errors.Is(err, store.ErrNothingToRestore) || !strings.Contains(err.Error(), "holds no envelope") {
		t.Errorf("Restore(empty store) = %v, want nothing to restore", err)
	}

	s := newStore(t, keys[0])
	mustPut(t, s, "a", "value-a", store.PutOptions{})
	if err := s.CheckRestore(); !errors.Is(err, store.ErrNoKit) {
		t.Errorf("CheckRestore(no kit) = %v, want ErrNoKit", err)
	}
	s = withConfig(t, s, keys[0], testHost, kit)
	if _, err := s.AdoptFleetKit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckRestore(); err != nil {
		t.Errorf("CheckRestore() = %v", err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), "a@1.kwe.kwf")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(s.Dir(), "a@1.kwe"))
	s2 := withConfig(t, s, keys[1], store.DeriveHostID("fedcba9876543210fedcba9876543210"), kit)
	if _, err := s2.Restore(ctx, priv, nil); err == nil || !strings.Contains(err.Error(), "no data key sealed to recovery kit "+kit.ID) {
		t.Errorf("Restore(no sealed key) = %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(s.Dir(), "a@1.kwe")); string(after) != string(before) {
		t.Errorf("a failed restore changed the envelope")
	}
}
