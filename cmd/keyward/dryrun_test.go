package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
)

// TestDryRunAdminWithoutStore runs dry runs as an administrator who, like
// an SRE in production, cannot read the store (it is root's 0700 here)
// but has admin on the names through a running agent: uid 4242, in the
// socket's group. The dry run says what it needs and changes nothing.
func TestDryRunAdminWithoutStore(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the administrator as uid 4242, which needs root")
	}
	tok := testenv.SoftHSM(t)
	dir := testenv.PublicDir(t)
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg := write("keyward.toml", "[store]\n"+
		"dir = "+quote(filepath.Join(dir, "store"))+"\n"+
		"machine_id_file = "+quote(write("machine-id", "0123456789abcdef0123456789abcdef\n"))+"\n"+
		"[pkcs11]\nuri = "+quote(tok.URI("keyward-kek"))+"\n"+
		"[agent]\nsocket = "+quote(filepath.Join(dir, "agent.sock"))+"\n"+
		"socket_group = \"4242\"\n"+
		"policy = "+quote(write("policy.toml", "[[rule]]\nname = \"sre\"\nsecrets = [\"a/*\"]\nusers = [\"4242\"]\nallow = [\"admin\"]\n"))+"\n"+
		"audit_log = "+quote(filepath.Join(dir, "audit.log"))+"\n")
	keyward := func(stdin string, args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"keyward", "--config", cfg}, args...), strings.NewReader(stdin), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	for _, args := range [][]string{{"init"}, {"put", "a/b"}} {
		if _, stderr, code := keyward("value-one\n", args...); code != 0 {
			t.Fatalf("keyward %v: exit %d: %s", args, code, stderr)
		}
	}
	bin := linkCLI(t, dir)
	serve := exec.Command(bin, "--config", cfg, "serve")
	serve.Stderr = io.Discard
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGINT)
		serve.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", filepath.Join(dir, "agent.sock")); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent did not start")
		}
	}
	asAdmin := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"--config", cfg}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	for _, args := range [][]string{{"rm", "a/b", "--dry-run"}, {"rotate", "a/b", "--dry-run"}, {"prune", "--dry-run"}} {
		stdout, stderr, code := asAdmin(args...)
		if code != 1 || stdout != "" ||
			!strings.Contains(stderr, "keyward: error: --dry-run reads the store's metadata, and this user cannot: ") ||
			!strings.Contains(stderr, "permission denied") ||
			!strings.Contains(stderr, "keyward: hint: run the dry run as the keyward user (runuser -u keyward -- keyward …) or root; it changes nothing") {
			t.Errorf("keyward %v as uid 4242: exit %d, stdout %q, stderr %q; want 1 and the store-access hint", args, code, stdout, stderr)
		}
	}
	// Without --dry-run the same administrator rotates through the agent.
	rotate := exec.Command(bin, "--config", cfg, "rotate", "a/b")
	rotate.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
	rotate.Stdin = strings.NewReader("value-two\n")
	if out, err := rotate.CombinedOutput(); err != nil || !strings.Contains(string(out), "the agent now serves a/b version 2") {
		t.Errorf("rotate as uid 4242: %v, %s", err, out)
	}
	stdout, _, _ := keyward("", "list")
	if !regexp.MustCompile(`(?m)^a/b\s+1\s`).MatchString(stdout) || !regexp.MustCompile(`(?m)^a/b\s+2\s.*current$`).MatchString(stdout) {
		t.Errorf("list = %q, want a/b versions 1 and 2: the dry runs changed nothing, the rotation did", stdout)
	}
}
