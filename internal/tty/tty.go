// Package tty reads a line from the controlling terminal with echo turned
// off, for PINs and secrets typed by an operator.
package tty

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// MaxLine bounds what ReadHidden accepts, in bytes.
const MaxLine = 64 << 10

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ReadHidden writes prompt to the terminal and reads one line from it with
// echo off, restoring the terminal afterwards. The line ending is removed.
func ReadHidden(prompt string) ([]byte, error) {
	t, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to prompt on: %w", err)
	}
	defer t.Close()
	fd := int(t.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("no terminal to prompt on: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, fmt.Errorf("failed to turn terminal echo off: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(t, prompt)
	defer fmt.Fprintln(t)
	return ReadLine(t)
}

// ReadLine reads one line of at most MaxLine bytes from r, one byte at a
// time so that nothing past the line is consumed and no partial copies of
// it are left in intermediate buffers, and removes the trailing "\n" or
// "\r\n". It is meant for terminals and small inputs.
func ReadLine(r io.Reader) ([]byte, error) {
	buf := make([]byte, MaxLine+1)
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n : n+1])
		n += m
		if m == 1 && buf[n-1] == '\n' {
			n--
			break
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			clear(buf)
			return nil, err
		}
	}
	if n > MaxLine {
		clear(buf)
		return nil, fmt.Errorf("input is longer than %d bytes", MaxLine)
	}
	if n > 0 && buf[n-1] == '\r' {
		n--
	}
	return buf[:n:n], nil
}
