package systemd

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeManager listens on a NOTIFY_SOCKET for the test.
func fakeManager(t *testing.T) func() []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() []string {
		var msgs []string
		buf := make([]byte, 4096)
		for {
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				return msgs
			}
			msgs = append(msgs, string(buf[:n]))
		}
	}
}

func TestNotifier(t *testing.T) {
	received := fakeManager(t)
	t.Setenv("WATCHDOG_USEC", "10000000")
	t.Setenv("WATCHDOG_PID", "")
	n, err := NewNotifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Watchdog() != 10*time.Second || n.HealthInterval(0) != 5*time.Second || n.HealthInterval(time.Second) != time.Second {
		t.Errorf("Watchdog() = %v, HealthInterval(0) = %v, HealthInterval(1s) = %v; want 10s, 5s, 1s",
			n.Watchdog(), n.HealthInterval(0), n.HealthInterval(time.Second))
	}

	n.Health(nil) // before ready: a ping, and the first state
	n.Event("ready", "serving 2 secrets, 1 policy rules")
	n.Health(nil)
	n.Event("reloading", "reloading policy and store")
	n.Event("ready", "serving 3 secrets, 1 policy rules")
	n.Health(errors.New("hsm: token \"keyward\" is not usable"))
	n.Health(errors.New("hsm: token \"keyward\" is not usable"))
	n.Health(nil)
	n.Event("stopping", "draining connections")

	got := received()
	want := []string{
		"WATCHDOG=1",
		"READY=1\nSTATUS=serving 2 secrets, 1 policy rules; backend healthy",
		"WATCHDOG=1",
		"RELOADING=1\nMONOTONIC_USEC=*\nSTATUS=reloading policy and store; backend healthy",
		"READY=1\nSTATUS=serving 3 secrets, 1 policy rules; backend healthy",
		"WATCHDOG=1\nSTATUS=serving 3 secrets, 1 policy rules; backend unavailable, serving what the agent holds: hsm: token \"keyward\" is not usable",
		"WATCHDOG=1",
		"WATCHDOG=1\nSTATUS=serving 3 secrets, 1 policy rules; backend healthy",
		"STOPPING=1\nSTATUS=draining connections; backend healthy",
	}
	if len(got) != len(want) {
		t.Fatalf("received %d messages, want %d:\n%q", len(got), len(want), got)
	}
	for i := range want {
		if !matchMessage(got[i], want[i]) {
			t.Errorf("message %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// matchMessage compares a message with a pattern in which a line's value
// "*" matches any non-empty value.
func matchMessage(got, pattern string) bool {
	gl, pl := strings.Split(got, "\n"), strings.Split(pattern, "\n")
	if len(gl) != len(pl) {
		return false
	}
	for i := range pl {
		if k, ok := strings.CutSuffix(pl[i], "=*"); ok {
			if v, found := strings.CutPrefix(gl[i], k+"="); !found || v == "" {
				return false
			}
		} else if gl[i] != pl[i] {
			return false
		}
	}
	return true
}

// TestNotifierOutsideSystemd: without NOTIFY_SOCKET and WATCHDOG_USEC
// nothing is sent and nothing fails.
func TestNotifierOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n, err := NewNotifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Watchdog() != 0 || n.HealthInterval(0) != 0 {
		t.Errorf("Watchdog() = %v, HealthInterval(0) = %v; want 0, 0", n.Watchdog(), n.HealthInterval(0))
	}
	n.Event("ready", "serving")
	n.Health(nil)
}

// TestNotifierWatchdogOtherPID: WATCHDOG_PID naming another process means
// the watchdog is not this process's.
func TestNotifierWatchdogOtherPID(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "1")
	n, err := NewNotifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Watchdog() != 0 {
		t.Errorf("Watchdog() = %v with WATCHDOG_PID=1, want 0", n.Watchdog())
	}
}
