package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/tpm"
)

// MigrateTPM moves a store whose data keys are sealed one by one (Legacy)
// to a new TPM store key on the same TPM, in one store transaction: every
// data key is re-wrapped under the store key and the sealed store key is
// recorded with them, so that an interruption leaves the old store or the
// new one. It returns the new backend, which the caller closes, and the
// number of envelopes moved.
func MigrateTPM(ctx context.Context, s *store.Store, l *Legacy) (*StoreKey, int, error) {
	k, sealed, err := tpm.NewStoreKey(ctx, l.Device)
	if err != nil {
		return nil, 0, err
	}
	n, err := s.RewrapTo(ctx, k, map[string][]byte{store.TPMKeyFile: sealed})
	if err != nil {
		k.Close()
		return nil, 0, err
	}
	return &StoreKey{StoreKey: k, Device: l.device}, n, nil
}

// ResealTPM seals the store's TPM keys again to the current values of the
// PCRs of sel (the zero Selection: the configured one): the one store key,
// or, in a Legacy store, every data key in one transaction. The policy
// they are sealed to now must still hold. It returns how many blobs it
// re-sealed.
func ResealTPM(ctx context.Context, s *store.Store, b Backend, sel tpm.Selection) (int, error) {
	switch b := b.(type) {
	case *StoreKey:
		if sel.IsZero() {
			sel = b.Device.PCRSelection()
		}
		sealed, err := b.Reseal(ctx, sel)
		if err != nil {
			return 0, err
		}
		return 1, store.WriteKeyRecord(s.Dir(), store.TPMKeyFile, sealed)
	case *Legacy:
		if sel.IsZero() {
			sel = b.PCRSelection()
		}
		return s.Rewrap(ctx, func(w []byte) ([]byte, error) { return b.Reseal(ctx, w, sel) })
	}
	return 0, errors.New("reseal works on the tpm backend")
}

// A TPMReport says what a store's TPM keys are sealed to and whether they
// would unseal in the current boot state, without unsealing anything: for
// keyward pcrs, before and after a change to the measured boot.
type TPMReport struct {
	// Selection is the configured PCR selection, and Values the current
	// value of each of its PCRs.
	Selection tpm.Selection
	Values    map[int][]byte
	// Legacy is set for a store whose data keys are sealed one by one.
	Legacy bool
	// Sealed lists the store key, or in a Legacy store each envelope.
	Sealed []SealedState
}

// A SealedState is one sealed blob of a [TPMReport].
type SealedState struct {
	Name    string // the secret, or "" for the store key
	Version uint32
	PCRs    tpm.Selection // what it is sealed to; zero when it is not a sealed blob
	Changed []int         // the PCRs of PCRs that changed since sealing
	Err     error         // why it would not unseal, besides Changed
}

// CheckTPM reports on the TPM keys of the store s (opened without a
// backend) under the configuration cfg.
func CheckTPM(ctx context.Context, cfg config.Config, opts Options, s *store.Store) (*TPMReport, error) {
	d, err := openTPM(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	r := &TPMReport{Selection: d.PCRSelection()}
	if r.Values, err = d.PCRs(ctx, r.Selection); err != nil {
		return nil, err
	}
	check := func(name string, version uint32, blob []byte) {
		st := SealedState{Name: name, Version: version}
		bl, err := tpm.ParseBlob(blob)
		if err != nil {
			st.Err = fmt.Errorf("not a TPM-sealed key: %w", err)
		} else {
			st.PCRs = bl.PCRs
			st.Changed, st.Err = d.Check(ctx, blob)
		}
		r.Sealed = append(r.Sealed, st)
	}
	sealed, err := store.ReadKeyRecord(s.Dir(), store.TPMKeyFile)
	if err != nil {
		return nil, err
	}
	if sealed != nil {
		check("", 0, sealed)
		return r, nil
	}
	r.Legacy = true
	envs, _, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, e := range envs {
		check(e.Name, e.Version, e.WrappedKey)
	}
	return r, nil
}
