package backend_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
	"github.com/keyward/keyward/store/recovery"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

var ctx = context.Background()

// pkcs11Config is a configuration for a fresh SoftHSM token.
func pkcs11Config(t *testing.T) (config.Config, *testenv.SoftHSMToken) {
	t.Helper()
	tok := testenv.SoftHSM(t)
	cfg := config.Default()
	cfg.PKCS11.URI = tok.URI("keyward-kek")
	cfg.PKCS11.PINFile = tok.PINFile
	cfg.PKCS11.PINCredential = "no-such-credential"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	return cfg, tok
}

// tpmConfig is a configuration for the tpm backend on a fresh swtpm.
func tpmConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Backend = config.BackendTPM
	cfg.TPM.Device = testenv.SwTPM(t).Socket
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	return cfg
}

func open(t *testing.T, cfg config.Config, opts backend.Options) backend.Backend {
	t.Helper()
	b, _, err := backend.Open(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.Backend, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openStore(t *testing.T, cfg config.Config, b store.Backend) *store.Store {
	t.Helper()
	if err := store.Init(cfg.Store.Dir); err != nil {
		t.Fatal(err)
	}
	s, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: storetest.TestHost})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, s *store.Store, name string) string {
	t.Helper()
	sec, _, err := s.Open(ctx, name, 0)
	if err != nil {
		t.Fatalf("Open(%s) = %v", name, err)
	}
	defer sec.Destroy()
	return string(sec.Bytes())
}

func TestOpenPKCS11(t *testing.T) {
	cfg, _ := pkcs11Config(t)
	b, created, err := backend.Open(ctx, cfg, backend.Options{Create: true})
	if err != nil || !created {
		t.Fatalf("Open(Create) = %v, %v; want the key created", created, err)
	}
	id := b.KeyID()
	b.Close()
	b = open(t, cfg, backend.Options{})
	if b.KeyID() != id || !strings.HasPrefix(id, "pkcs11:") {
		t.Errorf("KeyID() = %s, want %s", b.KeyID(), id)
	}
	if err := b.Healthy(ctx); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
}

// TestOpenPKCS11AfterInterruptedRewrap: the key the store records is read
// after a committed rewrap is finished, so Open opens the key every
// envelope is now under.
func TestOpenPKCS11AfterInterruptedRewrap(t *testing.T) {
	cfg, _ := pkcs11Config(t)
	old := open(t, cfg, backend.Options{Create: true})
	s := openStore(t, cfg, old)
	if _, err := s.Put(ctx, "binance/a", []byte("value-a"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	newKey := open(t, cfg, backend.Options{Create: true, Object: "keyward-kek-2"})
	// The state a rewrap killed after its commit leaves: the new
	// envelope and key record beside the old ones, and the marker.
	done := filepath.Join(t.TempDir(), "done")
	storetest.CopyDir(t, cfg.Store.Dir, done)
	sDone, err := store.New(store.Config{Dir: done, Backend: old, Host: storetest.TestHost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sDone.RewrapTo(ctx, newKey, map[string][]byte{store.RootKeyFile: []byte("keyward-kek-2\n")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"binance+a@1.kwe", store.RootKeyFile} {
		b, err := os.ReadFile(filepath.Join(done, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.Store.Dir, name+".next"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.Store.Dir, ".rewrap-committed"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	b := open(t, cfg, backend.Options{})
	if b.KeyID() != newKey.KeyID() {
		t.Fatalf("Open() after an interrupted rewrap opened %s, want the new key %s", b.KeyID(), newKey.KeyID())
	}
	s2 := openStore(t, cfg, b)
	if _, err := s2.Put(ctx, "binance/b", []byte("value-b"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"binance/a": "value-a", "binance/b": "value-b"} {
		if got := get(t, s2, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestOpenTPM(t *testing.T) {
	cfg := tpmConfig(t)
	if _, _, err := backend.Open(ctx, cfg, backend.Options{}); err == nil || !strings.Contains(err.Error(), "run keyward init") {
		t.Fatalf("Open() of a store with no store key = %v, want run keyward init", err)
	}
	b, created, err := backend.Open(ctx, cfg, backend.Options{Create: true})
	if err != nil || !created {
		t.Fatalf("Open(Create) = %v, %v", created, err)
	}
	if _, ok := b.(*backend.StoreKey); !ok {
		t.Fatalf("Open(Create) = %T, want a store key", b)
	}
	id := b.KeyID()
	b.Close()
	if _, err := os.Stat(filepath.Join(cfg.Store.Dir, store.TPMKeyFile)); err != nil {
		t.Fatalf("no sealed store key in the store: %v", err)
	}
	b = open(t, cfg, backend.Options{})
	if b.KeyID() != id {
		t.Errorf("KeyID() = %s after reopening, want %s", b.KeyID(), id)
	}
	if err := b.Healthy(ctx); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
}

// TestMigrateTPM: a store whose data keys are sealed one by one (as an
// older keyward made them) opens as Legacy, and MigrateTPM moves it to a
// store key with every secret intact; CheckTPM reports both.
func TestMigrateTPM(t *testing.T) {
	cfg := tpmConfig(t)
	// The legacy store: the Device itself as the store's backend.
	tr, err := tpm.OpenDevice(cfg.TPM.Device)
	if err != nil {
		t.Fatal(err)
	}
	d, err := tpm.Open(tpm.Config{TPM: tr})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, cfg, d)
	for i := range 3 {
		if _, err := s.Put(ctx, fmt.Sprintf("venue/key-%d", i), []byte(fmt.Sprintf("value-%d", i)), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	tr.Close()

	meta := openStore(t, cfg, nil)
	r, err := backend.CheckTPM(ctx, cfg, backend.Options{}, meta)
	if err != nil || !r.Legacy || len(r.Sealed) != 3 {
		t.Fatalf("CheckTPM(legacy) = %+v, %v; want 3 sealed data keys", r, err)
	}
	b, _, err := backend.Open(ctx, cfg, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	legacy, ok := b.(*backend.Legacy)
	if !ok {
		t.Fatalf("Open(legacy store) = %T, want *Legacy", b)
	}
	s = openStore(t, cfg, legacy)
	k, n, err := backend.MigrateTPM(ctx, s, legacy)
	if err != nil || n != 3 {
		t.Fatalf("MigrateTPM() = %d, %v; want 3 moved", n, err)
	}
	k.Close()

	b = open(t, cfg, backend.Options{})
	if _, ok := b.(*backend.StoreKey); !ok {
		t.Fatalf("Open() after migration = %T, want a store key", b)
	}
	s = openStore(t, cfg, b)
	for i := range 3 {
		if got := get(t, s, fmt.Sprintf("venue/key-%d", i)); got != fmt.Sprintf("value-%d", i) {
			t.Errorf("venue/key-%d = %q after migration", i, got)
		}
	}
	r, err = backend.CheckTPM(ctx, cfg, backend.Options{}, meta)
	if err != nil || r.Legacy || len(r.Sealed) != 1 || len(r.Sealed[0].Changed) != 0 || r.Sealed[0].Err != nil {
		t.Errorf("CheckTPM(migrated) = %+v, %v; want the one store key, satisfied", r, err)
	}
}

// TestResealTPM: the store key is re-sealed to another selection while
// its policy holds; the store then opens under the new one.
func TestResealTPM(t *testing.T) {
	cfg := tpmConfig(t)
	b := open(t, cfg, backend.Options{Create: true})
	s := openStore(t, cfg, b)
	if _, err := s.Put(ctx, "binance/a", []byte("value-a"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	sel, err := tpm.ParseSelection("sha256:7+16")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := backend.ResealTPM(ctx, s, b, sel); err != nil || n != 1 {
		t.Fatalf("ResealTPM() = %d, %v", n, err)
	}
	b.Close()
	r, err := backend.CheckTPM(ctx, cfg, backend.Options{}, openStore(t, cfg, nil))
	if err != nil || len(r.Sealed) != 1 || r.Sealed[0].PCRs.String() != "sha256:7,16" {
		t.Fatalf("CheckTPM() after reseal = %+v, %v; want the store key sealed to sha256:7,16", r, err)
	}
	if got := get(t, openStore(t, cfg, open(t, cfg, backend.Options{})), "binance/a"); got != "value-a" {
		t.Errorf("binance/a = %q after reseal", got)
	}
}

// TestForRestoreTPM: on a replaced TPM the recorded store key does not
// open, and ForRestore makes a new one with its record.
func TestForRestoreTPM(t *testing.T) {
	cfg := tpmConfig(t)
	open(t, cfg, backend.Options{Create: true}).Close()
	cfg.TPM.Device = testenv.SwTPM(t).Socket // another TPM
	if _, _, err := backend.Open(ctx, cfg, backend.Options{}); !errors.Is(err, tpm.ErrNotThisTPM) {
		t.Fatalf("Open() on another TPM = %v, want ErrNotThisTPM", err)
	}
	b, records, err := backend.ForRestore(ctx, cfg, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok := b.(*backend.StoreKey); !ok || len(records[store.TPMKeyFile]) == 0 {
		t.Errorf("ForRestore() = %T with records %v, want a new store key and its record", b, records)
	}
}

// TestForRestoreHSMTPM: on a replaced TPM the sealed HSM PIN does not
// unseal, and ForRestore says to move it aside; then it seals the PIN to
// the new TPM and opens the HSM key.
func TestForRestoreHSMTPM(t *testing.T) {
	cfg, _ := pkcs11Config(t)
	cfg.Backend = config.BackendHSMTPM
	cfg.TPM.Device = testenv.SwTPM(t).Socket
	open(t, cfg, backend.Options{Create: true}).Close()
	cfg.TPM.Device = testenv.SwTPM(t).Socket // another TPM
	path := backend.SealedPINPath(cfg)
	if _, _, err := backend.ForRestore(ctx, cfg, backend.Options{}); !errors.Is(err, tpm.ErrNotThisTPM) || !strings.Contains(err.Error(), "mv "+path+" "+path+".old") {
		t.Fatalf("ForRestore() on another TPM = %v, want ErrNotThisTPM and the mv to run", err)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	b, records, err := backend.ForRestore(ctx, cfg, backend.Options{})
	if err != nil || records != nil {
		t.Fatalf("ForRestore() after moving the PIN aside = %v, %v", records, err)
	}
	b.Close()
	cfg.PKCS11.PINFile = "" // the PIN now comes from the new TPM only
	open(t, cfg, backend.Options{}).Close()
}

// TestOpenHSMTPM: the HSM PIN is sealed by the TPM at init; afterwards the
// HSM opens with no other PIN source.
func TestOpenHSMTPM(t *testing.T) {
	cfg, _ := pkcs11Config(t)
	cfg.Backend = config.BackendHSMTPM
	cfg.TPM.Device = testenv.SwTPM(t).Socket
	b, created, err := backend.Open(ctx, cfg, backend.Options{Create: true})
	if err != nil || !created {
		t.Fatalf("Open(Create) = %v, %v", created, err)
	}
	id := b.KeyID()
	b.Close()
	if _, err := os.Stat(backend.SealedPINPath(cfg)); err != nil {
		t.Fatalf("no sealed PIN: %v", err)
	}
	cfg.PKCS11.PINFile = "" // the PIN now comes from the TPM only
	b = open(t, cfg, backend.Options{})
	if _, ok := b.(*hsm.Token); !ok || b.KeyID() != id {
		t.Errorf("Open(hsm+tpm) = %T %s, want the HSM key %s", b, b.KeyID(), id)
	}
}

// TestRestoreOntoNewHardwareTPM: a tpm store with a fleet kit is restored
// onto another machine (another machine id, another TPM) with ForRestore's
// new store key: every secret opens there, bound to the new host, under
// the new store key, which the store records in the same transaction.
func TestRestoreOntoNewHardwareTPM(t *testing.T) {
	cfg := tpmConfig(t)
	fleet, shares, err := recovery.NewKit(3, 2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, cfg, backend.Options{Create: true})
	s, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: storetest.TestHost, FleetKit: fleet})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"binance/a", "okx/b"} {
		if _, err := s.Put(ctx, name, []byte("value-"+name), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()

	cfg.TPM.Device = testenv.SwTPM(t).Socket
	newHost := store.DeriveHostID("fedcba9876543210fedcba9876543210")
	nb, records, err := backend.ForRestore(ctx, cfg, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: nb, Host: newHost, FleetKit: fleet})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := recovery.Combine(fleet, shares[1:])
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Destroy()
	if res, err := s2.Restore(ctx, priv, records); err != nil || res.Envelopes != 2 {
		t.Fatalf("Restore() = %+v, %v", res, err)
	}
	nb.Close()
	// What the agent does at its next start: open the recorded key.
	b3 := open(t, cfg, backend.Options{})
	s3, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b3, Host: newHost})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"binance/a", "okx/b"} {
		if got := get(t, s3, name); got != "value-"+name {
			t.Errorf("%s = %q after restore", name, got)
		}
	}
}
