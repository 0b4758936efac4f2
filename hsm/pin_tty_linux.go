package hsm

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// readTerminalPIN asks for the PIN on /dev/tty with echo off, when standard
// input is a terminal.
func readTerminalPIN(prompt string) (pin []byte, ok bool, err error) {
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
		return nil, false, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("hsm: open the terminal to ask for the PIN: %w", err)
	}
	defer tty.Close()
	err = withEchoOff(int(tty.Fd()), func() error {
		var err error
		pin, err = promptPIN(tty, prompt)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return pin, true, nil
}

// withEchoOff runs fn with echo turned off on the terminal fd (the newline
// is still echoed), and restores the settings afterwards, also when the
// process is interrupted meanwhile.
func withEchoOff(fd int, fn func() error) error {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("hsm: read terminal settings: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ECHONL | unix.ICANON
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return fmt.Errorf("hsm: turn terminal echo off: %w", err)
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
