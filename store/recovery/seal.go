package recovery

import (
	"crypto/hpke"
	"errors"
	"fmt"
)

// Sealed key format v1: one version byte (1) followed by the single-shot
// HPKE output, the 1120-byte MLKEM768-X25519 encapsulated key and the
// AES-256-GCM ciphertext of the 32-byte data key with its 16-byte tag.
const (
	// SealedKeySize is the size of a sealed data key: 1 + 1120 + 32 + 16.
	SealedKeySize = 1 + encSize + DataKeySize + 16

	sealedVersion = 1
	// infoPrefix separates the HPKE info of this package from any other
	// use of the key; the caller's info follows it.
	infoPrefix = "keyward recovery sealed key v1\x00"
)

func hpkeInfo(info []byte) []byte {
	return append([]byte(infoPrefix), info...)
}

// SealKey seals a 32-byte data key to the kit's public key. info is bound to
// the result: [OpenKey] succeeds only with the same info, so pass the
// identity of what the key protects (for example the envelope's name,
// version and host). The result is [SealedKeySize] bytes. SealKey is safe
// for concurrent use.
func SealKey(kit *Kit, dataKey, info []byte) ([]byte, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("recovery: data key of %d bytes, want %d", len(dataKey), DataKeySize)
	}
	pk, err := kit.publicKey()
	if err != nil {
		return nil, err
	}
	ct, err := hpke.Seal(pk, kdf, aead, hpkeInfo(info), dataKey)
	if err != nil {
		return nil, fmt.Errorf("recovery: sealing to kit %s: %w", kit.ID, err)
	}
	out := make([]byte, 0, SealedKeySize)
	out = append(out, sealedVersion)
	out = append(out, ct...)
	if len(out) != SealedKeySize {
		return nil, fmt.Errorf("recovery: sealed key of %d bytes, want %d", len(out), SealedKeySize)
	}
	return out, nil
}

// OpenKey opens a data key sealed by [SealKey] with the same info. A sealed
// key that was altered, truncated, sealed with other info or to another kit
// fails with an error wrapping [ErrIntegrity]. The caller should clear the
// returned key when done.
func OpenKey(priv *PrivateKey, sealed, info []byte) ([]byte, error) {
	if priv == nil || priv.k == nil {
		return nil, errors.New("recovery: private key missing or destroyed")
	}
	if len(sealed) != SealedKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrIntegrity, len(sealed), SealedKeySize)
	}
	if sealed[0] != sealedVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrIntegrity, sealed[0])
	}
	dk, err := hpke.Open(priv.k, kdf, aead, hpkeInfo(info), sealed[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: altered, sealed with other info, or sealed to another kit than %s",
			ErrIntegrity, priv.kitID)
	}
	if len(dk) != DataKeySize {
		clear(dk)
		return nil, fmt.Errorf("%w: data key of the wrong size", ErrIntegrity)
	}
	return dk, nil
}
