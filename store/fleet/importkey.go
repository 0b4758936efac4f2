package fleet

import (
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// The HPKE suite of import keys: the recovery kit's (package
// store/recovery), a hybrid of ML-KEM-768 and X25519, so that a bundle
// stays confidential unless both are broken.
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

const (
	// SeedSize is the size of an import key's seed: what the host's
	// backend wraps, like a data key.
	SeedSize = 32
	// HostIDSize is the size of a host id (store.HostID).
	HostIDSize = 16
	// PublicKeySize is the size of an import public key: an ML-KEM-768
	// encapsulation key (1184 bytes) and an X25519 point (32).
	PublicKeySize = 1216
	// encSize is the HPKE encapsulated key: an ML-KEM-768 ciphertext
	// (1088) and an X25519 point (32).
	encSize = 1120
	// keyIDSize is the size of an import key's fingerprint.
	keyIDSize = 8

	deriveInfo = "keyward import key v1"
)

// A KeyID is an import key's fingerprint: the first 8 bytes of SHA-256 of
// its public key. Bundles name the key they are sealed to by it.
type KeyID [keyIDSize]byte

// String returns the fingerprint in hex, as enroll prints it.
func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

func keyIDOf(pub []byte) KeyID {
	h := sha256.Sum256(pub)
	return KeyID(h[:keyIDSize])
}

// An ImportKey is a host's import key pair, made from its seed by
// [NewImportKey]. It is safe for concurrent use.
type ImportKey struct {
	priv    hpke.PrivateKey
	pub     []byte
	host    [HostIDSize]byte
	created time.Time
}

// NewImportKey derives the import key of the host with id host, created
// at created (whole seconds), from a 32-byte seed. The derivation binds
// both: the seed on another host, or with another time, gives another
// key. The caller keeps the seed and should clear it.
func NewImportKey(seed []byte, host [HostIDSize]byte, created time.Time) (*ImportKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("fleet: import key seed of %d bytes, want %d", len(seed), SeedSize)
	}
	if created.Unix() <= 0 {
		return nil, errors.New("fleet: import key creation time before 1970")
	}
	info := make([]byte, 0, len(deriveInfo)+HostIDSize+8)
	info = append(info, deriveInfo...)
	info = append(info, host[:]...)
	info = binary.BigEndian.AppendUint64(info, uint64(created.Unix()))
	ikm, err := hkdf.Key(sha256.New, seed, nil, string(info), SeedSize)
	if err != nil {
		return nil, fmt.Errorf("fleet: deriving the import key: %w", err)
	}
	defer clear(ikm)
	priv, err := kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, fmt.Errorf("fleet: deriving the import key: %w", err)
	}
	wipeKey(priv)
	return &ImportKey{priv: priv, pub: priv.PublicKey().Bytes(), host: host, created: time.Unix(created.Unix(), 0).UTC()}, nil
}

// wipeKey clears the seed crypto/hpke keeps in a private key, whose Bytes
// returns it rather than a copy (Go 1.26); decapsulation uses the expanded
// keys, which cannot be cleared.
func wipeKey(k hpke.PrivateKey) {
	if b, err := k.Bytes(); err == nil {
		clear(b)
	}
}

// PublicKey returns the public key (PublicKeySize bytes).
func (k *ImportKey) PublicKey() []byte { return append([]byte(nil), k.pub...) }

// ID returns the key's fingerprint.
func (k *ImportKey) ID() KeyID { return keyIDOf(k.pub) }

// Host returns the host id the key is bound to.
func (k *ImportKey) Host() [HostIDSize]byte { return k.host }

// Created returns when the key was made.
func (k *ImportKey) Created() time.Time { return k.created }

// Recipient returns the key's recipient file contents, with the hostname
// and backend key id given.
func (k *ImportKey) Recipient(hostname, backendKeyID string) *Recipient {
	return &Recipient{Host: k.host, Hostname: hostname, KeyID: backendKeyID, Created: k.created, PublicKey: k.PublicKey()}
}
