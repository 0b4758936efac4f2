package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/store/recovery"
)

// The break-glass recovery kit (docs/recovery.md): its public part is kept
// in the store, bound to the backend so that it cannot be swapped for
// someone else's, and every data key is also sealed to it, in a sidecar
// file per envelope (NAME@VERSION.kwe.kwr). The kit's private key exists only
// as shares held by custodians.
const (
	kitFile    = "recovery.kit"
	kitBinding = "recovery.kit.binding" // the kit's SHA-256, wrapped by the backend
	sidecarExt = ".kwr"
)

var (
	// ErrKitExists means the store already has a recovery kit.
	ErrKitExists = errors.New("store: the store already has a recovery kit")
	// ErrNoKit means the store has no recovery kit.
	ErrNoKit = errors.New("store: the store has no recovery kit")
)

// recoveryInfo is what a sealed data key is bound to: the identity of its
// envelope, which re-wrapping does not change.
func recoveryInfo(h *Header) []byte {
	return fmt.Appendf(nil, "%s\x00%d\x00%d\x00%x", h.Name, h.Version, h.Created.Unix(), h.Host[:])
}

func sidecarName(name string, version uint32) string { return fileName(name, version) + sidecarExt }

// Kit returns the store's recovery kit after checking, through the
// backend, that it is the kit this store was given; nil if there is none.
func (s *Store) Kit(ctx context.Context) (*recovery.Kit, error) {
	kit, raw, err := s.readKit()
	if err != nil || kit == nil {
		return nil, err
	}
	binding, err := os.ReadFile(filepath.Join(s.cfg.Dir, kitBinding))
	if err != nil {
		return nil, fmt.Errorf("the recovery kit has no binding: %w", err)
	}
	sum, err := s.cfg.Backend.Unwrap(ctx, binding)
	if err != nil {
		return nil, fmt.Errorf("the recovery kit's binding does not verify: %w", err)
	}
	defer clear(sum)
	want := sha256.Sum256(raw)
	if subtle.ConstantTimeCompare(sum, want[:]) != 1 {
		return nil, fmt.Errorf("%w: the recovery kit file %s was replaced; restore it from a backup", ErrIntegrity, kitFile)
	}
	return kit, nil
}

// KitUnverified returns the store's recovery kit without checking its
// binding, for a restore, when the backend that bound it is gone. Combine
// checks that the shares match it. It returns ErrNoKit if there is none.
func (s *Store) KitUnverified() (*recovery.Kit, error) {
	kit, _, err := s.readKit()
	if err == nil && kit == nil {
		err = ErrNoKit
	}
	return kit, err
}

func (s *Store) readKit() (*recovery.Kit, []byte, error) {
	raw, err := os.ReadFile(filepath.Join(s.cfg.Dir, kitFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	kit, err := recovery.ParseKit(raw)
	if err != nil {
		return nil, nil, err
	}
	return kit, raw, nil
}

// InitRecovery gives the store a recovery kit: every data key is sealed to
// it, then the kit is saved with its binding. Later puts seal their data
// keys to it too. An existing kit is replaced only with replace (the old
// kit's shares then recover nothing put from now on). It returns the
// number of data keys sealed.
func (s *Store) InitRecovery(ctx context.Context, kit *recovery.Kit, replace bool) (int, error) {
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if k, _, err := s.readKit(); err != nil || (k != nil && !replace) {
		return 0, errors.Join(ErrKitExists, err)
	}
	envs, _, err := s.List()
	if err != nil {
		return 0, err
	}
	// Sidecars, kit and binding in one transaction: a failure or a kill
	// leaves the previous kit (if any) in force, every key sealed to it.
	extra := make(map[string][]byte, len(envs)+2)
	for _, e := range envs {
		sealed, err := s.sealedToKit(ctx, kit, e)
		if err != nil {
			return 0, fmt.Errorf("%s version %d: %w", e.Name, e.Version, err)
		}
		extra[sidecarName(e.Name, e.Version)] = sealed
	}
	raw := kit.Marshal()
	sum := sha256.Sum256(raw)
	if extra[kitBinding], err = s.cfg.Backend.Wrap(ctx, sum[:]); err != nil {
		return 0, fmt.Errorf("failed to bind the recovery kit to the backend: %w", err)
	}
	extra[kitFile] = raw
	if _, err := s.replaceAllWith(ctx, nil, extra); err != nil {
		return 0, err
	}
	return len(envs), nil
}

// sealToKit writes e's data key, sealed to kit, beside e.
func (s *Store) sealToKit(ctx context.Context, kit *recovery.Kit, e *Envelope) error {
	sealed, err := s.sealedToKit(ctx, kit, e)
	if err != nil {
		return err
	}
	return writeReplace(s.cfg.Dir, sidecarName(e.Name, e.Version), sealed)
}

// sealedToKit returns e's data key sealed to kit.
func (s *Store) sealedToKit(ctx context.Context, kit *recovery.Kit, e *Envelope) ([]byte, error) {
	dataKey, err := s.cfg.Backend.Unwrap(ctx, e.WrappedKey)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	return recovery.SealKey(kit, dataKey, recoveryInfo(&e.Header))
}

// Restore re-wraps every data key to the store's current backend (a new
// HSM key, a new TPM, a new PCR state) with the data keys opened by the
// recovery kit's private key, rebuilt from custodians' shares. All
// envelopes, and the key records that make the store open with the new
// backend (a new TPM store key), are replaced in one transaction. It
// returns how many envelopes.
func (s *Store) Restore(ctx context.Context, priv *recovery.PrivateKey, records map[string][]byte) (int, error) {
	for name := range records {
		if !keyRecords[name] {
			return 0, fmt.Errorf("store: %q is not a key record", name)
		}
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	kit, raw, err := s.readKit()
	if err != nil {
		return 0, err
	}
	if kit == nil {
		return 0, ErrNoKit
	}
	if kit.ID != priv.KitID() {
		return 0, fmt.Errorf("the shares rebuild kit %s, and this store's kit is %s", priv.KitID(), kit.ID)
	}
	// The kit is bound to the new backend in the same transaction.
	sum := sha256.Sum256(raw)
	binding, err := s.cfg.Backend.Wrap(ctx, sum[:])
	if err != nil {
		return 0, err
	}
	extra := map[string][]byte{kitBinding: binding}
	maps.Copy(extra, records)
	return s.replaceAllWith(ctx, func(e *Envelope) (*Envelope, error) {
		sealed, err := os.ReadFile(filepath.Join(s.cfg.Dir, sidecarName(e.Name, e.Version)))
		if err != nil {
			return nil, fmt.Errorf("no data key sealed to the recovery kit (the version predates the kit?): %w", err)
		}
		dataKey, err := recovery.OpenKey(priv, sealed, recoveryInfo(&e.Header))
		if err != nil {
			return nil, err
		}
		defer clear(dataKey)
		return rewrapKey(ctx, e, dataKey, s.cfg.Backend)
	}, extra)
}

// writeReplace atomically and durably replaces dir/name with b.
func writeReplace(dir, name string, b []byte) error {
	tmp, err := writeTemp(dir, b)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}
