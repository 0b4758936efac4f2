package systemd

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
)

// TestNspawn runs scripts/nspawn-test.sh: the shipped units, installed by
// `keyward install`, under a real systemd as PID 1 in systemd-nspawn, on a
// throwaway overlay of this host. It needs root and systemd-nspawn; a
// missing systemd-nspawn skips the test, or fails it with
// KEYWARD_TEST_REQUIRE_HARDWARE=1.
func TestNspawn(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("systemd-nspawn needs root")
	}
	testenv.Require(t, "systemd-nspawn")
	script, err := filepath.Abs(filepath.Join("..", "scripts", "nspawn-test.sh"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "keyward")
	build := exec.Command(goTool(t), "build", "-buildvcs=false", "-o", bin, "github.com/keyward/keyward/cmd/keyward")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	built := time.Since(start)
	var out bytes.Buffer
	cmd := exec.Command("bash", script, bin)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 77:
		t.Skipf("this machine cannot run the scenario:\n%s", out.String())
	case err != nil:
		t.Fatalf("%s: %v\n%s", script, err, out.String())
	}
	t.Logf("built in %v, scenario passed in %v", built.Round(time.Millisecond), (time.Since(start) - built).Round(time.Millisecond))
}

// goTool returns the go command that is running the tests.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build keyward: %v", err)
	}
	return p
}
