package tpm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/keyward/keyward/internal/locked"
)

// Wrapped data key format, version 1 (see docs/tpm.md):
//
//	format      1 byte    WrapFormat (0x02)
//	nonce      12 bytes   random
//	ciphertext 32 bytes   AES-256-GCM of the data key under the store key
//	tag        16 bytes   with the AAD wrapAAD
const (
	// WrapFormat is the first byte of every data key a [StoreKey] wraps.
	// It differs from the first byte of a sealed blob ([BlobVersion]) and
	// of an HSM-wrapped key (both 0x01).
	WrapFormat = 0x02

	// WrappedSize is the size in bytes of every data key a [StoreKey]
	// wraps.
	WrappedSize = 1 + gcmNonceSize + DataKeySize + gcmTagSize

	// StoreKeySize is the size of a store key: an AES-256 key.
	StoreKeySize = 32

	gcmNonceSize = 12
	gcmTagSize   = 16
)

var (
	// storeKeyMagic precedes the store key inside the sealed object, so
	// that the sealed store key and other sealed secrets (data keys of the
	// per-secret scheme, an HSM PIN) cannot be taken for one another.
	storeKeyMagic = []byte("keyward tpm store key v1")

	// wrapAAD is the AES-GCM additional data of every wrap: the format
	// byte and the purpose.
	wrapAAD = append([]byte{WrapFormat}, "keyward tpm store key: data key"...)

	// keyIDLabel is the HMAC message whose MAC under the store key
	// identifies it in the KeyID.
	keyIDLabel = []byte("keyward tpm store key: key id")
)

// A StoreKey wraps data keys in software, with AES-256-GCM under one
// AES-256 key (the store key) that a [Device] keeps sealed to its PCR
// policy (and PIN, if any). The TPM is used once, to unseal the store key
// when the StoreKey is opened; Wrap and Unwrap send no TPM command, so
// starting the agent costs the same few TPM commands whatever the number
// of secrets. It satisfies the store package's Backend interface. See the
// package documentation, "Store key", for what this trades.
//
// A StoreKey is safe for concurrent use. Wrap and Unwrap run in parallel;
// Reseal, Check and Healthy go through the Device, one TPM command
// sequence at a time, and need it open. Close waits for running Wrap and
// Unwrap calls. Methods called after Close return [ErrClosed].
type StoreKey struct {
	d     *Device
	keyID string

	mu     sync.RWMutex // guards the fields below; Close holds it for writing
	closed bool
	key    *locked.Buffer // the store key
	aead   cipher.AEAD    // AES-256-GCM under key

	sealMu sync.Mutex // held by Reseal and Check
	sealed []byte     // the blob the store key was last opened or re-sealed from
}

// NewStoreKey generates a store key with crypto/rand, seals it with d to
// d's PCR selection and PIN, checks that the blob unseals to the same key,
// and returns the open StoreKey and the sealed blob (a [Blob] of format
// version 1, not secret). Save the blob durably before wrapping anything:
// without it, no data key the StoreKey wraps can be unwrapped after Close.
// It fails as [Device.Seal] and [Device.Unseal] do.
func NewStoreKey(ctx context.Context, d *Device) (*StoreKey, []byte, error) {
	payload := make([]byte, len(storeKeyMagic)+StoreKeySize)
	defer clear(payload)
	copy(payload, storeKeyMagic)
	rand.Read(payload[len(storeKeyMagic):])
	sealed, err := d.Seal(ctx, payload)
	if err != nil {
		return nil, nil, err
	}
	k, err := OpenStoreKey(ctx, d, sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: the new store key does not unseal: %w", err)
	}
	if subtle.ConstantTimeCompare(k.key.Bytes(), payload[len(storeKeyMagic):]) != 1 {
		k.Close()
		return nil, nil, errors.New("tpm: the new store key unseals to another key than was sealed")
	}
	return k, sealed, nil
}

// OpenStoreKey unseals the store key in sealed with d: the TPM commands of
// one [Device.Unseal] (6, or 7 with a PIN). It fails as Unseal does: with a
// [*PolicyError] naming the PCRs that changed since sealing, a
// [*NotThisTPMError] for a blob from another TPM, errors wrapping
// [ErrBadPIN] or [ErrLockout], an [*IntegrityError] or a [*ParseError] for
// a damaged blob; and with an error when the blob holds something else
// than a store key (a sealed HSM PIN, a data key of the per-secret
// scheme). The StoreKey does not own d: close it before d.
func OpenStoreKey(ctx context.Context, d *Device, sealed []byte) (*StoreKey, error) {
	payload, err := d.Unseal(ctx, sealed)
	if err != nil {
		return nil, err
	}
	defer clear(payload)
	key, ok := bytes.CutPrefix(payload, storeKeyMagic)
	if !ok || len(key) != StoreKeySize {
		return nil, fmt.Errorf("tpm: the blob unseals to %d bytes that are not a keyward store key "+
			"(a sealed HSM PIN, or a data key sealed on its own?)", len(payload))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tpm: store key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("tpm: store key: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(keyIDLabel)
	return &StoreKey{
		d:      d,
		keyID:  d.KeyID() + "/" + hex.EncodeToString(mac.Sum(nil)[:8]),
		key:    locked.New(key),
		aead:   aead,
		sealed: bytes.Clone(sealed),
	}, nil
}

// KeyID returns the Device's KeyID, "/", and the hex of the first 8 bytes
// of HMAC-SHA256(store key, "keyward tpm store key: key id"), e.g.
// "tpm:000b69bae673cfee/5c0e9d1a4b7f2e61": the kind "tpm", then which TPM
// and which store key. It differs from the Device's own KeyID, which
// envelopes of the per-secret scheme carry, so the store can tell the two
// apart. It is the same after Reseal and in every process that opens the
// same sealed key on the same TPM, and changes with a new store key. The
// MAC reveals nothing about the key.
func (k *StoreKey) KeyID() string { return k.keyID }

// Wrap encrypts dataKey, which must be [DataKeySize] bytes, with
// AES-256-GCM under the store key and a random 96-bit nonce. It sends no
// TPM command; ctx is unused.
func (k *StoreKey) Wrap(_ context.Context, dataKey []byte) ([]byte, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("tpm: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, ErrClosed
	}
	out := make([]byte, 1+gcmNonceSize, WrappedSize)
	out[0] = WrapFormat
	rand.Read(out[1:])
	return k.aead.Seal(out, out[1:], dataKey, wrapAAD), nil
}

// Unwrap returns the data key in a blob made by Wrap with this store key.
// A blob that is malformed, truncated, modified or wrapped by another
// store key fails with an [*IntegrityError] (errors.Is(err,
// [ErrIntegrity]); IntegrityFailure reports true). It sends no TPM command;
// ctx is unused. The caller should clear the result after use.
func (k *StoreKey) Unwrap(_ context.Context, wrapped []byte) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, ErrClosed
	}
	switch {
	case len(wrapped) == 0 || wrapped[0] != WrapFormat:
		return nil, k.integrity(fmt.Sprintf("the wrapped data key does not start with the store key format byte 0x%02x "+
			"(a key sealed on its own by the TPM, or wrapped by an HSM?)", WrapFormat))
	case len(wrapped) != WrappedSize:
		return nil, k.integrity(fmt.Sprintf("the wrapped data key is %d bytes, want %d", len(wrapped), WrappedSize))
	}
	dataKey, err := k.aead.Open(make([]byte, 0, DataKeySize), wrapped[1:1+gcmNonceSize], wrapped[1+gcmNonceSize:], wrapAAD)
	if err != nil {
		return nil, k.integrity("the wrapped data key does not authenticate under store key " + k.keyID +
			": it was modified, or wrapped by another store key")
	}
	return dataKey, nil
}

func (k *StoreKey) integrity(reason string) error {
	return &IntegrityError{KeyID: k.keyID, Reason: reason}
}

// Reseal seals the same store key again, to the current values of sel (the
// zero Selection: the selection of the blob it was last opened or
// re-sealed from) and the Device's PIN, with [Device.Reseal]: the old
// blob's policy must still hold, or it fails with a [*PolicyError]. It
// then checks that the new blob unseals to this key, makes it the blob
// that later Reseal and Check calls use, and returns it. Save it in place
// of the old one; the KeyID does not change, and nothing wrapped needs to
// be wrapped again. See docs/tpm.md for re-sealing around a planned change
// of the measured boot state.
func (k *StoreKey) Reseal(ctx context.Context, sel Selection) ([]byte, error) {
	k.sealMu.Lock()
	defer k.sealMu.Unlock()
	if k.isClosed() {
		return nil, ErrClosed
	}
	blob, err := k.d.Reseal(ctx, k.sealed, sel)
	if err != nil {
		return nil, err
	}
	payload, err := k.d.Unseal(ctx, blob)
	if err != nil {
		return nil, fmt.Errorf("tpm: the re-sealed store key does not unseal: %w", err)
	}
	defer clear(payload)
	if err := k.holds(payload); err != nil {
		return nil, err
	}
	k.sealed = blob
	return bytes.Clone(blob), nil
}

// holds checks that payload, unsealed from a re-sealed blob, holds k's key.
func (k *StoreKey) holds(payload []byte) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return ErrClosed
	}
	if key, ok := bytes.CutPrefix(payload, storeKeyMagic); !ok || subtle.ConstantTimeCompare(key, k.key.Bytes()) != 1 {
		return errors.New("tpm: the re-sealed blob unseals to another key than the store key")
	}
	return nil
}

// Check returns the PCRs of the sealed store key's selection whose values
// differ now from those at sealing time, ascending, with [Device.Check] on
// the blob it was last opened or re-sealed from; none means it would
// unseal in this boot state.
func (k *StoreKey) Check(ctx context.Context) ([]int, error) {
	k.sealMu.Lock()
	defer k.sealMu.Unlock()
	if k.isClosed() {
		return nil, ErrClosed
	}
	return k.d.Check(ctx, k.sealed)
}

// Healthy checks that the Device's TPM answers and holds its storage key
// ([Device.Healthy]); cheap enough for a watchdog.
func (k *StoreKey) Healthy(ctx context.Context) error {
	if k.isClosed() {
		return ErrClosed
	}
	return k.d.Healthy(ctx)
}

func (k *StoreKey) isClosed() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.closed
}

// Close clears the store key from memory and drops the cipher made from
// it. It does not close the Device. Further calls return nil.
func (k *StoreKey) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.key.Wipe()
	k.aead = nil
	return nil
}
