package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Key records are files in the store directory that say which root key
// the store is under. They are replaced in the same transaction as the
// envelopes (see [Store.RewrapTo]), so that the envelopes and the key that
// opens them never disagree.
const (
	// RootKeyFile records the label of the PKCS #11 key-encryption key
	// after a key rotation; when it exists it overrides the object the
	// configuration names.
	RootKeyFile = "root-key"
	// TPMKeyFile holds the TPM store key, sealed to the TPM's PCR policy
	// (package tpm, StoreKey).
	TPMKeyFile = "tpm-store-key"
)

var keyRecords = map[string]bool{RootKeyFile: true, TPMKeyFile: true}

// maxKeyRecord bounds a key record.
const maxKeyRecord = 64 << 10

// ReadKeyRecord returns the key record name of the store in dir, or nil
// when it does not exist. A transaction that a killed writer committed but
// did not finish is finished first (a pending one is discarded), so that
// the record read is the one the envelopes are under; that needs the
// store's owner, and fails for others while a transaction is pending.
func ReadKeyRecord(dir, name string) ([]byte, error) {
	if !keyRecords[name] {
		return nil, fmt.Errorf("store: %q is not a key record", name)
	}
	if err := finishPendingIn(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	case len(b) == 0 || len(b) > maxKeyRecord:
		return nil, fmt.Errorf("%s holds %d bytes, not a key record", path, len(b))
	}
	return b, nil
}

// RootKeyLabel returns the label recorded in [RootKeyFile], or "".
func RootKeyLabel(dir string) (string, error) {
	b, err := ReadKeyRecord(dir, RootKeyFile)
	if err != nil || b == nil {
		return "", err
	}
	label := strings.TrimSpace(string(b))
	if label == "" || len(label) > 255 {
		return "", fmt.Errorf("%s does not hold a key label", filepath.Join(dir, RootKeyFile))
	}
	return label, nil
}

// WriteKeyRecord replaces a key record of the store in dir, atomically
// and durably, under the store's lock. Use it for a record whose envelopes
// do not change (a TPM store key re-sealed to new PCR values, a store key
// made before any envelope); [Store.RewrapTo] moves envelopes and records
// together.
func WriteKeyRecord(dir, name string, b []byte) error {
	if !keyRecords[name] {
		return fmt.Errorf("store: %q is not a key record", name)
	}
	if err := checkDir(dir); err != nil {
		return err
	}
	s := &Store{cfg: Config{Dir: dir}}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return writeReplace(dir, name, b)
}

// finishPendingIn finishes a committed transaction in dir, if there is
// one, under the store's lock.
func finishPendingIn(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, commitMarker)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := checkDir(dir); err != nil {
		return err
	}
	return (&Store{cfg: Config{Dir: dir}}).FinishPending()
}
