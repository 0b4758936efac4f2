package testenv_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

// recorder is a testing.TB whose Skipf and Fatalf only record, so that
// Require's decision can be observed.
type recorder struct {
	testing.TB
	skipped, fatal string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = format }
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = format }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name, tool, env string
		wantPath        bool
		wantSkip        bool
		wantFatal       bool
	}{
		{name: "present command", tool: "sh", wantPath: true},
		{name: "present file", tool: "/bin/sh", wantPath: true},
		{name: "missing skips", tool: "keyward-no-such-tool", wantSkip: true},
		{name: "missing fails in CI", tool: "keyward-no-such-tool", env: "1", wantFatal: true},
		{name: "missing file fails in CI", tool: "/nonexistent/libsofthsm2.so", env: "1", wantFatal: true},
		{name: "other value skips", tool: "/nonexistent/x.so", env: "yes", wantSkip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(testenv.RequireHardwareEnv, tc.env)
			r := &recorder{TB: t}
			path := testenv.Require(r, tc.tool)
			if (path != "") != tc.wantPath || (r.skipped != "") != tc.wantSkip || (r.fatal != "") != tc.wantFatal {
				t.Errorf("Require(%q) = %q, skipped %v, failed %v; want path %v, skipped %v, failed %v",
					tc.tool, path, r.skipped != "", r.fatal != "", tc.wantPath, tc.wantSkip, tc.wantFatal)
			}
		})
	}
}

func TestRequireMessage(t *testing.T) {
	t.Setenv(testenv.RequireHardwareEnv, "1")
	r := &recorder{TB: t}
	testenv.Require(r, "/nonexistent/libsofthsm2.so")
	if want := "%s is required: apt-get install %s"; !strings.HasPrefix(r.fatal, want) {
		t.Errorf("Require failure format = %q, want prefix %q", r.fatal, want)
	}
}

func TestSoftHSM(t *testing.T) {
	tok := testenv.SoftHSM(t)
	if got := os.Getenv("SOFTHSM2_CONF"); got != tok.ConfPath {
		t.Errorf("SOFTHSM2_CONF = %q, want %q", got, tok.ConfPath)
	}
	if tok.Label != testenv.DefaultSoftHSMLabel {
		t.Errorf("Label = %q, want %q", tok.Label, testenv.DefaultSoftHSMLabel)
	}
	if len(tok.PIN) != 8 || strings.Trim(string(tok.PIN), "0123456789") != "" {
		t.Errorf("PIN is not 8 digits")
	}
	fi, err := os.Stat(tok.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("PIN file mode = %04o, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(tok.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, append(append([]byte(nil), tok.PIN...), '\n')) {
		t.Errorf("PIN file does not hold the PIN and a newline")
	}
	want := "pkcs11:token=keyward-test;object=root?module-path=" + tok.ModulePath + "&pin-source=file:" + tok.PINFile
	if got := tok.URI("root"); got != want {
		t.Errorf("URI(%q) = %q, want %q", "root", got, want)
	}

	second := tok.AddToken(t, "keyward-test-2")
	if second.PINFile == tok.PINFile {
		t.Errorf("AddToken reused the first token's PIN file")
	}
	out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --show-slots: %v\n%s", err, out)
	}
	for _, label := range []string{tok.Label, second.Label} {
		if !bytes.Contains(out, []byte("Label:            "+label)) {
			t.Errorf("softhsm2-util --show-slots does not list token %q:\n%s", label, out)
		}
	}
}
