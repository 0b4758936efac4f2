//go:build !linux

package hsm

// readTerminalPIN does not prompt on this system: give the PIN in a file.
func readTerminalPIN(prompt string) (pin []byte, ok bool, err error) { return nil, false, nil }
