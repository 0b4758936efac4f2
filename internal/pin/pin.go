// Package pin reads the PIN that unlocks a backend — a PKCS #11 token's
// user PIN, or a TPM object's auth value — from where an operator may put
// it: a systemd credential, a file, standard input on request, or the
// terminal. Never from the command line or the environment, where other
// processes could read it.
//
// A PIN file is trusted like the configuration (see internal/trust): it
// and every directory above it must belong to root or keyward's user, and
// it must give others no access. A source that is present but unusable is
// an error: Read never falls through to the next one. Errors never
// contain the PIN.
package pin

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

// MaxLen is the longest PIN read, in bytes. A backend may accept less (a
// TPM auth value holds 32 bytes) and says so itself.
const MaxLen = 256

// ErrNone means that no source of the PIN is configured or present.
var ErrNone = errors.New("no PIN source")

// A Source says where [Read] may find a PIN. The sources are tried in this
// order, and the first one present is used:
//
//  1. the systemd credential $CREDENTIALS_DIRECTORY/Credential, when the
//     variable is set and the file exists (LoadCredential= or
//     LoadCredentialEncrypted= in the unit);
//  2. URIFile, the pin-source of a PKCS #11 URI;
//  3. File, the PIN file of the configuration;
//  4. Stdin, when set (an operator asked for it, e.g. --pin-stdin): its
//     first line, so that a PIN can be piped from systemd-creds decrypt;
//  5. a prompt on the controlling terminal, when standard input is one.
type Source struct {
	// Credential is the systemd credential name; it is required.
	Credential string
	// URIFile is a PIN file named by a PKCS #11 URI, or "".
	URIFile string
	// File is the PIN file from the configuration, or "".
	File string
	// Stdin, when not nil, is read for the PIN before the terminal is.
	Stdin io.Reader
	// For names what the PIN unlocks in prompts and errors, such as
	// `token "keyward"` or "the TPM".
	For string
}

// Read reads the PIN from the first source of src that is present; the
// caller clears it after use. When no source is present the error wraps
// [ErrNone] and says where a PIN may be put.
func Read(src Source) ([]byte, error) {
	name := src.Credential
	if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, fmt.Errorf("systemd credential name %q must be a plain file name", name)
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		if !filepath.IsAbs(dir) {
			return nil, errors.New("CREDENTIALS_DIRECTORY is not an absolute path")
		}
		p := filepath.Join(dir, name)
		_, err := os.Lstat(p)
		switch {
		case err == nil:
			return readFile(p, "systemd credential "+name)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("read the PIN from systemd credential %s: %w", name, err)
		}
	}
	if src.URIFile != "" {
		return readFile(src.URIFile, "pin-source of the PKCS #11 URI")
	}
	if src.File != "" {
		return readFile(src.File, "PIN file")
	}
	what := src.For
	if what == "" {
		what = "the backend"
	}
	if src.Stdin != nil {
		pin, err := readLine(src.Stdin)
		if err != nil {
			return nil, fmt.Errorf("the PIN of %s on standard input %w", what, err)
		}
		return pin, nil
	}
	pin, ok, err := terminal("Enter the PIN of " + what + ": ")
	switch {
	case err != nil:
		return nil, err
	case ok:
		return pin, nil
	}
	return nil, fmt.Errorf("%w for %s: give the PIN in a systemd credential named %s (LoadCredentialEncrypted=), in a file "+
		"(mode 0600) named by the configuration, on standard input with --pin-stdin, or run on a terminal to be asked",
		ErrNone, what, name)
}

// readFile reads and checks a PIN file; what names it in errors.
func readFile(path, what string) ([]byte, error) {
	f, err := trust.Open("PIN "+what, path, trust.Private)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pin, err := readLine(f)
	if err != nil {
		return nil, fmt.Errorf("PIN %s (%s) %w", what, path, err)
	}
	return pin, nil
}

// readLine reads a one-line PIN of at most MaxLen bytes from r, bounded.
func readLine(r io.Reader) ([]byte, error) {
	// Room for the longest PIN, a \r\n, and one byte to notice more.
	buf := make([]byte, MaxLen+3)
	defer clear(buf)
	n, err := io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	case err != nil:
		return nil, fmt.Errorf("cannot be read: %w", err)
	default:
		return nil, fmt.Errorf("is longer than %d bytes", MaxLen)
	}
	return check(buf[:n])
}

// check strips one trailing newline from b, checks what remains and
// returns a copy of it.
func check(b []byte) ([]byte, error) {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	switch {
	case len(b) == 0:
		return nil, errors.New("is empty")
	case len(b) > MaxLen:
		return nil, fmt.Errorf("is longer than %d bytes", MaxLen)
	case bytes.ContainsAny(b, "\r\n\x00"):
		return nil, errors.New("holds more than one line")
	}
	return bytes.Clone(b), nil
}

// terminal asks for the PIN on the controlling terminal with echo off. ok
// is false when standard input is not a terminal. Tests replace it.
var terminal = readTerminal
