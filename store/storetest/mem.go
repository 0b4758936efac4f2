package storetest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/keyward/keyward/store"
)

// MemBackend is a [store.Backend] whose root key is an AES-256 key in
// process memory. It exists to test the store's own logic quickly; it
// offers no protection and is never used outside tests.
type MemBackend struct {
	aead cipher.AEAD
	id   string
}

// NewMemBackend returns a MemBackend with a fresh random root key.
func NewMemBackend() *MemBackend {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	return &MemBackend{aead: aead, id: "mem:" + hex.EncodeToString(key[:4])}
}

type integrityError struct{}

func (integrityError) Error() string          { return "mem: integrity check failed" }
func (integrityError) IntegrityFailure() bool { return true }

// Wrap implements store.Backend.
func (m *MemBackend) Wrap(_ context.Context, dataKey []byte) ([]byte, error) {
	if len(dataKey) != store.DataKeySize {
		return nil, fmt.Errorf("mem: data key is %d bytes, want %d", len(dataKey), store.DataKeySize)
	}
	nonce := make([]byte, m.aead.NonceSize())
	rand.Read(nonce)
	return m.aead.Seal(nonce, nonce, dataKey, nil), nil
}

// Unwrap implements store.Backend.
func (m *MemBackend) Unwrap(_ context.Context, wrapped []byte) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(wrapped) != n+store.DataKeySize+m.aead.Overhead() {
		return nil, errors.New("mem: wrapped key has the wrong length")
	}
	k, err := m.aead.Open(nil, wrapped[:n], wrapped[n:], nil)
	if err != nil {
		return nil, integrityError{}
	}
	return k, nil
}

// KeyID implements store.Backend.
func (m *MemBackend) KeyID() string { return m.id }

// Close implements store.Backend.
func (m *MemBackend) Close() error { return nil }

// MemStore returns a store on a fresh [MemBackend] holding secrets, each
// as version 1. It needs no hardware and no privilege: tests of what is
// built on a store (the agent, the client) use it, and leave the backend
// to the conformance suite and to one end-to-end test on SoftHSM.
func MemStore(t testing.TB, secrets map[string]string) *store.Store {
	t.Helper()
	return putAll(t, NewStore(t, NewMemBackend()), secrets)
}

// putAll puts each of secrets into s as a new secret and returns s.
func putAll(t testing.TB, s *store.Store, secrets map[string]string) *store.Store {
	t.Helper()
	for name, value := range secrets {
		if _, err := s.Put(context.Background(), name, []byte(value), store.PutOptions{}); err != nil {
			t.Fatalf("Put(%q) = %v", name, err)
		}
	}
	return s
}
