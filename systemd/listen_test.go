package systemd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// roleEnv makes the test binary act as a process that systemd started
// with sockets (LISTEN_FDS), for Listener, instead of running tests.
const roleEnv = "KEYWARD_SYSTEMD_TEST_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "listener" {
		os.Exit(listenerRole())
	}
	os.Exit(m.Run())
}

// listenerRole calls Listeners as an activated process would, with
// LISTEN_PID set to its own PID, and prints what it got.
func listenerRole() int {
	if os.Getenv("LISTEN_FDS") != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	socks, err := Listeners(func() (net.Listener, error) {
		path := os.Getenv("KEYWARD_TEST_SOCKET")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		return net.Listen("unix", path)
	})
	left := os.Getenv("LISTEN_FDS") + os.Getenv("LISTEN_PID") + os.Getenv("LISTEN_FDNAMES")
	if err != nil {
		fmt.Printf("activated=%v env=%q err=%v\n", socks.Activated, left, err)
		return 0
	}
	metrics := "none"
	if socks.Metrics != nil {
		metrics = socks.Metrics.Addr().String()
		socks.Metrics.Close()
	}
	fmt.Printf("activated=%v env=%q addr=%s metrics=%s\n", socks.Activated, left, socks.Agent.Addr(), metrics)
	socks.Agent.Close()
	return 0
}

// runListener runs listenerRole with files as fds 3, 4, …, all named
// keyward.socket.
func runListener(t *testing.T, socket string, files ...*os.File) string {
	t.Helper()
	names := make([]string, len(files))
	for i := range files {
		names[i] = "keyward.socket"
	}
	return runListenerNamed(t, socket, files, names)
}

// runListenerNamed runs listenerRole with files as fds 3, 4, … and their
// names.
func runListenerNamed(t *testing.T, socket string, files []*os.File, names []string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled child otherwise sleeps 1s before exiting.
	cmd.Env = append(os.Environ(), roleEnv+"=listener", "KEYWARD_TEST_SOCKET="+socket, "GORACE=atexit_sleep_ms=0")
	if len(files) > 0 {
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	cmd.ExtraFiles = files
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("listener child: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func unixListener(t *testing.T, path string) *os.File {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	t.Cleanup(func() { f.Close() })
	return f
}

func TestListener(t *testing.T) {
	dir := t.TempDir()
	passed := filepath.Join(dir, "passed.sock")
	own := filepath.Join(dir, "own", "agent.sock")

	t.Run("passed stream socket", func(t *testing.T) {
		out := runListener(t, own, unixListener(t, passed))
		if want := fmt.Sprintf("activated=true env=\"\" addr=%s metrics=none", passed); out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
		// The socket belongs to the socket unit: closing the listener
		// leaves it.
		if fi, err := os.Lstat(passed); err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("after Close the passed socket is gone: %v", err)
		}
		if _, err := os.Lstat(own); err == nil {
			t.Errorf("Listener created %s although systemd passed a socket", own)
		}
	})

	t.Run("nothing passed", func(t *testing.T) {
		out := runListener(t, own)
		if want := fmt.Sprintf("activated=false env=\"\" addr=%s metrics=none", own); out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
	})

	dgram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "dgram.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer dgram.Close()
	dgramFile, err := dgram.File()
	if err != nil {
		t.Fatal(err)
	}
	defer dgramFile.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcpFile, err := tcp.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer tcpFile.Close()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unlistened := os.NewFile(uintptr(fd), "unlistened")
	defer unlistened.Close()
	regular, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()

	t.Run("agent and metrics sockets", func(t *testing.T) {
		agent := filepath.Join(dir, "with-metrics.sock")
		out := runListenerNamed(t, own, []*os.File{tcpFile, unixListener(t, agent)}, []string{MetricsFDName, "keyward.socket"})
		if want := fmt.Sprintf("activated=true env=\"\" addr=%s metrics=%s", agent, tcp.Addr()); out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
	})

	for _, tc := range []struct {
		name  string
		files []*os.File
		names []string
		want  string
	}{
		{"two sockets", []*os.File{unixListener(t, filepath.Join(dir, "a.sock")), unixListener(t, filepath.Join(dir, "b.sock"))}, nil,
			`systemd passed 2 sockets (fd 3 "keyward.socket", fd 4 "keyward.socket"); keyward needs exactly one Unix socket`},
		{"datagram", []*os.File{dgramFile}, nil, "not a stream socket"},
		{"tcp", []*os.File{tcpFile}, nil, "not a Unix socket"},
		{"not listening", []*os.File{unlistened}, nil, "not listening"},
		{"regular file", []*os.File{regular}, nil, "not a socket"},
		{"metrics only", []*os.File{tcpFile}, []string{MetricsFDName}, "keyward needs exactly one Unix socket"},
		{"metrics on a Unix socket", []*os.File{unixListener(t, filepath.Join(dir, "m.sock")), unixListener(t, filepath.Join(dir, "c.sock"))},
			[]string{MetricsFDName, "keyward.socket"}, "not a TCP socket; keyward-metrics.socket needs"},
		{"two metrics sockets", []*os.File{tcpFile, tcpFile, unixListener(t, filepath.Join(dir, "d.sock"))},
			[]string{MetricsFDName, MetricsFDName, "keyward.socket"}, "at most one named"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names := tc.names
			if names == nil {
				for range tc.files {
					names = append(names, "keyward.socket")
				}
			}
			out := runListenerNamed(t, own, tc.files, names)
			if !strings.HasPrefix(out, `activated=true env="" err=`) || !strings.Contains(out, tc.want) {
				t.Errorf("got %q, want an error containing %q", out, tc.want)
			}
		})
	}
}
