package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/tpm"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keyward": func() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs each testdata/*.txt script against its own SoftHSM token
// and store; scripts named tpm-*.txt use the tpm backend and hsmtpm-*.txt
// the hsm+tpm backend, each on its own swtpm. Scripts see $STORE,
// $TOKENDIR, $CONFIG and $PINFILE, and $TPM for the swtpm socket.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			tok := testenv.SoftHSM(t)
			backend, tpmSocket := "pkcs11", ""
			switch base := filepath.Base(file); {
			case strings.HasPrefix(base, "tpm-"):
				backend, tpmSocket = "tpm", testenv.SwTPM(t).Socket
			case strings.HasPrefix(base, "hsmtpm-"):
				backend, tpmSocket = "hsm+tpm", testenv.SwTPM(t).Socket
			}
			testscript.Run(t, testscript.Params{
				Files: []string{file},
				Setup: func(env *testscript.Env) error {
					return setupScript(env, tok, backend, tpmSocket)
				},
				Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
					"absent":    absent,
					"waitsock":  waitSocket,
					"extendpcr": extendPCR,
					"newtpm":    newTPM,
					"newtoken":  newToken,
					"json":      jsonField,
					"waitfile":  waitFile,
				},
			})
		})
	}
}

// setupScript writes a configuration for the script's own store, token and
// machine id.
func setupScript(env *testscript.Env, tok *testenv.SoftHSMToken, backend, tpmSocket string) error {
	work := env.WorkDir
	config := filepath.Join(work, "keyward.toml")
	machineID := filepath.Join(work, "machine-id")
	if err := os.WriteFile(machineID, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		return err
	}
	text := "backend = " + quote(backend) + "\n" +
		"[tpm]\n" +
		"device = " + quote(tpmSocket) + "\n" +
		"[store]\n" +
		"dir = " + quote(filepath.Join(work, "store")) + "\n" +
		"machine_id_file = " + quote(machineID) + "\n" +
		"[pkcs11]\n" +
		"uri = " + quote(tok.URI("keyward-kek")) + "\n" +
		"[agent]\n" +
		"socket = " + quote(filepath.Join(work, "run", "agent.sock")) + "\n" +
		"policy = " + quote(filepath.Join(work, "policy.toml")) + "\n" +
		"audit_log = " + quote(filepath.Join(work, "audit.log")) + "\n"
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		return err
	}
	env.Setenv("SOFTHSM2_CONF", tok.ConfPath)
	env.Setenv("KEYWARD_CONFIG", config)
	env.Setenv("STORE", filepath.Join(work, "store"))
	env.Setenv("TOKENDIR", tok.TokenDir)
	env.Setenv("PINFILE", tok.PINFile)
	env.Setenv("PIN_VALUE", string(tok.PIN))
	env.Setenv("MODULE", tok.ModulePath)
	env.Setenv("TPM", tpmSocket)
	// A binary built with -race sleeps a second at exit (atexit_sleep_ms)
	// for late race reports; with a few hundred keyward runs that was
	// 220 s of the 250 s the scripts took under the race detector.
	env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return nil
}

// newTPM replaces the script's TPM by a fresh swtpm (another TPM: new
// seeds) and points the configuration at it: newtpm.
func newTPM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: newtpm")
	}
	dir := ts.MkAbs("tpm2")
	ts.Check(os.MkdirAll(dir, 0o700))
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpmstate", "dir="+dir, "--tpm2",
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	ts.Check(cmd.Start())
	ts.Defer(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("swtpm did not start")
		}
	}
	config := ts.MkAbs("keyward.toml")
	b, err := os.ReadFile(config)
	ts.Check(err)
	text := strings.Replace(string(b), "device = "+quote(ts.Getenv("TPM")), "device = "+quote(sock), 1)
	ts.Check(os.WriteFile(config, []byte(text), 0o644))
	ts.Setenv("TPM", sock)
}

// newToken replaces the script's SoftHSM token by a fresh one with the
// same label, in a token directory of its own (another HSM: no key yet),
// with a new PIN written to $PINFILE: newtoken.
func newToken(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: newtoken")
	}
	dir := ts.MkAbs("token2")
	tokens := filepath.Join(dir, "tokens")
	ts.Check(os.MkdirAll(tokens, 0o700))
	conf := filepath.Join(dir, "softhsm2.conf")
	ts.Check(os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600))
	digits := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		for i := range b {
			b[i] = '0' + b[i]%10
		}
		return string(b)
	}
	pin := digits(8)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", testenv.DefaultSoftHSMLabel, "--pin", pin, "--so-pin", digits(12))
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		ts.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	ts.Check(os.WriteFile(ts.Getenv("PINFILE"), []byte(pin+"\n"), 0o600))
	ts.Setenv("SOFTHSM2_CONF", conf)
	ts.Setenv("TOKENDIR", tokens)
}

// extendPCR extends a PCR of the script's swtpm, as a measured boot of
// another kernel or firmware would: extendpcr INDEX.
func extendPCR(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: extendpcr INDEX")
	}
	i, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("extendpcr: %v", err)
	}
	t, err := tpm.OpenDevice(ts.Getenv("TPM"))
	ts.Check(err)
	defer t.Close()
	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(i), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256,
			Digest:  make([]byte, 32),
		}}},
	}.Execute(t)
	ts.Check(err)
}

// absent fails if any file below the given directories contains the text:
// absent TEXT DIR... . The directories must exist, so a wrong path cannot
// make the check pass.
func absent(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || args[0] == "" {
		ts.Fatalf("usage: absent TEXT DIR... (TEXT not empty)")
	}
	text := []byte(args[0])
	for _, dir := range args[1:] {
		dir = ts.MkAbs(dir)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			ts.Fatalf("absent: %s is not a directory", dir)
		}
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, text) {
				ts.Fatalf("absent: %s contains %q", path, text)
			}
			return nil
		})
		ts.Check(err)
	}
}

// waitSocket waits up to 10s until a Unix socket accepts connections:
// waitsock PATH.
func waitSocket(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitsock PATH")
	}
	path := ts.MkAbs(args[0])
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
	}
	ts.Fatalf("nothing listens on %s", path)
}

// jsonField checks the JSON document on the last command's stdout: json
// PATH VALUE compares the value at PATH (dotted, with indexes: a.0.b) in
// its JSON text (strings unquoted); json PATH checks that PATH exists, and
// ! json PATH that it does not.
func jsonField(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 || neg && len(args) != 1 {
		ts.Fatalf("usage: json PATH [VALUE] | ! json PATH")
	}
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &v); err != nil {
		ts.Fatalf("json: stdout is not a JSON document: %v", err)
	}
	for _, k := range strings.Split(args[0], ".") {
		switch n := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = n[k]; !ok {
				if neg {
					return
				}
				ts.Fatalf("json: no field %q on the path %s", k, args[0])
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(n) {
				if neg {
					return
				}
				ts.Fatalf("json: no element %q on the path %s (%d elements)", k, args[0], len(n))
			}
			v = n[i]
		default:
			if neg {
				return
			}
			ts.Fatalf("json: %s: cannot index %T with %q", args[0], v, k)
		}
	}
	if neg {
		ts.Fatalf("json: %s exists", args[0])
	}
	if len(args) == 2 {
		got, _ := json.Marshal(v)
		if s, ok := v.(string); ok {
			got = []byte(s)
		}
		if string(got) != args[1] {
			ts.Fatalf("json: %s = %s, want %s", args[0], got, args[1])
		}
	}
}

// waitFile waits up to 10s until a file's contents match a regular
// expression: waitfile FILE REGEXP.
func waitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitfile FILE REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	path := ts.MkAbs(args[0])
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err = os.ReadFile(path); err == nil && re.Match(b) {
			return
		}
	}
	ts.Fatalf("waitfile: %s does not match %q after 10s; it holds %q", args[0], args[1], b)
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// TestExitCodes checks the usage errors that need no backend: exit status 2
// and a message on stderr.
func TestExitCodes(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "keyward.toml")
	os.WriteFile(cfg, []byte("[store]\nmachine_id_file = \"/nonexistent\"\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"version"}, 0, "keyward 0"},
		{[]string{"nosuch"}, 2, `unknown command "nosuch"`},
		{[]string{"put"}, 2, "exactly one argument"},
		{[]string{"put", "a", "s3cret-on-argv"}, 2, "never from the command line"},
		{[]string{"put", "A/../b"}, 2, "invalid secret name"},
		{[]string{"put", "--expires", "soon", "a"}, 2, "--expires"},
		{[]string{"put", "--nosuchflag", "a"}, 2, "flag provided but not defined"},
		{[]string{"rm", "a"}, 2, "--yes"},
		{[]string{"init", "extra"}, 2, "no arguments"},
		{[]string{"list"}, 1, "machine id"},
		{[]string{"lsit"}, 2, "did you mean keyward list?"},
		{[]string{"policy", "chek", "a"}, 2, "did you mean keyward policy check?"},
		{[]string{"policy"}, 2, "needs a subcommand: check"},
		{[]string{"policy", "check", "a"}, 2, "needs --uid USER"},
		{[]string{"policy", "check", "--uid", "no-such-user-kw", "a"}, 2, "no such user"},
		{[]string{"help", "nosuch"}, 2, "No help topic"},
		{[]string{"rotate", "a", "--grac", "1h"}, 2, "did you mean --grace?"},
		{[]string{"put", "a", "--expires", "soon"}, 2, "--expires"},
		{[]string{"put", "a", "--expires"}, 2, "flag needs an argument: --expires"},
		{[]string{"rm", "a", "--nosuch"}, 2, "flag provided but not defined"},
		{[]string{"config", "check", "a", "b"}, 2, "at most one"},
		{[]string{"render", "t.tmpl"}, 2, "needs --out"},
		{[]string{"seal", "a/b"}, 2, "seal needs --to"},
		{[]string{"provisioner", "new"}, 2, "provisioner new needs --out"},
		{[]string{"exec", "--restart-on-rotate", "--signal-on-rotate", "HUP", "--env", "A=b", "--", "true"}, 2, "exclude each other"},
		{[]string{"exec", "--signal-on-rotate", "NOPE", "--env", "A=b", "--", "true"}, 2, "not a signal name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"keyward", "--config", cfg}, tt.args...)
			code := run(args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit status = %d, want %d (stderr: %s)", code, tt.code, stderr.String())
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tt.want) {
				t.Errorf("output = %q, want it to contain %q", out, tt.want)
			}
			if strings.Contains(stdout.String()+stderr.String(), "s3cret-on-argv") {
				t.Errorf("output echoes the value given on the command line")
			}
			if tt.code != 0 && !strings.HasPrefix(stderr.String(), "keyward: error: ") {
				t.Errorf("stderr = %q, want it to start with keyward: error:", stderr.String())
			}
			if strings.Contains(stderr.String(), "error: keyward:") {
				t.Errorf("stderr = %q, with a doubled prefix", stderr.String())
			}
		})
	}
}

// TestAgentUnreachable checks what get says when no agent answers: no
// socket, nothing listening, and a socket this user may not connect to
// (a real EACCES: the command runs as uid 4242 against a 0600 socket).
func TestAgentUnreachable(t *testing.T) {
	dir := testenv.PublicDir(t)
	refused := filepath.Join(dir, "refused.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: refused, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	denied := filepath.Join(dir, "denied.sock")
	ld, err := net.Listen("unix", denied)
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	if err := os.Chmod(denied, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		socket, want, hint string
	}{
		{filepath.Join(dir, "none.sock"), "no agent socket at ", "systemctl status keyward.socket"},
		{refused, "no agent listens on ", "journalctl -u keyward"},
	} {
		var stderr bytes.Buffer
		code := run([]string{"keyward", "get", "--socket", tt.socket, "a/b"}, strings.NewReader(""), io.Discard, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "keyward: error: "+tt.want+tt.socket+"\n") ||
			!strings.Contains(stderr.String(), "keyward: hint: ") || !strings.Contains(stderr.String(), tt.hint) {
			t.Errorf("get --socket %s: exit %d, stderr %q; want 1, %q and a hint with %q", tt.socket, code, stderr.String(), tt.want, tt.hint)
		}
	}

	if os.Getuid() != 0 {
		t.Skip("the EACCES case runs a command as another uid, which needs root")
	}
	cmd := exec.Command(linkCLI(t, dir), "get", "--socket", denied, "a/b")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("get as uid 4242: %v, want exit status 1 (stderr %q)", err, stderr.String())
	}
	for _, want := range []string{"keyward: error: permission denied connecting to the agent at " + denied + "\n", "keyward-clients", "$KEYWARD_SOCKET"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("get as uid 4242: stderr %q, want %q", stderr.String(), want)
		}
	}
}

// linkCLI links the test binary into dir as "keyward", the name for which
// testscript.Main runs the CLI, so that another uid can run it.
func linkCLI(t *testing.T, dir string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "keyward")
	if err := os.Link(exe, bin); err != nil {
		t.Fatalf("link the test binary: %v", err)
	}
	return bin
}
