package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/systemd"
)

// keyward runs the CLI in-process and returns its exit status and output.
func keyward(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(append([]string{"keyward"}, args...), strings.NewReader(""), &out, &out)
	return code, out.String()
}

// tree lists every file and directory below root with its mode (and,
// as root, its owner).
func tree(t *testing.T, root string) []string {
	t.Helper()
	var list []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		entry := fmt.Sprintf("%s %04o", strings.TrimPrefix(p, root), fi.Mode().Perm())
		if fi.IsDir() {
			entry = fmt.Sprintf("%s/ %04o", strings.TrimPrefix(p, root), fi.Mode().Perm())
		}
		if os.Geteuid() == 0 {
			entry += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
		}
		list = append(list, entry)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(list)
	return list
}

func TestInstallRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("checks owners: run as root")
	}
	root := t.TempDir()
	// An image being built: /etc/group already has the agent's group.
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nkeyward:x:990:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)

	// A dry run changes nothing.
	code, out := keyward(t, "install", "--root", root, "--dry-run")
	if code != 0 || !strings.Contains(out, "would create "+filepath.Join(root, "etc/keyward/keyward.toml")+" (0644 root:root)") ||
		!strings.Contains(out, "dry run: 11 changes would be made; nothing was changed") {
		t.Fatalf("install --dry-run: status %d\n%s", code, out)
	}
	if got := tree(t, root); strings.Join(got, "\n") != strings.Join(before, "\n") {
		t.Fatalf("--dry-run changed the tree:\n%s", strings.Join(got, "\n"))
	}

	code, out = keyward(t, "install", "--root", root)
	if code != 0 {
		t.Fatalf("install: status %d\n%s", code, out)
	}
	want := []string{
		"/etc/ 0755 0:0",
		"/etc/group 0644 0:0",
		"/etc/keyward/ 0755 0:0",
		"/etc/keyward/keyward.toml 0644 0:0",
		"/etc/keyward/policy.toml 0644 0:0",
		"/usr/ 0755 0:0",
		"/usr/local/ 0755 0:0",
		"/usr/local/lib/ 0755 0:0",
		"/usr/local/lib/systemd/ 0755 0:0",
		"/usr/local/lib/systemd/system/ 0755 0:0",
		"/usr/local/lib/systemd/system/keyward-metrics.socket 0644 0:0",
		"/usr/local/lib/systemd/system/keyward.service 0644 0:0",
		"/usr/local/lib/systemd/system/keyward.socket 0644 0:0",
		"/usr/local/lib/sysusers.d/ 0755 0:0",
		"/usr/local/lib/sysusers.d/keyward.conf 0644 0:0",
		"/usr/local/lib/tmpfiles.d/ 0755 0:0",
		"/usr/local/lib/tmpfiles.d/keyward.conf 0644 0:0",
	}
	if got := tree(t, root); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree after install:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range systemd.Files("/usr/local") {
		got, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("%s differs from the shipped file (%v)", f.Path, err)
		}
	}

	// Twice: nothing changes, and it says so. The files are not even
	// rewritten.
	stamps := mtimes(t, root)
	code, out = keyward(t, "install", "--root", root)
	if code != 0 || !strings.Contains(out, "keyward is installed; nothing changed") {
		t.Errorf("second install: status %d\n%s", code, out)
	}
	if got := mtimes(t, root); got != stamps {
		t.Errorf("second install rewrote files")
	}

	// The operator's configuration and policy are never overwritten; a
	// changed unit is put back.
	edited := "[[rule]]\nname = \"mm\"\nsecrets = [\"binance/*\"]\nusers = [\"trader\"]\nallow = [\"get\"]\n"
	os.WriteFile(filepath.Join(root, "etc/keyward/policy.toml"), []byte(edited), 0o644)
	os.WriteFile(filepath.Join(root, "usr/local/lib/systemd/system/keyward.socket"), []byte("[Socket]\n"), 0o644)
	code, out = keyward(t, "install", "--root", root)
	if code != 0 || !strings.Contains(out, "kept "+filepath.Join(root, "etc/keyward/policy.toml")) ||
		!strings.Contains(out, "updated "+filepath.Join(root, "usr/local/lib/systemd/system/keyward.socket")) {
		t.Errorf("install over edits: status %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/keyward/policy.toml")); string(b) != edited {
		t.Errorf("install overwrote the operator's policy")
	}

	// uninstall removes what install wrote and keeps configuration and
	// store; --purge needs --yes.
	code, out = keyward(t, "uninstall", "--root", root)
	if code != 0 || !strings.Contains(out, "removed "+filepath.Join(root, "usr/local/lib/systemd/system/keyward.service")) {
		t.Errorf("uninstall: status %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/keyward/policy.toml")); err != nil {
		t.Errorf("uninstall removed the policy: %v", err)
	}
	if code, out = keyward(t, "uninstall", "--root", root); code != 0 || !strings.Contains(out, "keyward is not installed; nothing changed") {
		t.Errorf("second uninstall: status %d\n%s", code, out)
	}
	os.MkdirAll(filepath.Join(root, "var/lib/keyward"), 0o700)
	if code, out = keyward(t, "uninstall", "--root", root, "--purge"); code != 2 || !strings.Contains(out, "--yes") {
		t.Errorf("uninstall --purge without --yes: status %d\n%s", code, out)
	}
	if code, out = keyward(t, "uninstall", "--root", root, "--purge", "--yes"); code != 0 {
		t.Errorf("uninstall --purge --yes: status %d\n%s", code, out)
	}
	for _, p := range []string{"etc/keyward", "var/lib/keyward"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("uninstall --purge left %s", p)
		}
	}
}

// TestInstallPrefix: with --prefix /usr the units go to /usr/lib and the
// service runs /usr/bin/keyward; other prefixes are refused.
func TestInstallPrefix(t *testing.T) {
	root := t.TempDir()
	if code, out := keyward(t, "install", "--root", root, "--prefix", "/usr"); code != 0 {
		t.Fatalf("install --prefix /usr: status %d\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/keyward.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\nExecStart=/usr/bin/keyward serve\n")) {
		t.Errorf("keyward.service with --prefix /usr does not run /usr/bin/keyward")
	}
	if code, out := keyward(t, "install", "--root", root, "--prefix", "/opt/keyward"); code != 2 || !strings.Contains(out, "/usr/local or /usr") {
		t.Errorf("install --prefix /opt/keyward: status %d\n%s", code, out)
	}
}

// TestInstallSkeletonsParse: the configuration skeleton is a valid
// configuration, and the policy skeleton a valid policy with no rule.
func TestInstallSkeletonsParse(t *testing.T) {
	cfg := config.Default()
	if err := config.Parse([]byte(configSkeleton), &cfg); err != nil {
		t.Fatalf("configuration skeleton: %v", err)
	}
	if cfg.Agent.SocketGroup != clientsGroup || cfg.Agent.Socket != "/run/keyward/agent.sock" || cfg.Agent.Policy != policyFile {
		t.Errorf("configuration skeleton: socket %q group %q policy %q", cfg.Agent.Socket, cfg.Agent.SocketGroup, cfg.Agent.Policy)
	}
	p, err := policy.Parse([]byte(policySkeleton))
	if err != nil {
		t.Fatalf("policy skeleton: %v", err)
	}
	if p.Rules() != 0 {
		t.Errorf("policy skeleton has %d rules, want none", p.Rules())
	}
	// The commented examples are themselves valid rules (for users that
	// exist here).
	var example strings.Builder
	for _, line := range strings.Split(policySkeleton, "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok && (strings.HasPrefix(rest, "[[rule]]") || strings.Contains(rest, " = ")) {
			rest = strings.ReplaceAll(rest, `"trader"`, `"root"`)
			example.WriteString(strings.ReplaceAll(rest, `"sre"`, `"0"`) + "\n")
		}
	}
	if p, err := policy.Parse([]byte(example.String())); err != nil || p.Rules() != 2 {
		t.Errorf("the policy skeleton's examples = %v, %v; want two valid rules:\n%s", p, err, example.String())
	}
}

func mtimes(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			fmt.Fprintf(&b, "%s %s\n", p, fi.ModTime().Format(time.RFC3339Nano))
		}
		return err
	})
	return b.String()
}

// TestInstallTPMNote: with a TPM backend configured, install says that
// the host (or the image) needs tpm-udev for the keyward user to open the
// TPM; with the PKCS #11 backend it says nothing of it.
func TestInstallTPMNote(t *testing.T) {
	for _, backend := range []string{"tpm", "hsm+tpm", "pkcs11"} {
		t.Run(backend, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc/keyward"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "etc/keyward/keyward.toml"), []byte("backend = \""+backend+"\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out := keyward(t, "install", "--root", root)
			if code != 0 {
				t.Fatalf("install: status %d\n%s", code, out)
			}
			if got := strings.Contains(out, "apt-get install tpm-udev"); got != (backend != "pkcs11") {
				t.Errorf("install with backend %s: tpm-udev note %v, want %v:\n%s", backend, got, backend != "pkcs11", out)
			}
		})
	}
}
