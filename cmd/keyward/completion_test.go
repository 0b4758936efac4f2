package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

// runCLI runs keyward in-process and returns its stdout and exit status.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"keyward"}, args...), strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Logf("keyward %s: %s", strings.Join(args, " "), stderr.String())
	}
	return stdout.String(), code
}

// TestBashCompletion sources the generated script in bash and completes
// partial command lines.
func TestBashCompletion(t *testing.T) {
	script, code := runCLI(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash exited %d", code)
	}
	file := filepath.Join(t.TempDir(), "keyward")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ line, want string }{
		{"keyward ro", "rotate"},
		{"keyward re", "render reseal recovery rewrap"},
		{"keyward policy ", "check"},
		{"keyward policy check --u", "--uid --unit"},
		{"keyward --config /etc/k.toml get --o", "--out"},
		{"keyward recovery init --s", "--shares"},
		{"keyward completion ", "--help -h"},
		{"keyward nosuch --", "--config --pin-stdin --help --version"},
	} {
		words := strings.Fields(tc.line)
		if strings.HasSuffix(tc.line, " ") {
			words = append(words, "")
		}
		cmd := exec.Command("bash", "-c", `. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _keyward; echo "${COMPREPLY[*]}"`,
			"bash", file)
		cmd.Args = append(cmd.Args, words...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("completing %q = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestZshFishCompletion: the zsh and fish scripts name every visible
// command, and zsh and fish parse them (with KEYWARD_TEST_REQUIRE_HARDWARE=1
// a missing shell fails the test; scripts/test.sh installs both).
func TestZshFishCompletion(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		script, code := runCLI(t, "completion", shell)
		if code != 0 {
			t.Fatalf("completion %s exited %d", shell, code)
		}
		for _, c := range commands() {
			if !c.Hidden && !strings.Contains(script, c.Name) {
				t.Errorf("the %s completion lacks %s", shell, c.Name)
			}
		}
		if path := testenv.Require(t, shell); path != "" {
			file := filepath.Join(t.TempDir(), "keyward."+shell)
			if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(path, "-n", file).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, out)
			}
		}
	}
	if _, code := runCLI(t, "completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh exited %d, want %d", code, exitUsage)
	}
}

// TestManVersion: the manual page is roff naming the commands, and
// --version prints the version and a revision.
func TestManVersion(t *testing.T) {
	man, code := runCLI(t, "man")
	if code != 0 || !strings.HasPrefix(man, ".nh\n.TH keyward 1") || !strings.Contains(man, "\n.SS check\n") {
		t.Errorf("keyward man exited %d:\n%.300s", code, man)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, code := runCLI(t, args...)
		if code != 0 || out != "keyward "+Version+" (revision "+revision()+")\n" {
			t.Errorf("keyward %s = %q, %d", args[0], out, code)
		}
	}
}
