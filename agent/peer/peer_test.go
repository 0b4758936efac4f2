package peer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyward/keyward/internal/testenv"
)

// The test binary doubles as the peer: with envRole set, TestMain runs a
// client role instead of the tests.
const (
	envRole = "KEYWARD_PEER_TEST_ROLE"
	envSock = "KEYWARD_PEER_TEST_SOCK"
	envDir  = "KEYWARD_PEER_TEST_DIR"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		time.AfterFunc(60*time.Second, func() { os.Exit(3) })
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "peer test child %q: %v\n", role, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runRole(role string) error {
	switch role {
	case "client":
		return roleClient()
	case "hold":
		return roleHold(os.NewFile(3, "conn"))
	case "wait":
		_, err := io.Copy(io.Discard, os.Stdin)
		return err
	case "spoof":
		return roleSpoof()
	}
	return fmt.Errorf("unknown role")
}

// roleClient connects to the socket, then obeys one-byte commands:
// 'x' exec /bin/sleep keeping the connection, 'f' hand the connection to a
// new grandchild and exit, 'u' become uid 4242 gid 4243 and answer 'k',
// 'q' or EOF exit.
func roleClient() error {
	c, err := net.Dial("unix", os.Getenv(envSock))
	if err != nil {
		return err
	}
	conn := c.(*net.UnixConn)
	cmd := make([]byte, 1)
	for {
		if _, err := conn.Read(cmd); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		switch cmd[0] {
		case 'q':
			return nil
		case 'u':
			if err := syscall.Setgid(4243); err != nil {
				return err
			}
			if err := syscall.Setuid(4242); err != nil {
				return err
			}
			if _, err := conn.Write([]byte{'k'}); err != nil {
				return err
			}
		case 'x':
			raw, err := conn.SyscallConn()
			if err != nil {
				return err
			}
			var ferr error
			raw.Control(func(fd uintptr) { _, ferr = unix.FcntlInt(fd, unix.F_SETFD, 0) })
			if ferr != nil {
				return ferr
			}
			return syscall.Exec("/bin/sleep", []string{"sleep", "60"}, os.Environ())
		case 'f':
			f, err := conn.File()
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			g := exec.Command(self)
			g.Env = append(os.Environ(), envRole+"=hold")
			g.ExtraFiles = []*os.File{f}
			g.Stderr = os.Stderr
			if err := g.Start(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(conn, "%d\n", g.Process.Pid)
			return err
		}
	}
}

// roleHold answers "pong\n" to each 'p' on conn until EOF.
func roleHold(conn *os.File) error {
	b := make([]byte, 1)
	for {
		if _, err := conn.Read(b); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if b[0] == 'p' {
			if _, err := conn.WriteString("pong\n"); err != nil {
				return err
			}
		}
	}
}

// roleSpoof runs in a private mount namespace: it mounts a tmpfs over the
// directory envDir holding its own binary, puts a copy of itself there
// under the same name, and execs that copy as a client.
func roleSpoof() error {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", os.Getenv(envDir), "tmpfs", 0, "mode=0755"); err != nil {
		return err
	}
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		return err
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envRole+"=") })
	return syscall.Exec(exe, []string{exe}, append(env, envRole+"=client"))
}

// harness is a listening socket other users can reach, in a 0755
// directory that also holds copies of the test binary.
type harness struct {
	dir, sock string
	ln        *net.UnixListener
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	dir := testenv.PublicDir(t) // other uids must reach the socket
	h := &harness{dir: dir, sock: filepath.Join(dir, "agent.sock")}
	var err error
	h.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: h.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ln.Close() })
	if err := os.Chmod(h.sock, 0o777); err != nil {
		t.Fatal(err)
	}
	return h
}

// copyBinary copies the test binary to name in the harness directory,
// appending extra, and returns its path.
func (h *harness) copyBinary(t *testing.T, name string, extra []byte) string {
	t.Helper()
	b, err := os.ReadFile(testBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(h.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, extra...), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// start runs bin in role, connected to the harness socket.
func (h *harness) start(t *testing.T, bin, role string, attr *syscall.SysProcAttr, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(childEnv(), envRole+"="+role, envSock+"="+h.sock)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// accept returns the next connection, with a deadline for the test.
func (h *harness) accept(t testing.TB) *net.UnixConn {
	t.Helper()
	h.ln.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := h.ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// dialSelf connects the test process to the harness socket.
func (h *harness) dialSelf(t testing.TB) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return h.accept(t)
}

// modes are the two ways a Peer pins its process.
var modes = []struct {
	name    string
	noPIDFD bool
}{
	{"pidfd", false},
	{"starttime", true},
}

// attest calls Attest in the given mode and checks the mode was used.
func attest(t testing.TB, c *net.UnixConn, noPIDFD bool) *Peer {
	t.Helper()
	testOnlyNoPeerPIDFD = noPIDFD
	defer func() { testOnlyNoPeerPIDFD = false }()
	p, err := Attest(c, NewHasher(0))
	if err != nil {
		t.Fatalf("Attest() = %v, want nil error", err)
	}
	t.Cleanup(func() { p.Close() })
	if got := p.pidfd < 0; got != noPIDFD {
		t.Fatalf("Attest() without pidfd = %v, want %v", got, noPIDFD)
	}
	return p
}

// childEnv is the environment for child processes. Under -race, it stops
// the race runtime from sleeping a second at exit.
func childEnv() []string {
	return append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

func testBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs processes as other users")
	}
}

func TestAttestSelf(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			p := attest(t, h.dialSelf(t), m.noPIDFD)

			if got, want := p.PID(), int32(os.Getpid()); got != want {
				t.Errorf("PID() = %d, want %d", got, want)
			}
			if got, want := p.UID(), uint32(os.Getuid()); got != want {
				t.Errorf("UID() = %d, want %d", got, want)
			}
			if got, want := p.GID(), uint32(os.Getgid()); got != want {
				t.Errorf("GID() = %d, want %d", got, want)
			}
			groups, err := os.Getgroups()
			if err != nil {
				t.Fatal(err)
			}
			want := []uint32{}
			for _, g := range groups {
				want = append(want, uint32(g))
			}
			if got := p.Groups(); !slices.Equal(got, want) {
				t.Errorf("Groups() = %v, want %v", got, want)
			}
			if got, want := p.Exe(), testBinary(t); got != want {
				t.Errorf("Exe() = %q, want %q", got, want)
			}
			cgroup, err := os.ReadFile("/proc/self/cgroup")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := p.Unit(), parseUnit(cgroup); got != want {
				t.Errorf("Unit() = %q, want %q (parseUnit of /proc/self/cgroup)", got, want)
			}
			sum, err := p.ExeSHA256()
			if want := fileSHA256(t, testBinary(t)); err != nil || sum != want {
				t.Errorf("ExeSHA256() = %x, %v, want %x", sum, err, want)
			}
			if err := p.Verify(); err != nil {
				t.Errorf("Verify() = %v, want nil", err)
			}
			if p.pidfd >= 0 {
				flags, err := unix.FcntlInt(uintptr(p.pidfd), unix.F_GETFD, 0)
				if err != nil || flags&unix.FD_CLOEXEC == 0 {
					t.Errorf("pidfd F_GETFD = %#x, %v, want FD_CLOEXEC", flags, err)
				}
			}
		})
	}
}

func TestGroupsIsACopy(t *testing.T) {
	p := &Peer{groups: []uint32{1, 2}}
	p.Groups()[0] = 9
	if got := p.Groups(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("Groups() after changing a returned slice = %v, want [1 2]", got)
	}
}

func TestLogValue(t *testing.T) {
	p := &Peer{pid: 7, uid: 1000, gid: 1001, exe: "/opt/mm/bin/mm", unit: "mm.service", groups: []uint32{5}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("request", "peer", p)
	var got struct {
		Peer map[string]any `json:"peer"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	want := map[string]any{"pid": 7.0, "uid": 1000.0, "gid": 1001.0, "exe": "/opt/mm/bin/mm", "unit": "mm.service"}
	if fmt.Sprint(got.Peer) != fmt.Sprint(want) {
		t.Errorf("logged peer = %v, want %v", got.Peer, want)
	}
}

func TestAttestOtherUser(t *testing.T) {
	needRoot(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			// The test binary's own directory is 0700: run a copy.
			bin := h.copyBinary(t, "client", nil)
			cmd := h.start(t, bin, "client", &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: 4242, Gid: 4243, Groups: []uint32{4244}},
			})
			p := attest(t, h.accept(t), m.noPIDFD)

			if got, want := p.PID(), int32(cmd.Process.Pid); got != want {
				t.Errorf("PID() = %d, want %d", got, want)
			}
			if got := p.UID(); got != 4242 {
				t.Errorf("UID() = %d, want 4242", got)
			}
			if got := p.GID(); got != 4243 {
				t.Errorf("GID() = %d, want 4243", got)
			}
			if got := p.Groups(); !slices.Equal(got, []uint32{4244}) {
				t.Errorf("Groups() = %v, want [4244]", got)
			}
			if got := p.Exe(); got != bin {
				t.Errorf("Exe() = %q, want %q", got, bin)
			}
			if sum, err := p.ExeSHA256(); err != nil || sum != fileSHA256(t, bin) {
				t.Errorf("ExeSHA256() = %x, %v, want %x", sum, err, fileSHA256(t, bin))
			}
			if err := p.Verify(); err != nil {
				t.Errorf("Verify() = %v, want nil", err)
			}
		})
	}
}

// SO_PEERCRED keeps the credentials of connect time. Without a pidfd,
// Attest also wants them in /proc, where a recycled PID would show
// another process's.
func TestAttestUIDChangedAfterConnect(t *testing.T) {
	needRoot(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(t, testBinary(t), "client", nil)
			c := h.accept(t)
			if _, err := c.Write([]byte{'u'}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if !m.noPIDFD {
				if p := attest(t, c, false); p.UID() != 0 || p.GID() != 0 {
					t.Errorf("UID(), GID() = %d, %d, want 0, 0 (as at connect)", p.UID(), p.GID())
				}
				return
			}
			testOnlyNoPeerPIDFD = true
			defer func() { testOnlyNoPeerPIDFD = false }()
			if p, err := Attest(c, NewHasher(0)); !errors.Is(err, ErrGone) {
				t.Errorf("Attest() = %v, %v, want %v", p, err, ErrGone)
			}
		})
	}
}

func TestAttestCopiedBinary(t *testing.T) {
	needRoot(t)
	h := newHarness(t)
	orig := fileSHA256(t, testBinary(t))
	tests := []struct {
		name     string
		extra    []byte // appended to the copy; an ELF ignores trailing bytes
		remove   bool   // delete the file before Attest
		sameHash bool   // as the original test binary
		suffix   string // on the copy's path in Exe
	}{
		{name: "same content", sameHash: true},
		{name: "other content", extra: []byte("x")},
		{name: "deleted", remove: true, sameHash: true, suffix: " (deleted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := h.copyBinary(t, strings.ReplaceAll(tt.name, " ", "-"), tt.extra)
			want := fileSHA256(t, bin)
			h.start(t, bin, "client", nil)
			c := h.accept(t)
			if tt.remove {
				if err := os.Remove(bin); err != nil {
					t.Fatal(err)
				}
			}
			p := attest(t, c, false)
			if got := p.Exe(); got != bin+tt.suffix {
				t.Errorf("Exe() = %q, want %q", got, bin+tt.suffix)
			}
			sum, err := p.ExeSHA256()
			if err != nil || sum != want {
				t.Fatalf("ExeSHA256() = %x, %v, want %x", sum, err, want)
			}
			if got := sum == orig; got != tt.sameHash {
				t.Errorf("ExeSHA256() equal to the original's = %v, want %v", got, tt.sameHash)
			}
		})
	}
}

// A process in its own mount namespace can run any file from a path that
// names a trusted binary in the agent's namespace.
func TestExeInOtherMountNamespace(t *testing.T) {
	needRoot(t)
	h := newHarness(t)
	bin := h.copyBinary(t, "bin/client", nil)
	h.start(t, bin, "spoof", &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS},
		envDir+"="+filepath.Dir(bin))
	p := attest(t, h.accept(t), false)
	if got, want := p.Exe(), bin+" (unreachable)"; got != want {
		t.Errorf("Exe() = %q, want %q", got, want)
	}
	// The hash names the content, wherever it is.
	if sum, err := p.ExeSHA256(); err != nil || sum != fileSHA256(t, bin) {
		t.Errorf("ExeSHA256() = %x, %v, want %x", sum, err, fileSHA256(t, bin))
	}
	if err := p.Verify(); err != nil {
		t.Errorf("Verify() = %v, want nil", err)
	}
}

func TestVerifyAfterExec(t *testing.T) {
	sleep, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Skip(err)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			cmd := h.start(t, testBinary(t), "client", nil)
			c := h.accept(t)
			p := attest(t, c, m.noPIDFD)
			if err := p.Verify(); err != nil {
				t.Fatalf("Verify() before exec = %v, want nil", err)
			}
			if _, err := c.Write([]byte{'x'}); err != nil {
				t.Fatal(err)
			}
			exe := fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
				if got, _ := os.Readlink(exe); got == sleep {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("child did not exec %s", sleep)
				}
			}
			if err := p.Verify(); !errors.Is(err, ErrExeChanged) {
				t.Errorf("Verify() after exec = %v, want %v", err, ErrExeChanged)
			}
		})
	}
}

func TestVerifyForkedChildHoldsSocket(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			cmd := h.start(t, testBinary(t), "client", nil)
			c := h.accept(t)
			p := attest(t, c, m.noPIDFD)
			if _, err := c.Write([]byte{'f'}); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil {
				t.Fatalf("reading the grandchild's pid: %v", err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
			// The grandchild still holds the connection and answers on it.
			if _, err := c.Write([]byte{'p'}); err != nil {
				t.Fatal(err)
			}
			if got, err := r.ReadString('\n'); got != "pong\n" {
				t.Fatalf("grandchild answered %q, %v, want \"pong\\n\"", got, err)
			}
			if err := p.Verify(); !errors.Is(err, ErrGone) {
				t.Errorf("Verify() = %v, want %v", err, ErrGone)
			}
			// Closing c ends the grandchild.
		})
	}
}

func TestAttestAfterPeerExited(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			cmd := h.start(t, testBinary(t), "client", nil)
			c := h.accept(t)
			if _, err := c.Write([]byte{'q'}); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			testOnlyNoPeerPIDFD = m.noPIDFD
			defer func() { testOnlyNoPeerPIDFD = false }()
			if p, err := Attest(c, NewHasher(0)); !errors.Is(err, ErrGone) {
				t.Errorf("Attest() = %v, %v, want %v", p, err, ErrGone)
			}
		})
	}
}

func TestVerifyRecycledPID(t *testing.T) {
	needRoot(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			// The recycler runs the same file, so the exe check alone
			// cannot tell the two processes apart.
			cmd := h.start(t, testBinary(t), "client", nil)
			pid := cmd.Process.Pid
			c := h.accept(t)
			p := attest(t, c, m.noPIDFD)
			if _, err := c.Write([]byte{'q'}); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			// Start times count clock ticks: let one pass.
			time.Sleep(30 * time.Millisecond)
			recycle(t, pid)

			var st unix.Stat_t
			if err := unix.Stat(p.exePath, &st); err != nil || st.Dev != p.dev || st.Ino != p.ino {
				t.Fatalf("the new process with pid %d does not run the attested file (%v)", pid, err)
			}
			if err := p.Verify(); !errors.Is(err, ErrGone) {
				t.Errorf("Verify() = %v, want %v", err, ErrGone)
			}
			if _, err := p.ExeSHA256(); !errors.Is(err, ErrGone) {
				t.Errorf("ExeSHA256() = %v, want %v", err, ErrGone)
			}
		})
	}
}

// recycle starts a process of the test binary that gets pid, by setting
// the PID namespace's last PID, and retries because other processes race
// for it.
func recycle(t *testing.T, pid int) {
	t.Helper()
	for range 200 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			if errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) {
				// Containers mount /proc/sys read-only, and a PID cannot
				// be chosen another way without clone3's set_tid, which
				// Go's os/exec does not offer. Only this case is skipped.
				t.Skipf("cannot choose a PID here (%v): /proc/sys is read-only, as in a container; "+
					"the recycled-PID case runs where /proc/sys/kernel/ns_last_pid is writable", err)
			}
			t.Fatalf("cannot recycle a PID: %v", err)
		}
		cmd := exec.Command(testBinary(t))
		cmd.Env = append(childEnv(), envRole+"=wait")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() {
				stdin.Close()
				cmd.Wait()
			})
			return
		}
		stdin.Close()
		cmd.Wait()
	}
	t.Fatalf("no new process got pid %d in 200 tries", pid)
}

func TestSignalResult(t *testing.T) {
	tests := []struct {
		err     error
		alive   bool
		errGone bool
	}{
		{nil, true, false},
		{unix.EPERM, true, false}, // alive, owned by another user
		{unix.ESRCH, false, true},
		{unix.EINVAL, false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			got := signalResult(tt.err)
			if (got == nil) != tt.alive || errors.Is(got, ErrGone) != tt.errGone {
				t.Errorf("signalResult(%v) = %v, want alive %v, ErrGone %v", tt.err, got, tt.alive, tt.errGone)
			}
		})
	}
}

func TestClose(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			p := attest(t, h.dialSelf(t), m.noPIDFD)
			for i := range 2 {
				if err := p.Close(); err != nil {
					t.Fatalf("Close() #%d = %v, want nil", i+1, err)
				}
			}
			if err := p.Verify(); err == nil {
				t.Errorf("Verify() after Close = nil, want an error")
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			h := newHarness(b)
			p := attest(b, h.dialSelf(b), m.noPIDFD)
			for b.Loop() {
				if err := p.Verify(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAttest(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			c := newHarness(b).dialSelf(b)
			hasher := NewHasher(0)
			testOnlyNoPeerPIDFD = m.noPIDFD
			defer func() { testOnlyNoPeerPIDFD = false }()
			for b.Loop() {
				p, err := Attest(c, hasher)
				if err != nil {
					b.Fatal(err)
				}
				p.Close()
			}
		})
	}
}
