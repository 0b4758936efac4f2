package tpm

// Test hooks, exported to package tpm_test.
var PolicyDigest = policyDigest

// PINCleared reports whether the Device holds no PIN (after Close).
func (d *Device) PINCleared() bool { return d.pin == nil }
