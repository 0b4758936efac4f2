package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultDevicePath is the kernel's TPM resource manager on Linux.
const DefaultDevicePath = "/dev/tpmrm0"

// OpenDevice fails on Windows: keyward opens TPMs through Linux device
// files and swtpm sockets only.
func OpenDevice(path string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("%w: opening %q is not supported on Windows", ErrNoDevice, path)
}
