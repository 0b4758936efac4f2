//go:build !windows

package tpm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DefaultDevicePath is the kernel's TPM resource manager: it flushes what
// a crashed process left loaded and lets keyward share the TPM with other
// programs. Prefer it to /dev/tpm0.
const DefaultDevicePath = "/dev/tpmrm0"

// OpenDevice opens the TPM at path ("" means [DefaultDevicePath]): a TPM
// character device, or the Unix socket of a software TPM (swtpm). A
// missing or inaccessible device gives an error wrapping [ErrNoDevice]
// that says what to check.
func OpenDevice(path string) (transport.TPMCloser, error) {
	if path == "" {
		path = DefaultDevicePath
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, noDevice(path, err)
	}
	if fi.Mode()&fs.ModeSocket != 0 {
		return linuxudstpm.Open(path)
	}
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, noDevice(path, err)
	}
	return t, nil
}

// noDevice explains why the TPM at path cannot be opened.
func noDevice(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist: this machine has no TPM 2.0, it is disabled in the firmware setup, "+
			"or its kernel driver is not loaded (check `ls /dev/tpm*` and `dmesg | grep -i tpm`)", ErrNoDevice, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %s: permission denied: run keyward as a member of the group that owns the device "+
			"(usually tss), and allow the device in the unit (DeviceAllow=%s rw)", ErrNoDevice, path, path)
	case errors.Is(err, linuxtpm.ErrFileIsNotDevice):
		return fmt.Errorf("%w: %s is neither a TPM character device nor a swtpm socket", ErrNoDevice, path)
	default:
		return fmt.Errorf("tpm: open %s: %w", path, err)
	}
}
