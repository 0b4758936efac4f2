package tty

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// terminal is a fake terminal: typed input and the output written.
type terminal struct {
	io.Reader
	io.Writer
}

func TestPrompt(t *testing.T) {
	for _, tc := range []struct {
		name, typed, want, wantErr, rest string
	}{
		{name: "line", typed: "1234\n", want: "1234"},
		{name: "crlf", typed: "1234\r\n", want: "1234"},
		{name: "eof", typed: "1234", want: "1234"},
		{name: "stops at newline", typed: "1234\nrest", want: "1234", rest: "rest"},
		{name: "spaces kept", typed: " 12 34 \n", want: " 12 34 "},
		{name: "empty", typed: "\n", want: ""},
		{name: "nothing", typed: "", want: ""},
		{name: "exactly max", typed: strings.Repeat("1", 16) + "\n", want: strings.Repeat("1", 16)},
		{name: "too long", typed: strings.Repeat("1", 300) + "\nrest", wantErr: "longer than 16", rest: "rest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.NewReader(tc.typed)
			var out bytes.Buffer
			line, err := Prompt(terminal{in, &out}, "PIN: ", 16)
			if string(line) != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Prompt(%q) = %q, %v, want %q, %q", tc.typed, line, err, tc.want, tc.wantErr)
			}
			if out.String() != "PIN: " {
				t.Errorf("Prompt wrote %q, want %q", out.String(), "PIN: ")
			}
			if rest := tc.typed[len(tc.typed)-in.Len():]; rest != tc.rest {
				t.Errorf("Prompt left %q unread, want %q", rest, tc.rest)
			}
		})
	}
}

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
	if !IsTerminal(pts) {
		t.Errorf("IsTerminal(pty) = false")
	}
	errFn := errors.New("fn failed")
	err := WithEchoOff(fd, func() error {
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
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	if IsTerminal(f) {
		t.Errorf("IsTerminal(/dev/null) = true")
	}
	if err := WithEchoOff(int(f.Fd()), func() error { return nil }); err == nil {
		t.Errorf("WithEchoOff(/dev/null) = nil, want an error")
	}
}
