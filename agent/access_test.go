package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var accessSecrets = map[string]string{
	"binance/mm-prod": "binance-value-7f3a9c",
	"okx/exec":        "okx-value-2b8d11",
	"kraken/risk":     "kraken-value-c0ffee",
}

// TestAccessByRealCallers runs clients as real processes with real uids,
// groups and executables and checks each gets exactly what policy grants.
func TestAccessByRealCallers(t *testing.T) {
	needRoot(t)
	dir := publicDir(t)
	trusted, trustedSum := childBinary(t, dir, "mm-bot", nil)
	copied, _ := childBinary(t, dir, "mm-bot-copy", nil)
	_, otherSum := childBinary(t, dir, "mm-bot-other", []byte("different content"))
	other := filepath.Join(dir, "mm-bot-other")
	if otherSum == trustedSum {
		t.Fatal("test binaries must differ")
	}
	pol := fmt.Sprintf(`
[[rule]]
name = "by-uid"
secrets = ["binance/*"]
users = ["4242"]
allow = ["get"]

[[rule]]
name = "by-group"
secrets = ["okx/exec"]
groups = ["5000"]
allow = ["get"]

[[rule]]
name = "by-exe-path"
secrets = ["kraken/risk"]
users = ["4250"]
exes = [%q]
allow = ["get"]

[[rule]]
name = "by-exe-hash"
secrets = ["kraken/risk"]
users = ["4251"]
exe_sha256 = [%q]
allow = ["get"]
`, trusted, trustedSum)
	ta := startAgent(t, pol, accessSecrets, agentOpts{})

	tests := []struct {
		name   string
		who    child
		secret string
		want   string
	}{
		{"uid allowed", child{bin: trusted, uid: 4242, gid: 4242}, "binance/mm-prod", "ok 1 binance-value-7f3a9c"},
		{"other uid denied", child{bin: trusted, uid: 4243, gid: 4242}, "binance/mm-prod", "code denied"},
		{"missing name looks denied", child{bin: trusted, uid: 4243, gid: 4242}, "binance/nope", "code denied"},
		{"missing name under a grant", child{bin: trusted, uid: 4242, gid: 4242}, "binance/nope", "code not_found"},
		{"uid not granted another secret", child{bin: trusted, uid: 4242, gid: 4242}, "okx/exec", "code denied"},
		{"root denied without a rule", child{bin: trusted, uid: 0, gid: 0}, "binance/mm-prod", "code denied"},
		{"primary gid allowed", child{bin: trusted, uid: 4300, gid: 5000}, "okx/exec", "ok 1 okx-value-2b8d11"},
		{"supplementary gid allowed", child{bin: trusted, uid: 4301, gid: 4301, groups: []uint32{5000}}, "okx/exec", "ok 1 okx-value-2b8d11"},
		{"other gid denied", child{bin: trusted, uid: 4302, gid: 5001}, "okx/exec", "code denied"},
		{"exe path allowed", child{bin: trusted, uid: 4250, gid: 4250}, "kraken/risk", "ok 1 kraken-value-c0ffee"},
		{"copied binary at another path denied", child{bin: copied, uid: 4250, gid: 4250}, "kraken/risk", "code denied"},
		{"exe hash allowed, any path", child{bin: copied, uid: 4251, gid: 4251}, "kraken/risk", "ok 1 kraken-value-c0ffee"},
		{"binary with another hash denied", child{bin: other, uid: 4251, gid: 4251}, "kraken/risk", "code denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.who.run(t, "get", ta.socket, tt.secret); got != tt.want {
				t.Errorf("get %s as uid %d gid %d groups %v via %s = %q, want %q",
					tt.secret, tt.who.uid, tt.who.gid, tt.who.groups, filepath.Base(tt.who.bin), got, tt.want)
			}
		})
	}
}

// botPolicy grants binance/* to processes under the test's own uid: the
// tests of what a process does with its connection need no other uid.
var botPolicy = fmt.Sprintf(`
[[rule]]
name = "bot"
secrets = ["binance/*"]
users = ["%d"]
allow = ["get"]
`, selfUID)

// TestExecAfterConnect: a process that connects and then execs another
// program gets no answer on that connection any more.
func TestExecAfterConnect(t *testing.T) {
	dir := publicDir(t)
	first, _ := childBinary(t, dir, "first", nil)
	second, _ := childBinary(t, dir, "second", nil)
	ta := startAgent(t, botPolicy, accessSecrets, agentOpts{})
	out := selfChild(first).run(t, "exec-after-connect", ta.socket, "binance/mm-prod", second)
	lines := strings.Split(out, "\n")
	if len(lines) != 2 || lines[0] != "ok 1 binance-value-7f3a9c" {
		t.Fatalf("child output = %q, want a successful get then the exec'd program's result", out)
	}
	if lines[1] != "closed" {
		t.Errorf("after exec, get on the inherited connection = %q, want closed with no answer", lines[1])
	}
	assertAudited(t, ta, "deny", "another executable")
}

// TestExitedPeerWithForkedHolder: a connection whose process exited while a
// child it forked still holds the socket gets nothing.
func TestExitedPeerWithForkedHolder(t *testing.T) {
	dir := publicDir(t)
	bin, _ := childBinary(t, dir, "holder", nil)
	ta := startAgent(t, botPolicy, accessSecrets, agentOpts{})
	result := filepath.Join(dir, "result")
	if err := os.WriteFile(result, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(result, 0o666)
	out := selfChild(bin).run(t, "fork-holder", ta.socket, "binance/mm-prod", result)
	if !strings.HasPrefix(out, "ok 1 binance-value-7f3a9c\n") {
		t.Fatalf("child output = %q, want a successful get first", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(result)
		if got := strings.TrimSpace(string(b)); got != "" {
			if got != "closed" {
				t.Errorf("grandchild's get on the inherited connection = %q, want closed with no answer", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("grandchild reported nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertAudited(t, ta, "deny", "exited")
}

// assertAudited checks that some audit event has the decision and a
// reason containing text.
func assertAudited(t *testing.T, ta *testAgent, decision, text string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range ta.audit.events(t) {
			if ev["decision"] == decision && strings.Contains(fmt.Sprint(ev["reason"]), text) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("no audit event with decision %q and reason containing %q in:\n%s", decision, text, ta.audit)
}
