package pin

import (
	"fmt"
	"os"

	"github.com/keyward/keyward/internal/tty"
)

// readTerminal asks for the PIN on the terminal with echo off, when
// standard input is a terminal.
func readTerminal(prompt string) (pin []byte, ok bool, err error) {
	if !tty.IsTerminal(os.Stdin) {
		return nil, false, nil
	}
	line, err := tty.ReadHidden(prompt, MaxLen)
	if err != nil {
		return nil, false, fmt.Errorf("read the PIN: %w", err)
	}
	defer clear(line)
	pin, err = check(line)
	if err != nil {
		return nil, false, fmt.Errorf("the PIN entered %w", err)
	}
	return pin, true, nil
}
