// Package backend opens the root-key backend a keyward configuration names,
// for the store and the agent: an HSM key (pkcs11), the TPM (tpm), or an
// HSM key whose PIN the TPM keeps sealed to the boot state (hsm+tpm). It is
// the one place the kinds are told apart; everything above it sees a
// [Backend].
//
// The store records which root key it is under (store.RootKeyFile, the HSM
// key's label after a key rotation; store.TPMKeyFile, the sealed TPM store
// key). [Open] reads those records after finishing any store transaction a
// killed writer left, so that it never opens the key the envelopes have
// just been moved away from.
//
// # The TPM
//
// A tpm store keeps one AES-256 store key sealed by the TPM to the PCR
// policy (tpm.StoreKey): opening it costs a fixed number of TPM commands
// whatever the number of secrets. A store made by an older keyward seals
// each data key on its own (tpm.Device); it still opens, as the Legacy
// backend, and [MigrateTPM] moves it to a store key.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/pin"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/tpm"
)

// A Backend is what the store and the agent need of a root-key backend:
// the store's contract, and a health check cheap enough for the agent to
// run every few seconds. Implementations are safe for concurrent use.
type Backend interface {
	store.Backend
	Healthy(ctx context.Context) error
}

// TPMPINCredential is the systemd credential that may hold the TPM PIN.
const TPMPINCredential = "keyward-tpm-pin"

// Options modify [Open].
type Options struct {
	// Create makes what is missing (keyward init): the HSM key, the TPM
	// store key, the sealed HSM PIN. Open reports whether it made any.
	Create bool
	// Object opens the HSM key with this label instead of the one the
	// store records or the configuration names (keyward rewrap).
	Object string
	// PINStdin, when set, is where a PIN is read from when no credential
	// or PIN file is configured (keyward --pin-stdin).
	PINStdin io.Reader
}

// Open opens the backend cfg names. The caller closes it.
func Open(ctx context.Context, cfg config.Config, opts Options) (b Backend, created bool, err error) {
	switch cfg.Backend {
	case config.BackendTPM:
		d, err := openTPM(ctx, cfg, opts)
		if err != nil {
			return nil, false, err
		}
		b, created, err := openStoreKey(ctx, cfg, d, opts.Create)
		if err != nil {
			d.Close()
			return nil, false, err
		}
		return b, created, nil
	case config.BackendHSMTPM:
		d, err := openTPM(ctx, cfg, opts)
		if err != nil {
			return nil, false, err
		}
		defer d.Close() // only the HSM PIN needs it
		return openHSMSealedPIN(ctx, cfg, d, opts)
	default:
		uri, err := pkcs11URI(cfg, opts.Object)
		if err != nil {
			return nil, false, err
		}
		p, err := pin.Read(hsmPINSource(cfg, uri, opts))
		if err != nil {
			return nil, false, err
		}
		defer clear(p)
		return openHSM(cfg, uri, p, opts.Create)
	}
}

func hsmPINSource(cfg config.Config, uri *hsm.URI, opts Options) pin.Source {
	what := "the PKCS #11 token"
	if uri.Token() != "" {
		what = fmt.Sprintf("token %q", uri.Token())
	}
	return pin.Source{Credential: cfg.PKCS11.PINCredential, URIFile: uri.PINFile(), File: cfg.PKCS11.PINFile,
		Stdin: opts.PINStdin, For: what}
}

// pkcs11URI is the configured PKCS #11 URI, naming the key object if it is
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
	if errors.Is(err, fs.ErrNotExist) {
		return uri, nil // no store yet (keyward init)
	}
	if err != nil || label == "" {
		return uri, err
	}
	return uri.WithObject(label), nil
}

func openHSM(cfg config.Config, uri *hsm.URI, pin []byte, create bool) (Backend, bool, error) {
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

// device is a TPM Device together with the transport it owns.
type device struct {
	*tpm.Device
	t transport.TPMCloser
}

// Close closes the Device, then its transport.
func (d *device) Close() error {
	return errors.Join(d.Device.Close(), d.t.Close())
}

func openTPM(ctx context.Context, cfg config.Config, opts Options) (*device, error) {
	sel, err := tpm.ParseSelection(cfg.TPM.PCRs)
	if err != nil {
		return nil, fmt.Errorf("tpm.pcrs: %w", err)
	}
	var p []byte
	if cfg.TPM.PINFile != "" {
		p, err = pin.Read(pin.Source{Credential: TPMPINCredential, File: cfg.TPM.PINFile, Stdin: opts.PINStdin, For: "the TPM"})
		if err != nil {
			return nil, err
		}
		defer clear(p)
	}
	t, err := tpm.OpenDevice(cfg.TPM.Device)
	if err != nil {
		return nil, err
	}
	d, err := tpm.Open(tpm.Config{TPM: t, PCRs: sel, PIN: p, PersistentSRK: cfg.TPM.PersistentSRK})
	if err != nil {
		t.Close()
		return nil, err
	}
	return &device{Device: d, t: t}, nil
}

// StoreKey is the tpm backend of a store with a sealed store key.
type StoreKey struct {
	*tpm.StoreKey
	Device *device
}

// Close closes the store key, then its Device.
func (k *StoreKey) Close() error { return errors.Join(k.StoreKey.Close(), k.Device.Close()) }

// Legacy is the tpm backend of a store made before store keys: each data
// key is sealed by the TPM on its own. It opens, so that [MigrateTPM] can
// move the store to a store key; the TPM commands it costs grow with the
// number of secrets.
type Legacy struct{ *device }

// openStoreKey opens the store key the store in cfg records, or creates it
// (keyward init, before any envelope exists), or opens a store of the
// per-secret scheme as Legacy.
func openStoreKey(ctx context.Context, cfg config.Config, d *device, create bool) (Backend, bool, error) {
	sealed, err := store.ReadKeyRecord(cfg.Store.Dir, store.TPMKeyFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if sealed != nil {
		k, err := tpm.OpenStoreKey(ctx, d.Device, sealed)
		if err != nil {
			return nil, false, fmt.Errorf("failed to open the TPM store key %s: %w", filepath.Join(cfg.Store.Dir, store.TPMKeyFile), err)
		}
		return &StoreKey{StoreKey: k, Device: d}, false, nil
	}
	legacy, err := hasEnvelopes(cfg.Store.Dir)
	switch {
	case err != nil:
		return nil, false, err
	case legacy:
		// A store sealed per secret: open it so that it serves, and so
		// that keyward rewrap can move it to a store key.
		return &Legacy{d}, false, nil
	case !create:
		return nil, false, fmt.Errorf("the store in %s has no TPM store key (%s); run keyward init", cfg.Store.Dir, store.TPMKeyFile)
	}
	k, sealed, err := tpm.NewStoreKey(ctx, d.Device)
	if err != nil {
		return nil, false, err
	}
	if err := writeNewKeyRecord(cfg.Store.Dir, sealed); err != nil {
		k.Close()
		return nil, false, fmt.Errorf("failed to save the TPM store key: %w", err)
	}
	return &StoreKey{StoreKey: k, Device: d}, true, nil
}

// hasEnvelopes reports whether the store in dir holds any envelope.
func hasEnvelopes(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if filepath.Ext(e.Name()) == store.Ext {
			return true, nil
		}
	}
	return false, nil
}

// writeNewKeyRecord saves the store key sealed at keyward init, creating
// the store directory, which init otherwise makes after the backend.
func writeNewKeyRecord(dir string, sealed []byte) error {
	if err := store.Init(dir); err != nil {
		return err
	}
	return store.WriteKeyRecord(dir, store.TPMKeyFile, sealed)
}

// SealedPINPath is where the hsm+tpm backend keeps the sealed HSM PIN.
func SealedPINPath(cfg config.Config) string {
	if filepath.IsAbs(cfg.TPM.SealedHSMPIN) {
		return cfg.TPM.SealedHSMPIN
	}
	return filepath.Join(cfg.Store.Dir, cfg.TPM.SealedHSMPIN)
}

// openHSMSealedPIN opens the HSM with a PIN the TPM unseals, so the HSM key
// can only be used on this host in its measured boot state. With create, a
// PIN read from the usual sources is sealed and saved first.
func openHSMSealedPIN(ctx context.Context, cfg config.Config, d *device, opts Options) (Backend, bool, error) {
	uri, err := pkcs11URI(cfg, opts.Object)
	if err != nil {
		return nil, false, err
	}
	path := SealedPINPath(cfg)
	sealed, err := os.ReadFile(path)
	sealedNow := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && opts.Create:
		p, err := pin.Read(hsmPINSource(cfg, uri, opts))
		if err != nil {
			return nil, false, err
		}
		defer clear(p)
		if sealed, err = d.Seal(ctx, p); err != nil {
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
	p, err := d.Unseal(ctx, sealed)
	if err != nil {
		return nil, false, fmt.Errorf("the TPM refused to unseal the HSM PIN in %s: %w", path, err)
	}
	defer clear(p)
	b, created, err := openHSM(cfg, uri, p, opts.Create)
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

// ForRestore opens a backend to restore a store onto with the recovery
// kit (keyward recovery restore), with the key records to write in the
// same transaction: the configured HSM key, made if the token lacks it;
// or, for the tpm backend, a new store key on the TPM now configured,
// since the store key on record is sealed by the TPM being replaced.
//
// For hsm+tpm on a new TPM, the sealed HSM PIN on record does not unseal:
// the error says to move it aside, so that ForRestore seals the PIN to
// the new TPM, read from the usual sources.
func ForRestore(ctx context.Context, cfg config.Config, opts Options) (Backend, map[string][]byte, error) {
	if cfg.Backend != config.BackendTPM {
		opts.Create = true
		b, _, err := Open(ctx, cfg, opts)
		if cfg.Backend == config.BackendHSMTPM && errors.Is(err, tpm.ErrNotThisTPM) {
			path := SealedPINPath(cfg)
			return nil, nil, fmt.Errorf("%w; on replacement hardware, move the sealed HSM PIN aside (mv %s %s.old) and run restore again: "+
				"it seals the PIN to this TPM, reading it from pkcs11.pin_file or the terminal", err, path, path)
		}
		return b, nil, err
	}
	d, err := openTPM(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	k, sealed, err := tpm.NewStoreKey(ctx, d.Device)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return &StoreKey{StoreKey: k, Device: d}, map[string][]byte{store.TPMKeyFile: sealed}, nil
}
