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
// 0750 if missing; the socket is bound with a umask that leaves it
// accessible to no one until its mode and group are set; a file already at
// the path is replaced only if it is a socket on which no agent answers.
func Listen(cfg ListenConfig) (*net.UnixListener, error) {
	if cfg.Mode == 0 {
		cfg.Mode = 0o660
	}
	dir := filepath.Dir(cfg.Path)
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
	old := syscall.Umask(0o777)
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
		if err := os.Chown(cfg.Path, -1, cfg.GID); err != nil {
			return fail(fmt.Errorf("failed to set the group of %s: %w", cfg.Path, err))
		}
	}
	if err := os.Chmod(cfg.Path, cfg.Mode); err != nil {
		return fail(fmt.Errorf("failed to set the mode of %s: %w", cfg.Path, err))
	}
	return l, nil
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
