// Package trust decides whether keyward may act on a file that others could
// have written: its configuration, its policy, a PIN file, a PKCS #11
// module it loads into its own address space.
//
// Whoever can change such a file, or any directory on its path, can make
// the agent load their code, grant themselves every secret or point it at
// their own token. So a trusted file and every directory above it, on the
// path as given and after resolving symbolic links, must belong to root
// or to the user keyward runs as, and be writable by no one else. A
// directory that group or others may write is accepted only above the
// file's own directory and only with the sticky bit (as /tmp): there no
// one can rename or remove an entry they do not own, and the entry below
// it is checked in turn. Errors name the file and the chmod or chown that
// fixes it.
package trust

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Mode says who besides the owner may read a trusted file.
type Mode uint8

const (
	// Public files (configuration, policy, modules) may be read by
	// anyone; only the owner may write them.
	Public Mode = iota
	// Private files (PINs, keys) give others no access at all; their
	// group may read them (root:keyward 0640), not write them.
	Private
)

// Check refuses path unless the file and every directory above it can be
// changed only by root or the effective user, as the package doc says.
// what names the file in errors ("configuration", "PKCS #11 module").
// The file must exist and be a regular file.
func Check(what, path string, mode Mode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if err := CheckInfo(what, path, fi, mode); err != nil {
		return err
	}
	return CheckDirs(what, path)
}

// CheckInfo checks the owner and mode of a file already opened (its
// fstat), so that what is checked is what is read.
func CheckInfo(what, path string, fi fs.FileInfo, mode Mode) error {
	if err := owner(what, path, fi); err != nil {
		return err
	}
	perm := fi.Mode().Perm()
	switch {
	case mode == Private && perm&0o027 != 0:
		return fmt.Errorf("%s %s is accessible to other users (mode %04o); run: chmod 0600 %s", what, path, perm, path)
	case perm&0o022 != 0:
		return fmt.Errorf("%s %s is writable by group or others (mode %04o); run: chmod go-w %s", what, path, perm, path)
	}
	return nil
}

// CheckDirs checks every directory above path, on the path as given and
// after resolving symbolic links.
func CheckDirs(what, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	seen := map[string]bool{}
	chains := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		chains = append(chains, real)
	}
	for _, p := range chains {
		parent := true // the file's own directory: no sticky exception
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			if !seen[dir] {
				seen[dir] = true
				if err := checkDir(what, path, dir, parent); err != nil {
					return err
				}
			}
			parent = false
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return nil
}

func checkDir(what, path, dir string, parent bool) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if err := owner("directory", dir, fi); err != nil {
		return fmt.Errorf("%w (it holds %s %s)", err, what, path)
	}
	perm := fi.Mode().Perm()
	if perm&0o022 == 0 || !parent && fi.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	return fmt.Errorf("directory %s is writable by group or others (mode %04o), so they could replace %s %s; run: chmod go-w %s",
		dir, perm, what, path, dir)
}

// ErrOwner is wrapped by the errors for a file or directory that belongs
// to a user other than root and the effective user.
var ErrOwner = errors.New("owned by another user")

func owner(what, path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("cannot tell who owns %s %s", what, path)
	}
	euid := os.Geteuid()
	if st.Uid == 0 || int(st.Uid) == euid {
		return nil
	}
	owners := "root"
	if euid != 0 {
		owners = fmt.Sprintf("root or uid %d, which keyward runs as", euid)
	}
	return fmt.Errorf("%s %s is %w (uid %d), not %s; run: chown root %s", what, path, ErrOwner, st.Uid, owners, path)
}

// Open opens path for reading after the checks of [Check], made on the
// file actually opened. It does not block on a FIFO planted at path. The
// caller closes the file.
func Open(what, path string, mode Mode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open the %s: %w", what, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if err == nil {
		err = CheckInfo(what, path, fi, mode)
	}
	if err == nil {
		err = CheckDirs(what, path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads a trusted file (see [Open]) of at most max bytes.
func ReadFile(what, path string, mode Mode, max int) ([]byte, error) {
	f, err := Open(what, path, mode)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read the %s: %w", what, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, max)
	}
	return b, nil
}
