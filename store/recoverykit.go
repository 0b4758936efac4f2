package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/store/recovery"
)

// The break-glass recovery kit (docs/recovery.md): its public part is kept
// in the store, bound to the backend so that it cannot be swapped for
// someone else's, and every data key is also sealed to it, in a sidecar
// file per envelope (NAME@VERSION.kwe.kwr). The kit's private key exists only
// as shares held by custodians.
//
// A fleet kit (docs/recovery.md) is named by the configuration, which is
// what makes it trusted; the store records which one its data keys are
// sealed to (fleet.kit, a copy of the kit) and keeps them in a sidecar
// of their own (NAME@VERSION.kwe.kwf). A host with both seals to both,
// and either kit restores it.
const (
	kitFile    = "recovery.kit"
	kitBinding = "recovery.kit.binding" // the kit's SHA-256, wrapped by the backend
	sidecarExt = ".kwr"

	fleetKitFile    = "fleet.kit"
	fleetSidecarExt = ".kwf"
)

var (
	// ErrKitExists means the store already has a recovery kit.
	ErrKitExists = errors.New("store: the store already has a recovery kit")
	// ErrNoKit means the store has no recovery kit.
	ErrNoKit = errors.New("store: the store has no recovery kit")
	// ErrNothingToRestore means a restore found no envelope in the store.
	ErrNothingToRestore = errors.New("store: nothing to restore")
)

// recoveryInfo is what a sealed data key is bound to: the identity of its
// envelope, which re-wrapping does not change.
func recoveryInfo(h *Header) []byte {
	return fmt.Appendf(nil, "%s\x00%d\x00%d\x00%x", h.Name, h.Version, h.Created.Unix(), h.Host[:])
}

func sidecarName(name string, version uint32) string { return fileName(name, version) + sidecarExt }

func fleetSidecarName(name string, version uint32) string {
	return fileName(name, version) + fleetSidecarExt
}

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

// sealToKits writes e's data key, sealed to the store's recovery kit and
// to the configured fleet kit, beside e. The caller holds the lock.
func (s *Store) sealToKits(ctx context.Context, e *Envelope) error {
	kit, err := s.Kit(ctx)
	if err != nil {
		return err
	}
	if s.cfg.FleetKit != nil {
		if _, err := s.adoptFleetKit(ctx, false); err != nil {
			return err
		}
	}
	sidecars, err := s.kitSidecars(ctx, kit, e)
	if err != nil {
		return err
	}
	for _, sc := range sidecars {
		if err := writeReplace(s.cfg.Dir, sc.name, sc.sealed); err != nil {
			return err
		}
	}
	return nil
}

// A sidecar is a data key sealed to a kit, and the file that holds it.
type sidecar struct {
	name   string
	sealed []byte
}

// kitSidecars returns e's data key sealed to kit (the store's recovery
// kit, nil if none) and to the configured fleet kit.
func (s *Store) kitSidecars(ctx context.Context, kit *recovery.Kit, e *Envelope) ([]sidecar, error) {
	var out []sidecar
	if kit != nil {
		sealed, err := s.sealedToKit(ctx, kit, e)
		if err != nil {
			return nil, fmt.Errorf("failed to seal it to the recovery kit: %w", err)
		}
		out = append(out, sidecar{sidecarName(e.Name, e.Version), sealed})
	}
	if s.cfg.FleetKit != nil {
		sealed, err := s.sealedToKit(ctx, s.cfg.FleetKit, e)
		if err != nil {
			return nil, fmt.Errorf("failed to seal it to the fleet recovery kit: %w", err)
		}
		out = append(out, sidecar{fleetSidecarName(e.Name, e.Version), sealed})
	}
	return out, nil
}

// removeSidecars removes the data keys of a version sealed to the kits.
func (s *Store) removeSidecars(name string, version uint32) {
	os.Remove(filepath.Join(s.cfg.Dir, sidecarName(name, version)))
	os.Remove(filepath.Join(s.cfg.Dir, fleetSidecarName(name, version)))
}

// AdoptFleetKit seals every data key to the configured fleet kit
// ([Config.FleetKit]) unless it is sealed to it already, and records the
// kit, in one transaction. It returns the number of data keys it sealed:
// 0 when there is no fleet kit or nothing to do. The agent does it at
// start, so that secrets put before the host was given the kit (or put
// by a keyward not configured with it) are covered; Put does it before
// its first seal to a new fleet kit.
func (s *Store) AdoptFleetKit(ctx context.Context) (int, error) {
	if s.cfg.FleetKit == nil {
		return 0, nil
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	return s.adoptFleetKit(ctx, true)
}

// adoptFleetKit is AdoptFleetKit under the lock. When the store already
// records the kit, it seals only the keys that have no sealed copy if
// missing is set, and nothing otherwise (Put: one check, not one per
// envelope).
func (s *Store) adoptFleetKit(ctx context.Context, missing bool) (int, error) {
	raw := s.cfg.FleetKit.Marshal()
	have, err := os.ReadFile(filepath.Join(s.cfg.Dir, fleetKitFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	recorded := err == nil && bytes.Equal(have, raw)
	if recorded && !missing {
		return 0, nil
	}
	envs, _, err := s.List()
	if err != nil {
		return 0, err
	}
	extra := make(map[string][]byte, len(envs)+1)
	for _, e := range envs {
		name := fleetSidecarName(e.Name, e.Version)
		if _, err := os.Stat(filepath.Join(s.cfg.Dir, name)); recorded && err == nil {
			continue
		}
		sealed, err := s.sealedToKit(ctx, s.cfg.FleetKit, e)
		if err != nil {
			return 0, fmt.Errorf("failed to seal %s version %d to fleet recovery kit %s: %w", e.Name, e.Version, s.cfg.FleetKit.ID, err)
		}
		extra[name] = sealed
	}
	if recorded && len(extra) == 0 {
		return 0, nil
	}
	extra[fleetKitFile] = raw
	if _, err := s.replaceAllWith(ctx, nil, extra); err != nil {
		return 0, fmt.Errorf("failed to adopt fleet recovery kit %s: %w", s.cfg.FleetKit.ID, err)
	}
	return len(extra) - 1, nil
}

// readFleetKit returns the fleet kit the store's data keys are sealed
// to, nil if none.
func (s *Store) readFleetKit() (*recovery.Kit, error) {
	raw, err := os.ReadFile(filepath.Join(s.cfg.Dir, fleetKitFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return recovery.ParseKit(raw)
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

// A RestoreResult says what [Store.Restore] did.
type RestoreResult struct {
	// Envelopes is how many envelopes were restored.
	Envelopes int
	// Kit is the id of the kit whose private key restored them.
	Kit string
	// Dropped lists the ids of recovery kits the store held that this
	// restore could not verify (the shares were of another kit, and the
	// backend that bound them is gone): they were removed with their
	// sealed keys rather than bound to the new backend. Make a new host
	// kit with keyward recovery init.
	Dropped []string
}

// RecoveryKit returns the store's recovery kit with the id id (the kit
// id written on the shares): the host's own kit or the fleet kit its data
// keys are sealed to. Neither is verified: the backend that bound the
// host kit may be gone; [recovery.Combine] checks that the shares rebuild
// it. It returns an error wrapping [ErrNoKit], naming the kits there are,
// when the store has no such kit.
func (s *Store) RecoveryKit(id string) (*recovery.Kit, error) {
	host, _, err := s.readKit()
	if err != nil {
		return nil, err
	}
	fleet, err := s.readFleetKit()
	if err != nil {
		return nil, err
	}
	var have []string
	for _, k := range []struct {
		kit  *recovery.Kit
		what string
	}{{host, "host kit"}, {fleet, "fleet kit"}} {
		if k.kit == nil {
			continue
		}
		if k.kit.ID == id {
			return k.kit, nil
		}
		have = append(have, k.what+" "+k.kit.ID)
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("%w: no data key was sealed to any recovery kit", ErrNoKit)
	}
	return nil, fmt.Errorf("%w %s: the store's data keys are sealed to %s", ErrNoKit, id, strings.Join(have, " and "))
}

// CheckRestore reports whether the store holds something to restore: at
// least one envelope ([ErrNothingToRestore] if not) and a kit its data
// keys are sealed to ([ErrNoKit]). [Store.Restore] checks it; call it
// before custodians are asked for their shares.
func (s *Store) CheckRestore() error {
	envs, _, err := s.List()
	if err != nil {
		return err
	}
	if len(envs) == 0 {
		return fmt.Errorf("%w: the store %s holds no envelope; copy the old host's store (a backup) there first", ErrNothingToRestore, s.cfg.Dir)
	}
	host, _, err := s.readKit()
	if err != nil {
		return err
	}
	fleet, err := s.readFleetKit()
	if err != nil || host != nil || fleet != nil {
		return err
	}
	return fmt.Errorf("%w: no data key in %s was sealed to a recovery kit", ErrNoKit, s.cfg.Dir)
}

// Restore opens every data key with the recovery kit's private key,
// rebuilt from custodians' shares, and re-wraps it to the store's current
// backend (a new HSM key, a new TPM, a new PCR state). Each envelope is
// re-bound to this host ([Config.Host]): restored onto replacement
// hardware, with a new machine id, it is served there. Its data key is
// sealed again to the kits the store keeps: the kit restored with, the
// configured fleet kit ([Config.FleetKit]); a kit the shares do not
// verify is dropped (see [RestoreResult]).
//
// Every new envelope is opened with the backend on this host before the
// transaction commits: a restore that would leave anything unservable
// fails and changes nothing, and so does a store with no envelope. All
// envelopes, sealed keys, kit records and the key records that make the
// store open with the new backend (a new TPM store key) are replaced in
// one transaction.
func (s *Store) Restore(ctx context.Context, priv *recovery.PrivateKey, records map[string][]byte) (RestoreResult, error) {
	for name := range records {
		if !keyRecords[name] {
			return RestoreResult{}, fmt.Errorf("store: %q is not a key record", name)
		}
	}
	if s.cfg.Backend == nil {
		return RestoreResult{}, errors.New("store: no backend configured")
	}
	unlock, err := s.lock()
	if err != nil {
		return RestoreResult{}, err
	}
	defer unlock()
	if err := s.CheckRestore(); err != nil {
		return RestoreResult{}, err
	}
	kit, err := s.RecoveryKit(priv.KitID())
	if err != nil {
		return RestoreResult{}, err
	}
	host, hostRaw, err := s.readKit()
	if err != nil {
		return RestoreResult{}, err
	}
	fleet, err := s.readFleetKit()
	if err != nil {
		return RestoreResult{}, err
	}
	res := RestoreResult{Kit: kit.ID}
	from := sidecarName
	if fleet != nil && fleet.ID == kit.ID {
		from = fleetSidecarName
	}
	extra := map[string][]byte{}
	maps.Copy(extra, records)
	// Only kits the shares verify, or the configuration names, receive
	// the data keys: a kit planted in a copied store gets nothing.
	if host != nil && host.ID != kit.ID {
		res.Dropped = append(res.Dropped, host.ID)
		host = nil
	}
	if host != nil {
		// The kit is bound to the new backend in the same transaction.
		sum := sha256.Sum256(hostRaw)
		if extra[kitBinding], err = s.cfg.Backend.Wrap(ctx, sum[:]); err != nil {
			return RestoreResult{}, err
		}
	}
	switch {
	case s.cfg.FleetKit != nil:
		if fleet != nil && fleet.ID != kit.ID && fleet.ID != s.cfg.FleetKit.ID {
			res.Dropped = append(res.Dropped, fleet.ID)
		}
		fleet = s.cfg.FleetKit
		extra[fleetKitFile] = fleet.Marshal()
	case fleet != nil && fleet.ID != kit.ID:
		res.Dropped = append(res.Dropped, fleet.ID)
		fleet = nil
	}
	res.Envelopes, err = s.replaceAllWith(ctx, func(e *Envelope) (*Envelope, error) {
		sealed, err := os.ReadFile(filepath.Join(s.cfg.Dir, from(e.Name, e.Version)))
		if err != nil {
			return nil, fmt.Errorf("no data key sealed to recovery kit %s (the version predates the kit?): %w", kit.ID, err)
		}
		dataKey, err := recovery.OpenKey(priv, sealed, recoveryInfo(&e.Header))
		if err != nil {
			return nil, err
		}
		defer clear(dataKey)
		h := e.Header
		h.Host = s.cfg.Host
		ne, err := rewrapKey(ctx, e, h, dataKey, s.cfg.Backend)
		if err != nil {
			return nil, err
		}
		if err := s.checkServable(ctx, ne); err != nil {
			return nil, err
		}
		for _, k := range []struct {
			kit  *recovery.Kit
			name string
		}{{host, sidecarName(e.Name, e.Version)}, {fleet, fleetSidecarName(e.Name, e.Version)}} {
			if k.kit == nil {
				continue
			}
			if extra[k.name], err = recovery.SealKey(k.kit, dataKey, recoveryInfo(&ne.Header)); err != nil {
				return nil, err
			}
		}
		return ne, nil
	}, extra)
	if err != nil {
		return RestoreResult{}, err
	}
	// Dropped kits go after the commit, the kit file first, so that an
	// interruption leaves no kit rather than one that fails to verify.
	for _, id := range res.Dropped {
		if h, _, _ := s.readKit(); h != nil && h.ID == id {
			err = errors.Join(err, s.removeKitFiles(kitFile, kitBinding, sidecarExt))
		}
		if f, _ := s.readFleetKit(); f != nil && f.ID == id {
			err = errors.Join(err, s.removeKitFiles(fleetKitFile, "", fleetSidecarExt))
		}
	}
	if err != nil {
		return res, fmt.Errorf("restored, but a kit this restore could not verify was not removed: %w", err)
	}
	return res, nil
}

// checkServable opens e, as it is to be written, with the backend on this
// host, as the agent will.
func (s *Store) checkServable(ctx context.Context, e *Envelope) error {
	parsed, err := Parse(e.Marshal())
	if err != nil {
		return err
	}
	sec, err := open(ctx, s.cfg.Backend, s.cfg.Host, parsed)
	if err != nil {
		return fmt.Errorf("the restored envelope would not be served: %w", err)
	}
	sec.Destroy()
	return nil
}

// removeKitFiles removes a kit's file, its binding (if any) and every
// data key sealed to it (files ending in ext).
func (s *Store) removeKitFiles(file, binding, ext string) error {
	if err := os.Remove(filepath.Join(s.cfg.Dir, file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if binding != "" {
		if err := os.Remove(filepath.Join(s.cfg.Dir, binding)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	sealed, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*"+Ext+ext))
	if err != nil {
		return err
	}
	for _, p := range sealed {
		os.Remove(p)
	}
	return syncDir(s.cfg.Dir)
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
