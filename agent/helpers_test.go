package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store/storetest"
)

// selfUID is the test process's uid. Policies name it to grant the test
// itself, so that the tests run as any user; only the tests that run
// clients under other uids need root (see needRoot).
var selfUID = os.Getuid()

// needRoot skips a test that runs processes under other uids.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run processes under other uids")
	}
}

// publicDir returns a directory every uid can enter.
func publicDir(t testing.TB) string { return testenv.PublicDir(t) }

// auditLog collects audit events.
type auditLog struct{ testenv.Buffer }

// events parses the JSON events written so far.
func (a *auditLog) events(t testing.TB) []map[string]any {
	var evs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(a.String()), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// testAgent is a running agent on a socket in a public directory.
type testAgent struct {
	srv    *agent.Server
	socket string
	audit  *auditLog
	logs   *auditLog
}

type agentOpts struct {
	frameTimeout time.Duration
	idleTimeout  time.Duration
	maxConns     int
	maxPerUID    int
	quietAudit   bool
	metrics      agent.Metrics
}

func startAgent(t testing.TB, policyText string, secrets map[string]string, opts agentOpts) *testAgent {
	t.Helper()
	pol, err := policy.Parse([]byte(policyText))
	if err != nil {
		t.Fatalf("policy.Parse() = %v", err)
	}
	st := storetest.MemStore(t, secrets)
	cache, skipped, err := agent.LoadCache(context.Background(), st, nil)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("LoadCache() = %v, %v", skipped, err)
	}
	ta := &testAgent{audit: &auditLog{}, logs: &auditLog{}}
	var auditW io.Writer = ta.audit
	if opts.quietAudit {
		auditW = io.Discard
	}
	auditTrail := audit.New(auditW, nil)
	srv, err := agent.New(agent.Config{
		Policy:         pol,
		Backend:        "mem",
		Agent:          "keyward test",
		Logger:         slog.New(slog.NewJSONHandler(ta.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Audit:          auditTrail,
		FrameTimeout:   opts.frameTimeout,
		IdleTimeout:    opts.idleTimeout,
		MaxConns:       opts.maxConns,
		MaxConnsPerUID: opts.maxPerUID,
		Metrics:        opts.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCache(cache)
	ta.srv = srv
	ta.socket = filepath.Join(publicDir(t), "agent.sock")
	l, err := agent.Listen(agent.ListenConfig{Path: ta.socket, Mode: 0o777, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		srv.Close()
		auditTrail.Close(time.Second)
		assertNoSecretLogged(t, ta.audit.String()+ta.logs.String(), secrets)
	})
	return ta
}

// assertNoSecretLogged fails the test if out, the agent's logs and audit
// trail, contains any of the secrets' values.
func assertNoSecretLogged(t testing.TB, out string, secrets map[string]string) {
	t.Helper()
	if containsAny(out, secrets) {
		t.Errorf("a secret value appears in the logs:\n%s", out)
	}
}

func containsAny(s string, secrets map[string]string) bool {
	for _, v := range secrets {
		if strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// childBinary copies the test binary into a public directory, so that
// other uids can run it; the copy's path and hash identify it.
func childBinary(t testing.TB, dir, name string, extra []byte) (path, sum string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, extra...)
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return path, hex.EncodeToString(h[:])
}

// child runs a role of TestMain in a process with the given credentials
// (which takes root, see needRoot), or with the test process's own when
// self is set.
type child struct {
	bin    string
	uid    uint32
	gid    uint32
	groups []uint32
	self   bool // keep the test process's credentials; uid and gid are its own
	nice   int  // run under nice(1) at this niceness
}

// selfChild runs bin with the test process's own credentials: for tests
// of what a process does with its connection, which any user can run.
func selfChild(bin string) child {
	return child{bin: bin, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), self: true}
}

func (c child) command(role string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, append([]string{"-test.run=^$"}, args...)...)
	if c.nice != 0 {
		cmd = exec.Command("nice", append([]string{"-n", strconv.Itoa(c.nice), c.bin, "-test.run=^$"}, args...)...)
	}
	cmd.Env = []string{childRoleEnv + "=" + role, "PATH=/usr/bin:/bin"}
	if c.self {
		return cmd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups}}
	if c.groups == nil {
		cmd.SysProcAttr.Credential.Groups = []uint32{}
	}
	return cmd
}

// run runs a role and returns its stdout.
func (c child) run(t testing.TB, role string, args ...string) string {
	t.Helper()
	cmd := c.command(role, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s %v as uid %d: %v\n%s", role, args, c.uid, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func fmtResult(v any, err error) string {
	if err != nil {
		return "err " + err.Error()
	}
	return fmt.Sprint(v)
}
