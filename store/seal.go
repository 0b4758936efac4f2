package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrIntegrity means an envelope was modified, renamed, copied from
	// another host or another backend key, or damaged: it does not
	// decrypt. Restore it from a backup or put the secret again.
	ErrIntegrity = errors.New("store: integrity check failed")

	// ErrWrongBackend means an envelope was sealed by another kind of
	// backend than the one configured (for example a TPM envelope in a
	// PKCS#11 store).
	ErrWrongBackend = errors.New("store: envelope sealed by another backend")

	// ErrWrongKey means an envelope was sealed under another root key of
	// the same kind of backend.
	ErrWrongKey = errors.New("store: envelope sealed under another key")
)

// seal encrypts plaintext under a fresh data key wrapped by b, filling in
// the key id, wrapped key and nonce of h.
func seal(ctx context.Context, b Backend, h Header, plaintext []byte) (*Envelope, error) {
	if len(plaintext) > MaxSecretSize {
		return nil, fmt.Errorf("secret of %d bytes is larger than the %d-byte limit", len(plaintext), MaxSecretSize)
	}
	dataKey := make([]byte, DataKeySize)
	defer clear(dataKey)
	rand.Read(dataKey)
	wrapped, err := b.Wrap(ctx, dataKey)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap the data key: %w", err)
	}
	return encrypt(h, b.KeyID(), wrapped, dataKey, plaintext)
}

// encrypt completes h with the key id, the wrapped data key and a fresh
// nonce, and encrypts plaintext under dataKey with the header as AAD.
func encrypt(h Header, keyID string, wrapped, dataKey, plaintext []byte) (*Envelope, error) {
	h.KeyID = keyID
	h.WrappedKey = wrapped
	rand.Read(h.Nonce[:])
	if err := h.validate(); err != nil {
		return nil, err
	}
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	ct := aead.Seal(make([]byte, 0, len(plaintext)+tagSize), h.Nonce[:], plaintext, h.appendTo(nil))
	return &Envelope{Header: h, Ciphertext: ct}, nil
}

// open decrypts e with b on the host identified by host.
func open(ctx context.Context, b Backend, host HostID, e *Envelope) (*Secret, error) {
	id := fmt.Sprintf("%s version %d", e.Name, e.Version)
	if e.Host != host {
		return nil, fmt.Errorf("%w: %s was sealed on another host (host id %s, this host is %s)", ErrIntegrity, id, e.Host, host)
	}
	if got, want := e.Backend(), backendKind(b.KeyID()); got != want {
		return nil, fmt.Errorf("%w: %s was sealed by the %s backend, and this store is configured for %s", ErrWrongBackend, id, got, want)
	}
	if e.KeyID != b.KeyID() {
		return nil, fmt.Errorf("%w: %s was sealed under %s, and the configured key is %s", ErrWrongKey, id, e.KeyID, b.KeyID())
	}
	if len(e.Ciphertext) < tagSize {
		return nil, fmt.Errorf("%w: %s has a truncated ciphertext", ErrIntegrity, id)
	}
	dataKey, err := b.Unwrap(ctx, e.WrappedKey)
	if err != nil {
		var ie interface{ IntegrityFailure() bool }
		if errors.As(err, &ie) && ie.IntegrityFailure() {
			return nil, fmt.Errorf("%w: the wrapped data key of %s does not verify: %v", ErrIntegrity, id, err)
		}
		return nil, fmt.Errorf("failed to unwrap the data key of %s: %w", id, err)
	}
	defer clear(dataKey)
	sec, err := decrypt(e, dataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not decrypt: its header or ciphertext was modified", ErrIntegrity, id)
	}
	return sec, nil
}

// decrypt opens e's ciphertext with its data key and header.
func decrypt(e *Envelope, dataKey []byte) (*Secret, error) {
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	if len(e.Ciphertext) < tagSize {
		return nil, ErrIntegrity
	}
	s := newSecretSize(len(e.Ciphertext) - tagSize)
	if _, err := aead.Open(s.b[:0], e.Nonce[:], e.Ciphertext, e.Header.appendTo(nil)); err != nil {
		s.Destroy()
		return nil, ErrIntegrity
	}
	return s, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("data key is %d bytes, want %d", len(key), DataKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// backendKind returns the part of a key id before the first ':'.
func backendKind(keyID string) string {
	kind, _, _ := strings.Cut(keyID, ":")
	return kind
}
