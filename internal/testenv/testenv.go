// Package testenv provides the hardware stand-ins keyward's tests run
// against: throwaway SoftHSM tokens, a fault-injecting PKCS #11 module in
// front of them, and swtpm instances.
//
// Tests that need a tool skip when it is missing, except when the
// environment variable KEYWARD_TEST_REQUIRE_HARDWARE is 1 (as in CI), where
// a missing tool fails the test. Helpers change process-wide environment
// variables with t.Setenv, so tests that use them cannot call t.Parallel.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireHardwareEnv is the environment variable that turns a missing tool
// from a skip into a failure when set to 1.
const RequireHardwareEnv = "KEYWARD_TEST_REQUIRE_HARDWARE"

// packages says what provides each tool, for messages: a display name and
// the Debian package.
var packages = map[string][2]string{
	"softhsm2-util":   {"SoftHSM", "softhsm2"},
	"libsofthsm2.so":  {"SoftHSM", "softhsm2"},
	"pkcs11-tool":     {"OpenSC", "opensc"},
	"swtpm":           {"swtpm", "swtpm"},
	"swtpm_setup":     {"swtpm", "swtpm-tools"},
	"swtpm_ioctl":     {"swtpm", "swtpm-tools"},
	"tpm2_pcrread":    {"tpm2-tools", "tpm2-tools"},
	"systemd-nspawn":  {"systemd-nspawn", "systemd-container"},
	"systemd-analyze": {"systemd", "systemd"},
	"gcc":             {"gcc", "gcc"},
	"node":            {"Node.js", "nodejs"},
	"npm":             {"npm", "npm"},
	"logrotate":       {"logrotate", "logrotate"},
	"promtool":        {"promtool", "prometheus"},
	"zsh":             {"zsh", "zsh"},
	"fish":            {"fish", "fish"},
}

// Require returns the path of tool, a command looked up in $PATH or an
// absolute file path. When it is missing, Require skips the test, or fails
// it when KEYWARD_TEST_REQUIRE_HARDWARE=1, naming the package to install;
// it then returns "" (only observable with a testing.TB that does not stop
// the test).
func Require(t testing.TB, tool string) string {
	t.Helper()
	var path string
	var err error
	if filepath.IsAbs(tool) {
		if _, err = os.Stat(tool); err == nil {
			path = tool
		}
	} else {
		path, err = exec.LookPath(tool)
	}
	if err == nil {
		return path
	}
	what, pkg := tool, tool
	if p, ok := packages[filepath.Base(tool)]; ok {
		what, pkg = p[0], p[1]
	}
	if os.Getenv(RequireHardwareEnv) == "1" {
		t.Fatalf("%s is required: apt-get install %s (%s: %v)", what, pkg, tool, err)
		return ""
	}
	t.Skipf("%s is not installed (%s: %v); apt-get install %s, or set %s=1 to make this a failure",
		what, tool, err, pkg, RequireHardwareEnv)
	return ""
}
