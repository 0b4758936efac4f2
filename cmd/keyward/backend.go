package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/tpm"
)

// backend is what the CLI needs of a root-key backend: the store's
// contract and a health check for the agent's status and watchdog.
type backend interface {
	store.Backend
	Healthy(ctx context.Context) error
}

var (
	_ backend = (*hsm.Token)(nil)
	_ backend = (*tpmBackend)(nil)
)

// tpmCredential is the systemd credential that may hold the TPM PIN.
const tpmCredential = "keyward-tpm-pin"

// openBackend opens the configured backend. With create (keyward init) it
// also creates what is missing — the HSM key, the sealed HSM PIN — and
// reports whether it created anything.
func openBackend(ctx context.Context, cfg config.Config, create bool) (b backend, created bool, err error) {
	return openBackendObject(ctx, cfg, create, "")
}

// openBackendObject is openBackend with the HSM key named by object
// instead of the one the store records or the configuration names.
func openBackendObject(ctx context.Context, cfg config.Config, create bool, object string) (b backend, created bool, err error) {
	switch cfg.Backend {
	case "tpm":
		d, err := openTPM(cfg)
		return d, false, err
	case "hsm+tpm":
		d, err := openTPM(cfg)
		if err != nil {
			return nil, false, err
		}
		defer d.Close() // only the HSM PIN needs it
		return openHSMSealedPIN(ctx, cfg, d, create, object)
	default:
		uri, err := pkcs11URI(cfg, object)
		if err != nil {
			return nil, false, err
		}
		pin, err := hsm.ReadPIN(hsm.PINSource{Credential: cfg.PKCS11.PINCredential, URI: uri, File: cfg.PKCS11.PINFile})
		if err != nil {
			return nil, false, err
		}
		defer clear(pin)
		return openHSM(cfg, uri, pin, create)
	}
}

// pkcs11URI is the configured PKCS#11 URI, naming the key object if it is
// given, else the key recorded in the store by keyward rewrap when there
// is one.
func pkcs11URI(cfg config.Config, object string) (*hsm.URI, error) {
	uri, err := hsm.ParseURI(cfg.PKCS11.URI)
	if err != nil {
		return nil, err
	}
	if object != "" {
		return uri.WithObject(object), nil
	}
	label, err := store.RootKeyLabel(cfg.Store.Dir)
	if err != nil || label == "" {
		return uri, err
	}
	return uri.WithObject(label), nil
}

func openHSM(cfg config.Config, uri *hsm.URI, pin []byte, create bool) (backend, bool, error) {
	hc := hsm.Config{URI: uri, PIN: pin, MaxSessions: cfg.PKCS11.MaxSessions}
	if create {
		return hsm.Init(hc)
	}
	t, err := hsm.Open(hc)
	if err != nil {
		return nil, false, err
	}
	return t, false, nil
}

// tpmBackend is a TPM Device together with the transport it owns.
type tpmBackend struct {
	*tpm.Device
	t transport.TPMCloser
}

// Close closes the Device, then its transport.
func (b *tpmBackend) Close() error {
	return errors.Join(b.Device.Close(), b.t.Close())
}

func openTPM(cfg config.Config) (*tpmBackend, error) {
	sel, err := tpm.ParseSelection(cfg.TPM.PCRs)
	if err != nil {
		return nil, fmt.Errorf("tpm.pcrs: %w", err)
	}
	var pin []byte
	if cfg.TPM.PINFile != "" {
		pin, err = hsm.ReadPIN(hsm.PINSource{Credential: tpmCredential, File: cfg.TPM.PINFile})
		if err != nil {
			return nil, err
		}
		defer clear(pin)
	}
	t, err := tpm.OpenDevice(cfg.TPM.Device)
	if err != nil {
		return nil, err
	}
	d, err := tpm.Open(tpm.Config{TPM: t, PCRs: sel, PIN: pin, PersistentSRK: cfg.TPM.PersistentSRK})
	if err != nil {
		t.Close()
		return nil, err
	}
	return &tpmBackend{Device: d, t: t}, nil
}

// sealedPINPath is where the hsm+tpm backend keeps the sealed HSM PIN.
func sealedPINPath(cfg config.Config) string {
	if filepath.IsAbs(cfg.TPM.SealedHSMPIN) {
		return cfg.TPM.SealedHSMPIN
	}
	return filepath.Join(cfg.Store.Dir, cfg.TPM.SealedHSMPIN)
}

// openHSMSealedPIN opens the HSM with a PIN the TPM unseals, so the HSM key
// can only be used on this host in its measured boot state. With create, a
// PIN read from the usual sources is sealed and saved first.
func openHSMSealedPIN(ctx context.Context, cfg config.Config, d *tpmBackend, create bool, object string) (backend, bool, error) {
	uri, err := pkcs11URI(cfg, object)
	if err != nil {
		return nil, false, err
	}
	path := sealedPINPath(cfg)
	sealed, err := os.ReadFile(path)
	sealedNow := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		pin, err := hsm.ReadPIN(hsm.PINSource{Credential: cfg.PKCS11.PINCredential, URI: uri, File: cfg.PKCS11.PINFile})
		if err != nil {
			return nil, false, err
		}
		defer clear(pin)
		if sealed, err = d.Seal(ctx, pin); err != nil {
			return nil, false, fmt.Errorf("failed to seal the HSM PIN: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
		if err := writeFileNew(path, sealed); err != nil {
			return nil, false, fmt.Errorf("failed to save the sealed HSM PIN: %w", err)
		}
		sealedNow = true
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("no sealed HSM PIN at %s; run keyward init to seal it", path)
	case err != nil:
		return nil, false, err
	}
	pin, err := d.Unseal(ctx, sealed)
	if err != nil {
		return nil, false, fmt.Errorf("the TPM refused to unseal the HSM PIN in %s: %w", path, err)
	}
	defer clear(pin)
	b, created, err := openHSM(cfg, uri, pin, create)
	return b, created || sealedNow, err
}

// writeFileNew creates path with mode 0600 and contents b, durably; it
// never replaces an existing file.
func writeFileNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
