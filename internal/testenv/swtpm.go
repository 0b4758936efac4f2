package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// maxSocketPath leaves room under the 108-byte limit of a Unix socket path.
const maxSocketPath = 100

// A SwTPMProcess is a private software TPM 2.0 (swtpm) process for one
// test, with its state in the test's temporary directory. It has no
// resource manager: whoever uses it must flush every session and transient
// object. Its methods may be called from one goroutine at a time.
type SwTPMProcess struct {
	// Socket is the TPM command socket: open it with
	// linuxudstpm.Open or tpm.OpenDevice.
	Socket string
	// CtrlSocket is swtpm's control socket (swtpm_ioctl --unix).
	CtrlSocket string
	// StateDir holds the TPM's persistent state (seeds, NV, persistent
	// objects); it survives Reboot.
	StateDir string
	// PID is the swtpm process id.
	PID int
}

// SwTPM starts
//
//	swtpm socket --tpmstate dir=DIR --tpm2 --server type=unixio,path=DIR/tpm.sock \
//		--ctrl type=unixio,path=DIR/ctrl.sock --flags not-need-init,startup-clear
//
// in t.TempDir(), waits until its sockets accept connections, and stops it
// (SIGTERM, then SIGKILL after 5 s) and waits for it when the test ends.
// The TPM is manufactured fresh, started (TPM2_Startup(CLEAR) done), with
// empty owner and lockout passwords. When a socket path would be too long
// for a Unix socket, the sockets go in a shorter temporary directory. It
// skips the test when swtpm is missing, or fails it in CI (see [Require]).
func SwTPM(t testing.TB) *SwTPMProcess {
	t.Helper()
	bin := Require(t, "swtpm")
	if bin == "" {
		return nil
	}
	dir := t.TempDir()
	sockDir := dir
	if len(filepath.Join(dir, "ctrl.sock")) > maxSocketPath {
		d, err := os.MkdirTemp("", "swtpm")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		sockDir = d
	}
	s := &SwTPMProcess{
		Socket:     filepath.Join(sockDir, "tpm.sock"),
		CtrlSocket: filepath.Join(sockDir, "ctrl.sock"),
		StateDir:   dir,
	}
	logPath := filepath.Join(dir, "swtpm.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "socket",
		"--tpmstate", "dir="+dir,
		"--tpm2",
		"--server", "type=unixio,path="+s.Socket,
		"--ctrl", "type=unixio,path="+s.CtrlSocket,
		"--flags", "not-need-init,startup-clear")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	s.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for !ready(s.Socket) || !ready(s.CtrlSocket) {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			log, _ := os.ReadFile(logPath)
			t.Fatalf("swtpm exited before it was ready: %v\n%s", err, log)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("swtpm did not create %s within 10s\n%s", s.Socket, log)
		}
	}
	return s
}

// ready reports whether path is a socket that accepts a connection.
func ready(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 {
		return false
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Reboot simulates a power cycle: `swtpm_ioctl --unix CTRL -i` resets the
// TPM (PCRs back to their initial values, transient objects and sessions
// gone, seeds and persistent objects kept), then Reboot sends
// TPM2_Startup(TPM_SU_CLEAR) itself, as firmware would, so the TPM is
// ready for commands when it returns.
func (s *SwTPMProcess) Reboot(t testing.TB) {
	t.Helper()
	ioctl := Require(t, "swtpm_ioctl")
	if ioctl == "" {
		return
	}
	if out, err := exec.Command(ioctl, "--unix", s.CtrlSocket, "-i").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_ioctl --unix %s -i: %v\n%s", s.CtrlSocket, err, out)
	}
	// TPM2_Startup: tag TPM_ST_NO_SESSIONS, size 12, TPM_CC_Startup, TPM_SU_CLEAR.
	rsp, err := s.Send([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0})
	if err != nil {
		t.Fatalf("TPM2_Startup(CLEAR) after reboot: %v", err)
	}
	// TPM_RC_INITIALIZE (0x100): already started.
	if rc := binary.BigEndian.Uint32(rsp[6:10]); rc != 0 && rc != 0x100 {
		t.Fatalf("TPM2_Startup(CLEAR) after reboot = TPM_RC 0x%x", rc)
	}
}

// Send sends one raw TPM command on its own connection and returns the
// raw response (at least the 10-byte header).
func (s *SwTPMProcess) Send(cmd []byte) ([]byte, error) {
	c, err := net.Dial("unix", s.Socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<16 {
		return nil, errors.New("response size out of range")
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

// A TPMCounter is a Unix socket in front of a swtpm that forwards every
// byte both ways and counts the TPM commands that go through it: what a
// benchmark reports instead of time, since swtpm's socket hides the cost
// of a command on a real TPM (about 13 ms each on a kernel TPM stack).
type TPMCounter struct {
	// Socket is the counting socket: configure it as the TPM device.
	Socket string

	mu sync.Mutex
	n  int
}

// Counter starts a TPMCounter in front of s until the test ends.
func (s *SwTPMProcess) Counter(t testing.TB) *TPMCounter {
	t.Helper()
	dir, err := os.MkdirTemp("", "tpmcount")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &TPMCounter{Socket: filepath.Join(dir, "tpm.sock")}
	l, err := net.Listen("unix", c.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("unix", s.Socket)
			if err != nil {
				in.Close()
				continue
			}
			go func() { io.Copy(in, out); in.Close() }()
			go func() { c.count(in, out); out.Close() }()
		}
	}()
	return c
}

// count copies TPM commands from in to out, one at a time and each in one
// write (swtpm reads a command in one read), counting them: each is a
// 10-byte header (tag, size, code) and size-10 more bytes.
func (c *TPMCounter) count(in io.Reader, out io.Writer) {
	const maxCommand = 4096 // TPM2's largest command buffer
	for {
		cmd := make([]byte, 10, maxCommand)
		if _, err := io.ReadFull(in, cmd); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(cmd[2:6])
		if size < 10 || size > maxCommand {
			return
		}
		cmd = cmd[:size]
		if _, err := io.ReadFull(in, cmd[10:]); err != nil {
			return
		}
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		if _, err := out.Write(cmd); err != nil {
			return
		}
	}
}

// Commands returns the number of TPM commands counted so far.
func (c *TPMCounter) Commands() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
