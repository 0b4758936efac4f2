package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/internal/testenv"
)

// agentHost is a provisioned store and token for a `keyward serve` run as
// a separate process, the way systemd runs it.
type agentHost struct {
	tok    *testenv.SoftHSMToken
	dir    string // public: socket, policy, configuration
	config string
	socket string
}

// newAgentHost initialises a token, a store holding binance/mm-prod and
// okx/exec, and a policy granting root binance/*. With credURI the
// configuration's PKCS#11 URI names no PIN file, so the PIN can only come
// from a systemd credential.
func newAgentHost(t *testing.T, credURI bool) *agentHost {
	t.Helper()
	tok := testenv.SoftHSM(t)
	dir := t.TempDir()
	h := &agentHost{tok: tok, dir: dir, config: filepath.Join(dir, "keyward.toml"), socket: filepath.Join(dir, "run", "agent.sock")}
	machineID := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(machineID, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	uri := tok.URI("keyward-kek")
	if credURI {
		uri = uri[:strings.Index(uri, "&pin-source=")]
	}
	cfg := "[store]\n" +
		"dir = " + quote(filepath.Join(dir, "store")) + "\n" +
		"machine_id_file = " + quote(machineID) + "\n" +
		"[pkcs11]\n" +
		"uri = " + quote(uri) + "\n" +
		"[agent]\n" +
		"socket = " + quote(h.socket) + "\n" +
		"policy = " + quote(filepath.Join(dir, "policy.toml")) + "\n" +
		"audit_log = " + quote(filepath.Join(dir, "audit.log")) + "\n"
	if err := os.WriteFile(h.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	h.writePolicy(t, "binance/*")
	pinURI := strings.Replace(cfg, quote(uri), quote(tok.URI("keyward-kek")), 1)
	provision := filepath.Join(dir, "provision.toml")
	if err := os.WriteFile(provision, []byte(pinURI), 0o644); err != nil {
		t.Fatal(err)
	}
	h.cli(t, provision, "", "init")
	h.cli(t, provision, "correct-horse", "put", "binance/mm-prod")
	h.cli(t, provision, "other-value", "put", "okx/exec")
	return h
}

// cli runs keyward in-process with the configuration and stdin given.
func (h *agentHost) cli(t *testing.T, config, stdin string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	args = append([]string{"keyward", "--config", config}, args...)
	if code := run(args, strings.NewReader(stdin), &out, &out); code != 0 {
		t.Fatalf("%s: exit status %d\n%s", strings.Join(args, " "), code, out.String())
	}
}

// writePolicy grants root get on the given secret patterns.
func (h *agentHost) writePolicy(t *testing.T, secrets ...string) {
	t.Helper()
	quoted := make([]string, len(secrets))
	for i, s := range secrets {
		quoted[i] = quote(s)
	}
	text := fmt.Sprintf("[[rule]]\nname = \"root\"\nsecrets = [%s]\nusers = [\"0\", \"%d\"]\nallow = [\"get\"]\n",
		strings.Join(quoted, ", "), os.Getuid())
	tmp := filepath.Join(h.dir, "policy.toml.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, "policy.toml")); err != nil {
		t.Fatal(err)
	}
}

// keywardBinary returns the path of a "keyward" that runs this test
// binary's keyward command (testscript.Main dispatches on the name).
func keywardBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "keyward")
	if err := os.Symlink(exe, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// serve starts `keyward serve` with the host's configuration and env, and
// returns the process and its combined output.
func (h *agentHost) serve(t *testing.T, env ...string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command(keywardBinary(t), "--config", h.config, "serve")
	// GORACE: a race-enabled child otherwise sleeps 1s before exiting.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, out
}

// get fetches a secret from the agent on the host's socket.
func (h *agentHost) get(t *testing.T, name string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, h.socket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.Get(ctx, name)
	if err != nil {
		return "", err
	}
	defer s.Wipe()
	return string(s.Bytes()), nil
}

// notifySocket listens where NOTIFY_SOCKET points and delivers each
// datagram, the way the service manager receives sd_notify messages.
func notifySocket(t *testing.T) (env string, msgs <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return "NOTIFY_SOCKET=" + path, ch
}

// waitFor returns the first message for which match is true, failing the
// test after timeout; skipped messages go to skipped (when not nil).
func waitFor(t *testing.T, msgs <-chan string, what string, timeout time.Duration, match func(string) bool, skipped *[]string) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s", what)
			}
			if match(m) {
				return m
			}
			if skipped != nil {
				*skipped = append(*skipped, m)
			}
		case <-deadline:
			t.Fatalf("no %s within %v (skipped: %q)", what, timeout, *skipped)
		}
	}
}

func hasLine(m, line string) bool {
	for _, l := range strings.Split(m, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func hasPrefixLine(m, prefix string) bool {
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// TestNotify runs `keyward serve` against a fake service manager: READY=1
// only once the store is loaded, RELOADING=1 (with MONOTONIC_USEC) then
// READY=1 around SIGHUP, watchdog pings while the backend is healthy and
// still once it is not, STOPPING=1 on SIGTERM and a clean exit.
func TestNotify(t *testing.T) {
	h := newAgentHost(t, false)
	notifyEnv, msgs := notifySocket(t)
	// The watchdog asks for a ping every 0.8s: the agent checks its
	// backend every 0.4s and pings after each check that completes.
	cmd, out := h.serve(t, notifyEnv, "WATCHDOG_USEC=800000")

	var skipped []string
	ready := waitFor(t, msgs, "READY=1", 15*time.Second, func(m string) bool { return hasLine(m, "READY=1") }, &skipped)
	// READY=1 comes after the store is loaded: the secrets are served
	// at once, and the status says how many there are.
	if !strings.Contains(ready, "STATUS=serving 2 secrets") || !strings.Contains(ready, "backend healthy") {
		t.Errorf("READY message = %q, want STATUS= with 2 secrets and a healthy backend", ready)
	}
	if got, err := h.get(t, "binance/mm-prod"); err != nil || got != "correct-horse" {
		t.Fatalf("get right after READY=1 = %q, %v", got, err)
	}
	for _, m := range skipped {
		if !hasLine(m, "WATCHDOG=1") && !strings.HasPrefix(m, "STATUS=") {
			t.Errorf("before READY=1 the agent sent %q", m)
		}
	}

	skipped = nil
	for range 2 {
		waitFor(t, msgs, "watchdog ping", 3*time.Second, func(m string) bool { return hasLine(m, "WATCHDOG=1") }, &skipped)
	}

	// SIGHUP with a new policy: RELOADING=1 with MONOTONIC_USEC, READY=1,
	// and the new policy applies.
	h.writePolicy(t, "binance/*", "okx/*")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	skipped = nil
	reloading := waitFor(t, msgs, "RELOADING=1", 5*time.Second, func(m string) bool { return hasLine(m, "RELOADING=1") }, &skipped)
	if !hasPrefixLine(reloading, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING message = %q, want MONOTONIC_USEC=", reloading)
	}
	waitFor(t, msgs, "READY=1 after the reload", 5*time.Second, func(m string) bool { return hasLine(m, "READY=1") }, &skipped)
	if got, err := h.get(t, "okx/exec"); err != nil || got != "other-value" {
		t.Errorf("get okx/exec after reload = %q, %v; want the new policy applied", got, err)
	}

	// The backend goes away: its token files are removed, so the health
	// check fails. The status says so, and the pings go on: the agent
	// serves what it holds, and a restart would lose it.
	entries, err := os.ReadDir(h.tok.TokenDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(h.tok.TokenDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	skipped = nil
	waitFor(t, msgs, "STATUS= with an unavailable backend", 5*time.Second,
		func(m string) bool { return strings.Contains(m, "backend unavailable") }, &skipped)
	waitFor(t, msgs, "a watchdog ping while the backend is unavailable", 3*time.Second,
		func(m string) bool { return hasLine(m, "WATCHDOG=1") }, &skipped)
	// Serving from memory goes on.
	if got, err := h.get(t, "binance/mm-prod"); err != nil || got != "correct-horse" {
		t.Errorf("get with an unhealthy backend = %q, %v; want the secret from memory", got, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, msgs, "STOPPING=1", 5*time.Second, func(m string) bool { return hasLine(m, "STOPPING=1") }, &skipped)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, out)
	}
}

// TestNotifyNotReadyOnFailure: an agent that cannot load (here, no policy)
// exits non-zero and never says READY=1.
func TestNotifyNotReadyOnFailure(t *testing.T) {
	h := newAgentHost(t, false)
	os.Remove(filepath.Join(h.dir, "policy.toml"))
	notifyEnv, msgs := notifySocket(t)
	cmd, out := h.serve(t, notifyEnv)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("serve without a policy exited 0\n%s", out)
	}
	for {
		select {
		case m := <-msgs:
			if hasLine(m, "READY=1") {
				t.Fatalf("READY=1 from an agent that failed to start: %q", m)
			}
		default:
			return
		}
	}
}

// TestServeCredentialsDirectory: under systemd the PIN comes from
// $CREDENTIALS_DIRECTORY/keyward-pin (LoadCredentialEncrypted=). The
// configuration names no other PIN source.
func TestServeCredentialsDirectory(t *testing.T) {
	h := newAgentHost(t, true)
	creds := t.TempDir()
	pin := append(append([]byte(nil), h.tok.PIN...), '\n')
	if err := os.WriteFile(filepath.Join(creds, "keyward-pin"), pin, 0o400); err != nil {
		t.Fatal(err)
	}
	cmd, out := h.serve(t, "CREDENTIALS_DIRECTORY="+creds)
	waitForSocket(t, h.socket, out)
	if got, err := h.get(t, "binance/mm-prod"); err != nil || got != "correct-horse" {
		t.Fatalf("get = %q, %v\n%s", got, err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, out)
	}

	// Without the credential there is no PIN: serve fails and says where
	// to put it.
	cmd, out = h.serve(t, "CREDENTIALS_DIRECTORY="+t.TempDir())
	if err := cmd.Wait(); err == nil {
		t.Fatalf("serve without a PIN exited 0\n%s", out)
	}
	if !strings.Contains(out.String(), "keyward-pin") {
		t.Errorf("serve without a PIN said %q, want it to name the credential keyward-pin", out)
	}
}

// waitForSocket waits until the agent answers on path.
func waitForSocket(t *testing.T, path string, out fmt.Stringer) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s\n%s", path, out)
}
