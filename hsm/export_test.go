package hsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/keyward/keyward/internal/tty"
)

// Test hooks, exported to package hsm_test.
var (
	PromptPIN = promptPIN
	CheckPIN  = checkPIN
)

// promptPIN reads a PIN typed on rw after prompt, as readTerminalPIN does
// on the real terminal.
func promptPIN(rw io.ReadWriter, prompt string) ([]byte, error) {
	line, err := tty.Prompt(rw, prompt, MaxPINLen)
	if err != nil {
		return nil, err
	}
	defer clear(line)
	pin, err := checkPIN(line)
	if err != nil {
		return nil, fmt.Errorf("hsm: the PIN entered %w", err)
	}
	return pin, nil
}

// SetModuleDirs replaces the directories searched for module-name.
func SetModuleDirs(t testing.TB, dirs []string) {
	old := moduleDirs
	moduleDirs = dirs
	t.Cleanup(func() { moduleDirs = old })
}

// fakeTerminal is typed input plus a record of what was written.
type fakeTerminal struct {
	io.Reader
	out *bytes.Buffer
}

func (f fakeTerminal) Write(b []byte) (int, error) { return f.out.Write(b) }

// SetTerminal makes ReadPIN see a terminal on which input is typed, and
// returns what ReadPIN writes to it. With present false, ReadPIN sees no
// terminal.
func SetTerminal(t testing.TB, present bool, input string) *bytes.Buffer {
	old := terminalPIN
	out := new(bytes.Buffer)
	terminalPIN = func(prompt string) ([]byte, bool, error) {
		if !present {
			return nil, false, nil
		}
		pin, err := promptPIN(fakeTerminal{Reader: bytes.NewReader([]byte(input)), out: out}, prompt)
		return pin, err == nil, err
	}
	t.Cleanup(func() { terminalPIN = old })
	return out
}
