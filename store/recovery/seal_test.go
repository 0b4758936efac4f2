package recovery

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	kit, shares := newTestKit(t, 5, 3)
	priv, err := Combine(kit, shares[2:])
	if err != nil {
		t.Fatalf("Combine() = %v", err)
	}
	t.Cleanup(priv.Destroy)
	otherKit, otherShares := newTestKit(t, 2, 2)
	otherPriv, err := Combine(otherKit, otherShares)
	if err != nil {
		t.Fatalf("Combine(other) = %v", err)
	}
	t.Cleanup(otherPriv.Destroy)

	dataKey := bytes.Repeat([]byte{0xa5}, DataKeySize)
	info := []byte("binance/mm-prod\x003\x00host-0123")
	sealed, err := SealKey(kit, dataKey, info)
	if err != nil {
		t.Fatalf("SealKey() = %v", err)
	}
	if len(sealed) != SealedKeySize || sealed[0] != 1 {
		t.Fatalf("SealKey() = %d bytes, version %d; want %d bytes, version 1", len(sealed), sealed[0], SealedKeySize)
	}
	again, _ := SealKey(kit, dataKey, info)
	if bytes.Equal(again, sealed) {
		t.Errorf("SealKey() twice gave the same output, want fresh randomness")
	}
	got, err := OpenKey(priv, sealed, info)
	if err != nil || !bytes.Equal(got, dataKey) {
		t.Fatalf("OpenKey() = %x, %v; want %x", got, err, dataKey)
	}

	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		priv   *PrivateKey
		sealed []byte
		info   []byte
	}{
		{"wrong info", priv, sealed, []byte("binance/mm-prod\x004\x00host-0123")},
		{"no info", priv, sealed, nil},
		{"other kit", otherPriv, sealed, info},
		{"version byte", priv, flip(0), info},
		{"ml-kem ciphertext", priv, flip(1), info},
		{"x25519 share", priv, flip(1 + encSize - 1), info},
		{"aes ciphertext", priv, flip(1 + encSize), info},
		{"tag", priv, flip(SealedKeySize - 1), info},
		{"truncated", priv, sealed[:SealedKeySize-1], info},
		{"extended", priv, append(bytes.Clone(sealed), 0), info},
		{"empty", priv, nil, info},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OpenKey(tt.priv, tt.sealed, tt.info)
			if got != nil || !errors.Is(err, ErrIntegrity) {
				t.Errorf("OpenKey() = %x, %v; want ErrIntegrity", got, err)
			}
		})
	}
}

func TestSealKeyRejects(t *testing.T) {
	kit, _ := newTestKit(t, 3, 2)
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := SealKey(kit, make([]byte, n), nil); err == nil {
			t.Errorf("SealKey(%d-byte key) = nil error, want an error", n)
		}
	}
	if _, err := SealKey(nil, make([]byte, DataKeySize), nil); err == nil {
		t.Errorf("SealKey(nil kit) = nil error, want an error")
	}
	bad := *kit
	bad.PublicKey = kit.PublicKey[:100]
	if _, err := SealKey(&bad, make([]byte, DataKeySize), nil); err == nil {
		t.Errorf("SealKey(bad public key) = nil error, want an error")
	}
}
