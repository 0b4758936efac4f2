package systemd

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// activationFiles returns the file descriptors systemd passed and removes
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment.
var activationFiles = func() []*os.File { return activation.Files(true) }

// Listener returns the agent's listening socket. When systemd passed
// sockets (socket activation, LISTEN_FDS), it must have passed exactly one,
// a listening Unix stream socket, which is returned with activated true;
// anything else is an error that says what was passed. When none was
// passed, Listener returns what create returns: the socket the agent makes
// itself (agent.Listen).
//
// The passed socket belongs to the socket unit: closing the listener does
// not remove its file.
func Listener(create func() (net.Listener, error)) (l net.Listener, activated bool, err error) {
	files := activationFiles()
	if len(files) == 0 {
		l, err := create()
		return l, false, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) > 1 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = describe(i, f)
		}
		return nil, true, fmt.Errorf("systemd passed %d sockets (%s); keyward needs exactly one: "+
			"give keyward.socket a single ListenStream= with a Unix socket path", len(files), strings.Join(names, ", "))
	}
	f := files[0]
	if err := checkListener(f); err != nil {
		return nil, true, fmt.Errorf("systemd passed %s: %w; keyward.socket needs ListenStream= with a Unix socket path", describe(0, f), err)
	}
	fl, err := net.FileListener(f)
	if err != nil {
		return nil, true, fmt.Errorf("failed to use the socket systemd passed (%s): %w", describe(0, f), err)
	}
	ul, ok := fl.(*net.UnixListener)
	if !ok {
		fl.Close()
		return nil, true, fmt.Errorf("systemd passed %s, which is not a Unix socket", describe(0, f))
	}
	ul.SetUnlinkOnClose(false)
	return ul, true, nil
}

// checkListener checks that f is a listening Unix stream socket.
func checkListener(f *os.File) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var domain, typ, listening int
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		if domain, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); sockErr != nil {
			return
		}
		if typ, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); sockErr != nil {
			return
		}
		listening, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	})
	switch {
	case err != nil:
		return err
	case sockErr == unix.ENOTSOCK:
		return fmt.Errorf("a file descriptor that is not a socket")
	case sockErr != nil:
		return fmt.Errorf("a socket keyward cannot inspect: %w", sockErr)
	case domain != unix.AF_UNIX:
		return fmt.Errorf("a socket of address family %d, not a Unix socket", domain)
	case typ != unix.SOCK_STREAM:
		return fmt.Errorf("a Unix socket of type %d, not a stream socket", typ)
	case listening == 0:
		return fmt.Errorf("a Unix stream socket that is not listening")
	}
	return nil
}

// describe names the i-th passed file descriptor for messages: its number
// and the name systemd gave it (FileDescriptorName=, by default the unit).
func describe(i int, f *os.File) string {
	return fmt.Sprintf("fd %d %q", 3+i, f.Name())
}
