package hsm_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/keyward/keyward/hsm"
	"golang.org/x/sys/unix"
)

// openPTY returns the terminal side of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}

func TestWithEchoOff(t *testing.T) {
	pts := openPTY(t)
	fd := int(pts.Fd())
	lflag := func() uint32 {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Lflag
	}
	before := lflag()
	if before&unix.ECHO == 0 {
		t.Fatalf("new pty has echo off")
	}
	errFn := errors.New("fn failed")
	err := hsm.WithEchoOff(fd, func() error {
		if got := lflag(); got&unix.ECHO != 0 || got&unix.ECHONL == 0 {
			t.Errorf("inside WithEchoOff: ECHO %v, ECHONL %v; want off, on", got&unix.ECHO != 0, got&unix.ECHONL != 0)
		}
		return errFn
	})
	if !errors.Is(err, errFn) {
		t.Errorf("WithEchoOff() = %v, want %v", err, errFn)
	}
	if after := lflag(); after != before {
		t.Errorf("after WithEchoOff: lflag = %#x, want %#x restored", after, before)
	}
	if err := hsm.WithEchoOff(int(os.Stdin.Fd()), func() error { return nil }); err == nil && !isTerminal(int(os.Stdin.Fd())) {
		t.Errorf("WithEchoOff(non-terminal) = nil, want error")
	}
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
