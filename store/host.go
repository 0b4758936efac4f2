package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// HostIDSize is the size of a [HostID].
const HostIDSize = 16

// A HostID binds envelopes to one machine. It is derived from the machine
// id (machine-id(5)) with a keyed hash, as systemd recommends for
// application-specific ids, so the machine id itself is not written to disk.
type HostID [HostIDSize]byte

// String returns the id in hex.
func (h HostID) String() string { return hex.EncodeToString(h[:]) }

// DefaultMachineIDFile is where systemd keeps the machine id.
const DefaultMachineIDFile = "/etc/machine-id"

// ReadHostID derives the host id from a machine-id file (32 lowercase hex
// digits and a newline).
func ReadHostID(path string) (HostID, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return HostID{}, fmt.Errorf("failed to read the machine id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return HostID{}, fmt.Errorf("machine id in %s is not 32 hexadecimal digits; run systemd-machine-id-setup", path)
	}
	return DeriveHostID(id), nil
}

// DeriveHostID derives a host id from a machine id string.
func DeriveHostID(machineID string) HostID {
	m := hmac.New(sha256.New, []byte(machineID))
	m.Write([]byte("keyward host binding v1"))
	return HostID(m.Sum(nil)[:HostIDSize])
}
