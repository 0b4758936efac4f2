package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/internal/binread"
	"github.com/keyward/keyward/store/fleet"
)

// The host's import key (docs/fleet.md): a seed wrapped by the backend
// like a data key, from which package fleet derives the HPKE key pair that
// provisioners seal bundles to, bound to this host. The record keeps the
// public key too, so that a record moved to another host, or altered, is
// recognised when the derived key does not match it.
//
// Import key record v1 (ImportKeyFile). All integers are big-endian.
//
//	magic        8 bytes "KWIMPKEY"
//	version      u8 1
//	created      i64 Unix seconds
//	host         16 bytes
//	key id       u8 length, bytes: the backend key that wrapped the seed
//	public key   u16 length (fleet.PublicKeySize), bytes
//	wrapped seed u16 length (1..MaxWrappedKeySize), bytes
const ImportKeyFile = "import-key"

var importKeyMagic = [8]byte{'K', 'W', 'I', 'M', 'P', 'K', 'E', 'Y'}

const importKeyVersion = 1

var (
	// ErrNotEnrolled means the store has no import key: run keyward enroll.
	ErrNotEnrolled = errors.New("store: this host has no import key")
	// ErrImportKeyHost means the import key was made on another host (the
	// store was restored onto new hardware): make a new one with keyward
	// enroll --rotate.
	ErrImportKeyHost = errors.New("store: the import key belongs to another host")
)

// importKeyRecord is the parsed import key record.
type importKeyRecord struct {
	created time.Time
	host    HostID
	keyID   string
	public  []byte
	wrapped []byte
}

func (r *importKeyRecord) marshal() []byte {
	b := append([]byte(nil), importKeyMagic[:]...)
	b = append(b, importKeyVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.created.Unix()))
	b = append(b, r.host[:]...)
	b = append(b, byte(len(r.keyID)))
	b = append(b, r.keyID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.public)))
	b = append(b, r.public...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.wrapped)))
	return append(b, r.wrapped...)
}

func parseImportKeyRecord(b []byte) (*importKeyRecord, error) {
	rd := binread.New(b)
	if m := rd.Bytes(len(importKeyMagic)); rd.Err() != nil || [8]byte(m) != importKeyMagic || rd.U8() != importKeyVersion {
		return nil, errors.New("not a keyward import key record, or a newer version")
	}
	r := &importKeyRecord{created: time.Unix(int64(rd.U64()), 0).UTC()}
	r.host = HostID(rd.Bytes(HostIDSize))
	r.keyID = string(rd.Bytes(int(rd.U8())))
	r.public = clone(rd.Bytes(int(rd.U16())))
	r.wrapped = clone(rd.Bytes(int(rd.U16())))
	switch {
	case rd.Err() != nil:
		return nil, rd.Err()
	case rd.Rest() != 0:
		return nil, fmt.Errorf("%d trailing bytes", rd.Rest())
	case len(r.public) != fleet.PublicKeySize, len(r.wrapped) == 0, len(r.wrapped) > MaxWrappedKeySize, r.created.Unix() <= 0:
		return nil, errors.New("a field is out of range")
	}
	return r, nil
}

// readImportKey reads and parses the import key record, or returns an
// error wrapping ErrNotEnrolled.
func (s *Store) readImportKey() (*importKeyRecord, error) {
	path := filepath.Join(s.cfg.Dir, ImportKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: run keyward enroll", ErrNotEnrolled)
	}
	if err != nil {
		return nil, err
	}
	r, err := parseImportKeyRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is damaged: %v; make a new import key with keyward enroll --rotate", ErrIntegrity, path, err)
	}
	return r, nil
}

// ImportKey opens the host's import key with the backend. It fails with an
// error wrapping [ErrNotEnrolled], [ErrImportKeyHost] or [ErrIntegrity].
func (s *Store) ImportKey(ctx context.Context) (*fleet.ImportKey, error) {
	if s.cfg.Backend == nil {
		return nil, errors.New("store: no backend configured")
	}
	r, err := s.readImportKey()
	if err != nil {
		return nil, err
	}
	return s.openImportKey(ctx, r)
}

func (s *Store) openImportKey(ctx context.Context, r *importKeyRecord) (*fleet.ImportKey, error) {
	if err := s.checkImportHost(r); err != nil {
		return nil, err
	}
	seed, err := s.cfg.Backend.Unwrap(ctx, r.wrapped)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap the import key (wrapped by %s, the backend's key is %s): %w", r.keyID, s.cfg.Backend.KeyID(), err)
	}
	defer clear(seed)
	k, err := fleet.NewImportKey(seed, r.host, r.created)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(k.PublicKey(), r.public) {
		return nil, fmt.Errorf("%w: the import key in %s does not match its public key; make a new one with keyward enroll --rotate",
			ErrIntegrity, filepath.Join(s.cfg.Dir, ImportKeyFile))
	}
	return k, nil
}

// Enroll returns the host's import key, making one when there is none or
// when rotate is set (the old one then opens no bundle sealed to it).
// created reports whether it made one. Without rotate, an import key that
// does not open here (another host's, or one the backend cannot unwrap)
// is an error: the recipient file the provisioners hold would change.
func (s *Store) Enroll(ctx context.Context, rotate bool) (k *fleet.ImportKey, created bool, err error) {
	if s.cfg.Backend == nil {
		return nil, false, errors.New("store: no backend configured")
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if !rotate {
		r, err := s.readImportKey()
		if err == nil {
			k, err := s.openImportKey(ctx, r)
			return k, false, err
		}
		if !errors.Is(err, ErrNotEnrolled) {
			return nil, false, err
		}
	}
	seed := make([]byte, fleet.SeedSize)
	defer clear(seed)
	rand.Read(seed)
	now := s.cfg.Now().Truncate(time.Second).UTC()
	if k, err = fleet.NewImportKey(seed, s.cfg.Host, now); err != nil {
		return nil, false, err
	}
	wrapped, err := s.cfg.Backend.Wrap(ctx, seed)
	if err != nil {
		return nil, false, fmt.Errorf("failed to wrap the import key: %w", err)
	}
	r := &importKeyRecord{created: now, host: s.cfg.Host, keyID: s.cfg.Backend.KeyID(), public: k.PublicKey(), wrapped: wrapped}
	if err := writeReplace(s.cfg.Dir, ImportKeyFile, r.marshal()); err != nil {
		return nil, false, fmt.Errorf("failed to save the import key: %w", err)
	}
	return k, true, nil
}

// importKeyWith returns, when the store has an import key, its record
// with the seed re-wrapped by rewrap, to be replaced in the same
// transaction as the envelopes (Rewrap, RewrapTo).
func (s *Store) importKeyWith(rewrap func([]byte) ([]byte, error), to Backend) (map[string][]byte, error) {
	r, err := s.readImportKey()
	if errors.Is(err, ErrNotEnrolled) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.wrapped, err = rewrap(r.wrapped); err != nil {
		return nil, fmt.Errorf("failed to move the import key: %w", err)
	}
	r.keyID = to.KeyID()
	return map[string][]byte{ImportKeyFile: r.marshal()}, nil
}

// Recipient returns the host's recipient file contents from the import
// key record, without the backend: for keyward enroll beside a running
// agent. The key is not opened; [Store.ImportKey] does that. It fails with
// an error wrapping [ErrNotEnrolled] or [ErrImportKeyHost].
func (s *Store) Recipient(hostname string) (*fleet.Recipient, error) {
	r, err := s.readImportKey()
	if err != nil {
		return nil, err
	}
	if err := s.checkImportHost(r); err != nil {
		return nil, err
	}
	return &fleet.Recipient{Host: r.host, Hostname: hostname, KeyID: r.keyID, Created: r.created, PublicKey: r.public}, nil
}

// checkImportHost refuses an import key record made on another host.
func (s *Store) checkImportHost(r *importKeyRecord) error {
	if r.host != s.cfg.Host {
		return fmt.Errorf("%w: it was made on host %s, and this host is %s; make this host's with keyward enroll --rotate",
			ErrImportKeyHost, r.host, s.cfg.Host)
	}
	return nil
}
