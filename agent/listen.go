package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ListenConfig says where and how [Listen] creates the agent's socket.
type ListenConfig struct {
	// Path is the socket path.
	Path string
	// Mode is the socket's permission bits (0660 by default).
	Mode os.FileMode
	// GID, when >= 0, becomes the group of the socket and, if Listen
	// creates it, of its directory. -1 leaves the process's group.
	GID int
}

// Listen creates the agent's Unix socket safely: its directory is created
// 0750 if missing, and an existing one must belong to root or this user and
// be writable by no one else, sticky bit or not (else another user could
// swap the socket for their own, or squat its name); the socket is bound with a umask that gives it exactly its
// mode, and its group is set without following symlinks; a file already at
// the path is replaced only if it is a socket on which no agent answers.
// The umask is process-wide: call Listen before starting other goroutines
// that create files.
func Listen(cfg ListenConfig) (*net.UnixListener, error) {
	if cfg.Mode == 0 {
		cfg.Mode = 0o660
	}
	dir := filepath.Dir(cfg.Path)
	if err := checkSocketDir(dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("failed to create the socket directory: %w", err)
		}
		if cfg.GID >= 0 {
			if err := os.Chown(dir, -1, cfg.GID); err != nil {
				return nil, fmt.Errorf("failed to set the group of %s: %w", dir, err)
			}
		}
	}
	if err := removeStale(cfg.Path); err != nil {
		return nil, err
	}
	old := syscall.Umask(int(0o777 &^ cfg.Mode.Perm()))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", cfg.Path, err)
	}
	fail := func(err error) (*net.UnixListener, error) {
		l.Close()
		return nil, err
	}
	if cfg.GID >= 0 {
		if err := os.Lchown(cfg.Path, -1, cfg.GID); err != nil {
			return fail(fmt.Errorf("failed to set the group of %s: %w", cfg.Path, err))
		}
	}
	return l, nil
}

// checkSocketDir refuses an existing socket directory that someone other
// than root or this user owns or may write to.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case ok && st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("socket directory %s belongs to uid %d; it must belong to root or the agent's user", dir, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		// Even with the sticky bit (as /tmp), another user could create
		// the socket's name first, or a name clients dial by mistake.
		return fmt.Errorf("socket directory %s is writable by group or others (mode %04o); "+
			"use a directory of its own such as /run/keyward, or run chmod go-w %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// removeStale removes a socket file left by an agent that is gone. It
// refuses to touch anything that is not a socket, or a socket on which an
// agent still answers.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another agent.socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another agent is already serving on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether an agent serves on %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("failed to remove the stale socket %s: %w", path, err)
	}
	return nil
}
