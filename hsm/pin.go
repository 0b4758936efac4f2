package hsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/internal/trust"
)

// DefaultPINCredential is the systemd credential name ReadPIN looks for
// when PINSource.Credential is empty.
const DefaultPINCredential = "keyward-pin"

// A PINSource says where [ReadPIN] may find the user PIN. The sources are
// tried in this order, and the first one present is used:
//
//  1. the systemd credential $CREDENTIALS_DIRECTORY/Credential, when the
//     variable is set and the file exists (LoadCredential= or
//     LoadCredentialEncrypted= in the unit);
//  2. the file named by pin-source in URI;
//  3. File;
//  4. a prompt on the controlling terminal, when standard input is one.
//
// A source that is present but unusable (unreadable, too open, empty) is
// an error: ReadPIN never falls through to the next one.
type PINSource struct {
	// Credential is the systemd credential name; "" means
	// [DefaultPINCredential].
	Credential string
	// URI is the token URI; its pin-source (if any) names a PIN file.
	URI *URI
	// File is the path of a PIN file from the configuration, or "".
	File string
}

// ReadPIN reads the PIN from the first source of src that is present. PIN
// files must be regular files, not accessible to other users (chmod 0600),
// non-empty, at most [MaxPINLen] bytes and a single line; one trailing
// newline (\n or \r\n) is removed. The caller should clear the PIN after
// use. When no source is present the error wraps [ErrNoPIN]. Errors never
// contain the PIN.
func ReadPIN(src PINSource) ([]byte, error) {
	name := src.Credential
	if name == "" {
		name = DefaultPINCredential
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, fmt.Errorf("hsm: systemd credential name %q must be a plain file name", name)
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		if !filepath.IsAbs(dir) {
			return nil, errors.New("hsm: CREDENTIALS_DIRECTORY is not an absolute path")
		}
		p := filepath.Join(dir, name)
		_, err := os.Lstat(p)
		switch {
		case err == nil:
			return readPINFile(p, "systemd credential "+name)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("hsm: read PIN from systemd credential %s: %w", name, err)
		}
	}
	if src.URI != nil && src.URI.PINFile() != "" {
		return readPINFile(src.URI.PINFile(), "pin-source of the PKCS #11 URI")
	}
	if src.File != "" {
		return readPINFile(src.File, "PIN file")
	}
	label := "the PKCS #11 token"
	if src.URI != nil && src.URI.Token() != "" {
		label = fmt.Sprintf("token %q", src.URI.Token())
	}
	pin, ok, err := terminalPIN("Enter the PIN of " + label + ": ")
	switch {
	case err != nil:
		return nil, err
	case ok:
		return pin, nil
	}
	return nil, fmt.Errorf("%w: give the PIN in a systemd credential named %s (LoadCredentialEncrypted=), in a file "+
		"named by pin-source=file:/path in the URI or by the configured PIN file (mode 0600), or run on a terminal to be asked",
		ErrNoPIN, name)
}

// readPINFile reads and checks a PIN file; what names it in errors.
func readPINFile(path, what string) ([]byte, error) {
	// Whoever can replace the PIN file can point keyward at their own
	// token: it must be as trusted as the configuration.
	f, err := trust.Open("PIN "+what, path, trust.Private)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	defer f.Close()
	// Room for the longest PIN, a \r\n, and one byte to notice more.
	buf := make([]byte, MaxPINLen+3)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	case err != nil:
		return nil, fmt.Errorf("hsm: read PIN from %s: %w", what, err)
	default:
		return nil, fmt.Errorf("hsm: PIN %s (%s) is longer than %d bytes", what, path, MaxPINLen)
	}
	pin, err := checkPIN(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("hsm: PIN %s (%s) %w", what, path, err)
	}
	return pin, nil
}

// checkPIN strips one trailing newline from b, checks what remains and
// returns a copy of it.
func checkPIN(b []byte) ([]byte, error) {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	switch {
	case len(b) == 0:
		return nil, errors.New("is empty")
	case len(b) > MaxPINLen:
		return nil, fmt.Errorf("is longer than %d bytes", MaxPINLen)
	case bytes.ContainsAny(b, "\r\n\x00"):
		return nil, errors.New("holds more than one line")
	}
	pin := make([]byte, len(b))
	copy(pin, b)
	return pin, nil
}

// terminalPIN asks for the PIN on the controlling terminal with echo off.
// ok is false when standard input is not a terminal. Tests replace it.
var terminalPIN = readTerminalPIN
