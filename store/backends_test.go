package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

// TestWrongBackend: an envelope sealed by the HSM backend handed to a
// TPM-backed store, and the reverse, fail with ErrWrongBackend and a
// message naming both backends.
func TestWrongBackend(t *testing.T) {
	ctx := context.Background()
	hsmBackend, _ := storetest.SoftHSMBackend(t)
	sw := testenv.SwTPM(t)
	tr, err := tpm.OpenDevice(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tpmBackend, err := tpm.Open(tpm.Config{TPM: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer tpmBackend.Close()

	hsmStore := newStore(t, hsmBackend)
	tpmStore := newStore(t, tpmBackend)
	mustPut(t, hsmStore, "from/hsm", "hsm-value", store.PutOptions{})
	mustPut(t, tpmStore, "from/tpm", "tpm-value", store.PutOptions{})
	move := func(from, to *store.Store, file string) {
		b, err := os.ReadFile(filepath.Join(from.Dir(), file))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to.Dir(), file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	move(hsmStore, tpmStore, "from+hsm@1.kwe")
	move(tpmStore, hsmStore, "from+tpm@1.kwe")

	for _, tt := range []struct {
		s          *store.Store
		name, want string
	}{
		{tpmStore, "from/hsm", "sealed by the pkcs11 backend, and this store is configured for tpm"},
		{hsmStore, "from/tpm", "sealed by the tpm backend, and this store is configured for pkcs11"},
	} {
		_, _, err := tt.s.Open(ctx, tt.name, 0)
		if !errors.Is(err, store.ErrWrongBackend) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q) = %v, want ErrWrongBackend: %s", tt.name, err, tt.want)
		}
	}
	// The TPM backend refuses an HSM-wrapped key outright too.
	e, err := store.ReadFile(filepath.Join(hsmStore.Dir(), "from+hsm@1.kwe"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpmBackend.Unwrap(ctx, e.WrappedKey); err == nil || !strings.Contains(err.Error(), "not a TPM-sealed") {
		t.Errorf("tpm Unwrap(HSM-wrapped key) = %v, want a not-a-TPM-blob error", err)
	}
}

// TestTPMTamper runs the tamper table against the TPM backend: the AAD
// binding of the envelope header holds with TPM-sealed data keys too.
func TestTPMTamper(t *testing.T) {
	sw := testenv.SwTPM(t)
	tr, err := tpm.OpenDevice(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	d, err := tpm.Open(tpm.Config{TPM: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	RunTamper(t, d)
}
