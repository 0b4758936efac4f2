package hsm

import (
	"testing"
)

// SetModuleDirs replaces the directories searched for module-name.
func SetModuleDirs(t testing.TB, dirs []string) {
	old := moduleDirs
	moduleDirs = dirs
	t.Cleanup(func() { moduleDirs = old })
}
