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

// MetricsFDName is the FileDescriptorName= of keyward-metrics.socket: the
// passed socket of that name is the metrics endpoint's, every other one
// the agent's.
const MetricsFDName = "metrics"

// Sockets are the agent's listening sockets.
type Sockets struct {
	// Agent is the agent's Unix stream socket.
	Agent net.Listener
	// Metrics is the TCP socket of the metrics endpoint that systemd
	// passed (keyward-metrics.socket), or nil.
	Metrics net.Listener
	// Activated reports whether systemd passed the sockets.
	Activated bool
}

// Listeners returns the agent's listening sockets. When systemd passed
// sockets (socket activation, LISTEN_FDS), it must have passed exactly one
// listening Unix stream socket for the agent and at most one listening TCP
// socket named [MetricsFDName]; anything else is an error that says what
// was passed. When none was passed, the agent's socket is what create
// returns: the one the agent makes itself (agent.Listen).
//
// Passed sockets belong to their socket units: closing a listener does
// not remove its file.
func Listeners(create func() (net.Listener, error)) (Sockets, error) {
	files := activationFiles()
	if len(files) == 0 {
		l, err := create()
		return Sockets{Agent: l}, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var agent, metrics []int
	for i, f := range files {
		if f.Name() == MetricsFDName {
			metrics = append(metrics, i)
		} else {
			agent = append(agent, i)
		}
	}
	socks := Sockets{Activated: true}
	if len(agent) != 1 || len(metrics) > 1 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = describe(i, f)
		}
		return socks, fmt.Errorf("systemd passed %d sockets (%s); keyward needs exactly one Unix socket from keyward.socket "+
			"(a single ListenStream= with a Unix socket path) and at most one named %q from keyward-metrics.socket",
			len(files), strings.Join(names, ", "), MetricsFDName)
	}
	l, err := fileListener(agent[0], files[agent[0]], false)
	if err != nil {
		return socks, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	socks.Agent = ul
	if len(metrics) == 1 {
		if socks.Metrics, err = fileListener(metrics[0], files[metrics[0]], true); err != nil {
			ul.Close()
			return socks, err
		}
	}
	return socks, nil
}

// fileListener returns a listener on the i-th passed socket, which must be
// a listening Unix (or, if tcp, TCP) stream socket.
func fileListener(i int, f *os.File, tcp bool) (net.Listener, error) {
	unit, want := "keyward.socket", "ListenStream= with a Unix socket path"
	if tcp {
		unit, want = "keyward-metrics.socket", "ListenStream= with an address and port (127.0.0.1:9464)"
	}
	if err := checkListener(f, tcp); err != nil {
		return nil, fmt.Errorf("systemd passed %s: %w; %s needs %s", describe(i, f), err, unit, want)
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("failed to use the socket systemd passed (%s): %w", describe(i, f), err)
	}
	return l, nil
}

// checkListener checks that f is a listening stream socket, of the Unix
// family or, if tcp, of an IP one.
func checkListener(f *os.File, tcp bool) error {
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
	case !tcp && domain != unix.AF_UNIX:
		return fmt.Errorf("a socket of address family %d, not a Unix socket", domain)
	case tcp && domain != unix.AF_INET && domain != unix.AF_INET6:
		return fmt.Errorf("a socket of address family %d, not a TCP socket", domain)
	case typ != unix.SOCK_STREAM:
		return fmt.Errorf("a socket of type %d, not a stream socket", typ)
	case listening == 0:
		return fmt.Errorf("a stream socket that is not listening")
	}
	return nil
}

// describe names the i-th passed file descriptor for messages: its number
// and the name systemd gave it (FileDescriptorName=, by default the unit).
func describe(i int, f *os.File) string {
	return fmt.Sprintf("fd %d %q", 3+i, f.Name())
}
