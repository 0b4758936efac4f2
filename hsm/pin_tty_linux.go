package hsm

import (
	"fmt"
	"os"

	"github.com/keyward/keyward/internal/tty"
)

// readTerminalPIN asks for the PIN on /dev/tty with echo off, when standard
// input is a terminal.
func readTerminalPIN(prompt string) (pin []byte, ok bool, err error) {
	if !tty.IsTerminal(os.Stdin) {
		return nil, false, nil
	}
	line, err := tty.ReadHidden(prompt, MaxPINLen)
	if err != nil {
		return nil, false, fmt.Errorf("hsm: read the PIN: %w", err)
	}
	defer clear(line)
	pin, err = checkPIN(line)
	if err != nil {
		return nil, false, fmt.Errorf("hsm: the PIN entered %w", err)
	}
	return pin, true, nil
}
