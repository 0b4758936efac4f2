// Package tty reads a line from the controlling terminal with echo turned
// off, for PINs and secrets typed by an operator.
//
// It is not golang.org/x/term's ReadPassword, which grows its line a byte
// at a time (a 4 KiB value leaves 16 allocations, each an abandoned copy
// of the secret's prefix, in the heap), reads lines of any length, and
// leaves the terminal with echo off when the process is interrupted at
// the prompt. Prompt allocates its buffer once, bounds the line and
// clears what it read; WithEchoOff restores the terminal on SIGINT,
// SIGTERM and SIGHUP before the signal takes its course.
package tty

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ReadHidden writes prompt to the controlling terminal and reads one line
// of at most max bytes from it with echo off (see [Prompt]), restoring the
// terminal afterwards.
func ReadHidden(prompt string, max int) ([]byte, error) {
	t, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to prompt on: %w", err)
	}
	defer t.Close()
	var line []byte
	err = WithEchoOff(int(t.Fd()), func() error {
		var err error
		line, err = Prompt(t, prompt, max)
		return err
	})
	return line, err
}

// Prompt writes prompt to rw and reads one line from it, a byte at a time
// so that nothing past the line is consumed and no partial copies are left
// in intermediate buffers. The "\n" or "\r\n" ending is removed. A line
// longer than max bytes is read to its end, then refused.
func Prompt(rw io.ReadWriter, prompt string, max int) ([]byte, error) {
	if _, err := io.WriteString(rw, prompt); err != nil {
		return nil, fmt.Errorf("failed to write the prompt: %w", err)
	}
	buf := make([]byte, max+1) // room for a trailing '\r'
	defer clear(buf)
	n, long := 0, false
	var c [1]byte
	for {
		m, err := rw.Read(c[:])
		if m == 1 {
			if c[0] == '\n' {
				break
			}
			if n < len(buf) {
				buf[n] = c[0]
				n++
			} else {
				long = true
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read from the terminal: %w", err)
		}
	}
	c[0] = 0
	if n > 0 && buf[n-1] == '\r' {
		n--
	}
	if long || n > max {
		return nil, fmt.Errorf("the line entered is longer than %d bytes", max)
	}
	line := make([]byte, n)
	copy(line, buf)
	return line, nil
}

// WithEchoOff runs fn with echo turned off on the terminal fd (the newline
// is still echoed), and restores the settings afterwards, also when the
// process is interrupted meanwhile.
func WithEchoOff(fd int, fn func() error) error {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("failed to read the terminal settings: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ECHONL | unix.ICANON
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return fmt.Errorf("failed to turn terminal echo off: %w", err)
	}
	restore := sync.OnceFunc(func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) })
	defer restore()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	defer func() {
		signal.Stop(sig)
		close(done)
	}()
	go func() {
		select {
		case s := <-sig:
			// Give the terminal back, then let the signal do what it
			// would have done without the prompt.
			restore()
			signal.Stop(sig)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(s)
			}
		case <-done:
		}
	}()
	return fn()
}
