package agent_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/client"
)

// start runs a long-lived role and waits for its first line of output;
// closing the returned writer (its stdin) ends it.
func (c child) start(t testing.TB, role string, args ...string) (first string, stop io.Closer) {
	t.Helper()
	cmd := c.command(role, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child %s as uid %d: %v", role, c.uid, err)
	}
	return strings.TrimSpace(line), stdin
}

const tradingPolicy = `
[[rule]]
name = "trader"
secrets = ["binance/*"]
users = ["4605"]
allow = ["get"]
`

// TestFairConnectionSlots: strangers under four uids take every slot and
// reconnect whenever one is freed, yet a trading process the policy names,
// and root's status, always get in: a newcomer below its fair share evicts
// an idle connection of the uid holding the most.
func TestFairConnectionSlots(t *testing.T) {
	needRoot(t)
	dir := publicDir(t)
	bin, _ := childBinary(t, dir, "bot", nil)
	ta := startAgent(t, tradingPolicy, accessSecrets, agentOpts{maxConns: 16, maxPerUID: 4, quietAudit: true})
	for uid := uint32(4601); uid <= 4604; uid++ {
		if got, _ := (child{bin: bin, uid: uid, gid: uid}).start(t, "hold", ta.socket, "4"); got != "holding 4" {
			t.Fatalf("stranger %d: %q, want holding 4", uid, got)
		}
	}
	trader := child{bin: bin, uid: 4605, gid: 4605}
	if got := trader.run(t, "get-many", ta.socket, "binance/mm-prod", "20"); got != "failed 0 map[]" {
		t.Errorf("trading process while strangers hold every slot: %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, ta.socket)
	if err != nil {
		t.Fatalf("root could not connect while strangers hold every slot: %v", err)
	}
	defer cl.Close()
	if _, err := cl.Status(ctx); err != nil {
		t.Errorf("status while strangers hold every slot: %v", err)
	}
}

// TestConnectFloodDoesNotStarveOthers: one user connecting and closing in a
// loop does not make another user's connections fail: connections are
// counted and rate-limited per uid from SO_PEERCRED in the accept loop,
// before any /proc work, and clients retry a full backlog. The flooder
// runs below the agent's CPU priority, as keyward.service arranges
// (CPUWeight, Nice): a flooder that out-runs the accept loop on the CPU
// keeps the listen backlog full whatever the agent does.
func TestConnectFloodDoesNotStarveOthers(t *testing.T) {
	needRoot(t)
	if raceEnabled {
		// Under the race detector, attesting the flooder's admitted
		// connections takes the agent longer than the per-uid rate allows
		// them, so the flood fills the listen backlog before it is refused
		// and the trader times out. scripts/test.sh runs this test without
		// the race detector.
		t.Skip("a timing property of the real build: the race detector slows the agent's accept path below the per-uid connect rate")
	}
	dir := publicDir(t)
	bin, _ := childBinary(t, dir, "bot", nil)
	ta := startAgent(t, tradingPolicy, accessSecrets, agentOpts{quietAudit: true})
	for uid := uint32(4701); uid <= 4701; uid++ {
		if got, _ := (child{bin: bin, uid: uid, gid: uid, nice: 10}).start(t, "flood", ta.socket); got != "flooding" {
			t.Fatalf("flooder: %q", got)
		}
	}
	// The trader's gets must run while the flood is being refused: wait
	// for the flood to use up its burst, however fast this machine lets
	// the flooder go.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ta.logs.String(), "opens connections too fast") {
		if time.Now().After(deadline) {
			t.Fatal("the flood was not refused as too fast within 10s (no log line)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	trader := child{bin: bin, uid: 4605, gid: 4605}
	if got := trader.run(t, "get-many", ta.socket, "binance/mm-prod", "300"); got != "failed 0 map[]" {
		t.Errorf("trading process during a connect flood by another uid: %s", got)
	}
}
