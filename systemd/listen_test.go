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

// listenerRole calls Listener as an activated process would, with
// LISTEN_PID set to its own PID, and prints what it got.
func listenerRole() int {
	if os.Getenv("LISTEN_FDS") != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	l, activated, err := Listener(func() (net.Listener, error) {
		path := os.Getenv("KEYWARD_TEST_SOCKET")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		return net.Listen("unix", path)
	})
	left := os.Getenv("LISTEN_FDS") + os.Getenv("LISTEN_PID") + os.Getenv("LISTEN_FDNAMES")
	if err != nil {
		fmt.Printf("activated=%v env=%q err=%v\n", activated, left, err)
		return 0
	}
	fmt.Printf("activated=%v env=%q addr=%s\n", activated, left, l.Addr())
	l.Close()
	return 0
}

// runListener runs listenerRole with files as fds 3, 4, …
func runListener(t *testing.T, socket string, files ...*os.File) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled child otherwise sleeps 1s before exiting.
	cmd.Env = append(os.Environ(), roleEnv+"=listener", "KEYWARD_TEST_SOCKET="+socket, "GORACE=atexit_sleep_ms=0")
	if len(files) > 0 {
		names := make([]string, len(files))
		for i := range files {
			names[i] = "keyward.socket"
		}
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
		if want := fmt.Sprintf("activated=true env=\"\" addr=%s", passed); out != want {
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
		if want := fmt.Sprintf("activated=false env=\"\" addr=%s", own); out != want {
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

	for _, tc := range []struct {
		name  string
		files []*os.File
		want  string
	}{
		{"two sockets", []*os.File{unixListener(t, filepath.Join(dir, "a.sock")), unixListener(t, filepath.Join(dir, "b.sock"))},
			`systemd passed 2 sockets (fd 3 "keyward.socket", fd 4 "keyward.socket"); keyward needs exactly one`},
		{"datagram", []*os.File{dgramFile}, "not a stream socket"},
		{"tcp", []*os.File{tcpFile}, "not a Unix socket"},
		{"not listening", []*os.File{unlistened}, "not listening"},
		{"regular file", []*os.File{regular}, "not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runListener(t, own, tc.files...)
			if !strings.HasPrefix(out, `activated=true env="" err=`) || !strings.Contains(out, tc.want) {
				t.Errorf("got %q, want an error containing %q", out, tc.want)
			}
		})
	}
}
