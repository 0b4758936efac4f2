package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/fleet"
	"github.com/keyward/keyward/store/recovery"
	"github.com/keyward/keyward/store/storetest"
)

// provisioner returns a fresh provisioner of the given kind.
func provisioner(t testing.TB, kind string) *fleet.Provisioner {
	t.Helper()
	k, err := fleet.GenerateKeyFile(kind)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fleet.ParsePrivateKeyFile(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// enrolled returns the recipient of s, enrolled now.
func enrolled(t testing.TB, s *store.Store) *fleet.Recipient {
	t.Helper()
	k, _, err := s.Enroll(context.Background(), false)
	if err != nil {
		t.Fatalf("Enroll() = %v", err)
	}
	return k.Recipient("host", "pkcs11:test")
}

func sealTo(t testing.TB, to *fleet.Recipient, p *fleet.Provisioner, c fleet.Contents, value string) *fleet.Bundle {
	t.Helper()
	b, err := fleet.Seal(to, p, c, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshot returns the name and hash of every file in dir.
func snapshot(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][32]byte{}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = sha256.Sum256(b)
	}
	return m
}

func TestEnroll(t *testing.T) {
	b, _ := storetest.SoftHSMBackend(t)
	s := newStore(t, b)
	ctx := context.Background()
	if _, err := s.ImportKey(ctx); !errors.Is(err, store.ErrNotEnrolled) {
		t.Fatalf("ImportKey() before Enroll = %v, want ErrNotEnrolled", err)
	}
	k1, created, err := s.Enroll(ctx, false)
	if err != nil || !created {
		t.Fatalf("Enroll() = %v, %v; want a new key", created, err)
	}
	k2, created, err := s.Enroll(ctx, false)
	if err != nil || created || k2.ID() != k1.ID() || !k2.Created().Equal(k1.Created()) {
		t.Fatalf("Enroll() again = %v (created %v), %v; want key %s unchanged", k2.ID(), created, err, k1.ID())
	}
	k3, created, err := s.Enroll(ctx, true)
	if err != nil || !created || k3.ID() == k1.ID() {
		t.Fatalf("Enroll(rotate) = %v (created %v), %v; want a new key", k3.ID(), created, err)
	}
	// The record copied to another host's store does not open there.
	other, err := store.New(store.Config{Dir: t.TempDir(), Backend: b, Host: store.DeriveHostID("ffffffffffffffffffffffffffffffff")})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(s.Dir(), store.ImportKeyFile))
	os.WriteFile(filepath.Join(other.Dir(), store.ImportKeyFile), raw, 0o600)
	if _, err := other.ImportKey(ctx); !errors.Is(err, store.ErrImportKeyHost) {
		t.Fatalf("ImportKey() of a copied record = %v, want ErrImportKeyHost", err)
	}
	if _, _, err := other.Enroll(ctx, false); !errors.Is(err, store.ErrImportKeyHost) {
		t.Fatalf("Enroll() over a copied record = %v, want ErrImportKeyHost", err)
	}
}

// fleetStore returns a store on a fresh SoftHSM key, enrolled, and a
// provisioner of the kind given that the import options list.
func fleetStore(t *testing.T, kind string) (*store.Store, *fleet.Recipient, *fleet.Provisioner, store.ImportOptions) {
	t.Helper()
	b, _ := storetest.SoftHSMBackend(t)
	s := newStore(t, b)
	p := provisioner(t, kind)
	return s, enrolled(t, s), p, store.ImportOptions{Provisioners: []*fleet.ProvisionerKey{p.Key()}, Grace: time.Hour}
}

func TestImport(t *testing.T) {
	s, to, p, opts := fleetStore(t, fleet.KeyEd25519)
	ctx := context.Background()
	cred := &fleet.Credential{Exchange: "binance", KeyID: "AKID123", KeyType: "hmac"}
	first := []*fleet.Bundle{
		sealTo(t, to, p, fleet.Contents{Name: "binance/mm", Credential: cred}, "v1"),
		sealTo(t, to, p, fleet.Contents{Name: "okx/bot"}, "okx-1"),
	}
	imp, errs, err := s.Import(ctx, first, opts)
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("Import() = %v, %v", errs, err)
	}
	if imp[0].Name != "binance/mm" || imp[0].Version != 1 || imp[0].Provisioner != p.Key().ID() {
		t.Fatalf("Import()[0] = %+v", imp[0])
	}
	sec, h, err := s.Open(ctx, "binance/mm", 0)
	if err != nil || string(sec.Bytes()) != "v1" || h.Credential == nil || *h.Credential != (store.CredentialInfo{Exchange: "binance", KeyID: "AKID123", KeyType: "hmac"}) {
		t.Fatalf("Open(binance/mm) = %v, %+v, %v", sec, h, err)
	}
	sec.Destroy()
	// A rotation: the next version, the previous one kept for the grace;
	// of two bundles for one name, the newest.
	older := sealTo(t, to, p, fleet.Contents{Name: "okx/bot"}, "okx-2")
	newer := sealTo(t, to, p, fleet.Contents{Name: "okx/bot"}, "okx-3")
	imp, errs, err = s.Import(ctx, []*fleet.Bundle{newer, older}, opts)
	if err != nil || errs[0] != nil || !errors.Is(errs[1], store.ErrReplay) || imp[0].Version != 2 || imp[0].PrevUntil.IsZero() {
		t.Fatalf("Import(rotation) = %+v, %v, %v", imp, errs, err)
	}
	if got := mustOpen(t, s, "okx/bot", 0); got != "okx-3" {
		t.Fatalf("okx/bot = %q, want okx-3", got)
	}
	// After the versions are removed, an old bundle is still a replay.
	if _, err := s.Remove("okx/bot"); err != nil {
		t.Fatal(err)
	}
	if _, errs, _ := s.Import(ctx, []*fleet.Bundle{first[1]}, opts); !errors.Is(errs[0], store.ErrReplay) {
		t.Fatalf("Import(old bundle after rm) = %v, want ErrReplay", errs[0])
	}
}

// TestImportRefusals delivers bad bundles through an inbox: each is
// refused with an error that names the case, set aside, and nothing in
// the store changes.
func TestImportRefusals(t *testing.T) {
	s, to, p, opts := fleetStore(t, fleet.KeyECDSAP256)
	ctx := context.Background()
	old := sealTo(t, to, p, fleet.Contents{Name: "binance/mm"}, "old")
	current := sealTo(t, to, p, fleet.Contents{Name: "binance/mm"}, "current")
	if _, errs, err := s.Import(ctx, []*fleet.Bundle{current}, opts); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	otherStore := newStore(t, storetest.NewMemBackend())
	otherHost, err := store.New(store.Config{Dir: otherStore.Dir(), Backend: storetest.NewMemBackend(),
		Host: store.DeriveHostID("ffffffffffffffffffffffffffffffff")})
	if err != nil {
		t.Fatal(err)
	}
	good := sealTo(t, to, p, fleet.Contents{Name: "binance/mm"}, "new").Marshal()
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-100] ^= 1
	unsigned := append([]byte(nil), good[:len(good)-65]...)
	unsigned = append(unsigned, 0)
	cases := []struct {
		name string
		raw  []byte
		want error // nil: a parse error
	}{
		{"wrong host", sealTo(t, enrolled(t, otherHost), p, fleet.Contents{Name: "binance/mm"}, "x").Marshal(), fleet.ErrOtherHost},
		{"tampered", tampered, fleet.ErrSignature},
		{"unsigned", unsigned, fleet.ErrUnsigned},
		{"replayed older", old.Marshal(), store.ErrReplay},
		{"replayed same", current.Marshal(), store.ErrReplay},
		{"unknown provisioner", sealTo(t, to, provisioner(t, fleet.KeyEd25519), fleet.Contents{Name: "binance/mm"}, "x").Marshal(), fleet.ErrUntrusted},
		{"truncated", good[:len(good)/2], nil},
		{"sealed in the future", sealTo(t, to, p, fleet.Contents{Name: "binance/mm", Counter: uint64(time.Now().Add(2 * time.Hour).UnixNano())}, "x").Marshal(), store.ErrFuture},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inbox := filepath.Join(t.TempDir(), "inbox")
			os.Mkdir(inbox, 0o700)
			file := filepath.Join(inbox, "binance+mm.kwb")
			os.WriteFile(file, tc.raw, 0o600)
			before := snapshot(t, s.Dir())
			res, err := s.ImportInbox(ctx, inbox, opts)
			if err != nil || len(res) != 1 {
				t.Fatalf("ImportInbox() = %v, %v", res, err)
			}
			var pe *fleet.ParseError
			if res[0].Imported != nil || tc.want == nil && !errors.As(res[0].Err, &pe) || tc.want != nil && !errors.Is(res[0].Err, tc.want) {
				t.Fatalf("ImportInbox() = %+v, %v; want %v", res[0].Imported, res[0].Err, tc.want)
			}
			if after := snapshot(t, s.Dir()); len(after) != len(before) {
				t.Fatalf("the store changed: %d files, then %d", len(before), len(after))
			} else {
				for n, h := range before {
					if after[n] != h {
						t.Fatalf("the store changed: %s", n)
					}
				}
			}
			if _, err := os.Stat(file + store.RejectedExt); err != nil {
				t.Fatalf("the refused bundle was not set aside: %v", err)
			}
		})
	}
	if got := mustOpen(t, s, "binance/mm", 0); got != "current" {
		t.Fatalf("binance/mm = %q, want current", got)
	}
}

// TestInboxPermissions: only root and the store's owner may deliver.
func TestInboxPermissions(t *testing.T) {
	s := newStore(t, storetest.NewMemBackend())
	ctx := context.Background()
	to := enrolled(t, s)
	p := provisioner(t, fleet.KeyEd25519)
	opts := store.ImportOptions{Provisioners: []*fleet.ProvisionerKey{p.Key()}}
	inbox := filepath.Join(t.TempDir(), "inbox")
	os.Mkdir(inbox, 0o770)
	os.Chmod(inbox, 0o770)
	file := filepath.Join(inbox, "a.kwb")
	os.WriteFile(file, sealTo(t, to, p, fleet.Contents{Name: "a"}, "v").Marshal(), 0o600)
	if _, err := s.ImportInbox(ctx, inbox, opts); err == nil || !strings.Contains(err.Error(), "writable by group") {
		t.Fatalf("ImportInbox(group-writable inbox) = %v, want a refusal", err)
	}
	os.Chmod(inbox, 0o700)
	os.Chmod(file, 0o666)
	res, err := s.ImportInbox(ctx, inbox, opts)
	if err != nil || res[0].Imported != nil || !strings.Contains(res[0].Err.Error(), "writable by group") {
		t.Fatalf("ImportInbox(group-writable bundle) = %+v, %v; want it refused", res, err)
	}
	os.Rename(file+store.RejectedExt, file)
	os.Chmod(file, 0o644)
	res, err = s.ImportInbox(ctx, inbox, opts)
	if err != nil || res[0].Imported == nil {
		t.Fatalf("ImportInbox() = %+v, %v", res, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the imported bundle is still there: %v", err)
	}
}

// TestImportKeyMoves: re-wrapping the store to a new HSM key moves the
// import key in the same transaction; the recipient stays the same.
func TestImportKeyMoves(t *testing.T) {
	b, tok := storetest.SoftHSMBackend(t)
	s := newStore(t, b)
	ctx := context.Background()
	k, _, err := s.Enroll(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	u, err := hsm.ParseURI(tok.URI("kek2"))
	if err != nil {
		t.Fatal(err)
	}
	to, _, err := hsm.Init(hsm.Config{URI: u, PIN: tok.PIN})
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	if _, err := s.RewrapTo(ctx, to, nil); err != nil {
		t.Fatal(err)
	}
	moved, err := store.New(store.Config{Dir: s.Dir(), Backend: to, Host: testHost})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := moved.ImportKey(ctx)
	if err != nil || k2.ID() != k.ID() {
		t.Fatalf("ImportKey() after RewrapTo = %v, %v; want %s", k2, err, k.ID())
	}
}

// TestImportSealsToKits: an imported version's data key is sealed to the
// host's recovery kit and to the fleet kit, as a put's is, in the same
// transaction.
func TestImportSealsToKits(t *testing.T) {
	ctx := context.Background()
	b, _ := storetest.SoftHSMBackend(t)
	s0 := newStore(t, b)
	to := enrolled(t, s0)
	p := provisioner(t, fleet.KeyEd25519)
	hostKit, _, _ := recovery.NewKit(3, 2, time.Now())
	if _, err := s0.InitRecovery(ctx, hostKit, false); err != nil {
		t.Fatal(err)
	}
	fleetKit, _, _ := recovery.NewKit(3, 2, time.Now())
	s := withConfig(t, s0, b, testHost, fleetKit)
	opts := store.ImportOptions{Provisioners: []*fleet.ProvisionerKey{p.Key()}}
	if _, errs, err := s.Import(ctx, []*fleet.Bundle{sealTo(t, to, p, fleet.Contents{Name: "okx/bot"}, "okx-1")}, opts); err != nil || errs[0] != nil {
		t.Fatalf("Import() = %v, %v", errs, err)
	}
	for _, f := range []string{"okx+bot@1.kwe.kwr", "okx+bot@1.kwe.kwf"} {
		if !exists(t, s, f) {
			t.Errorf("an imported version has no %s", f)
		}
	}
}
