package tpm

// Test hooks, exported to package tpm_test.
var PolicyDigest = policyDigest

// PINCleared reports whether the Device holds no PIN (after Close).
func (d *Device) PINCleared() bool { return d.pin == nil }

// KeyBytes returns the store key (nil after Close). Tests only: to check
// that it appears in no blob, KeyID or error.
func (k *StoreKey) KeyBytes() []byte { return k.key.Bytes() }
