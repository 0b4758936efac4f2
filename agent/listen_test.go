package agent_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keyward/keyward/agent"
)

func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "agent.sock")
	var l net.Listener
	l, err := agent.Listen(agent.ListenConfig{Path: path, Mode: 0o660, GID: -1})
	if err != nil {
		t.Fatalf("Listen() = %v", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, want socket 0660", fi.Mode())
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o750 {
		t.Errorf("created directory mode = %v, want 0750", d.Mode().Perm())
	}

	// An agent answers on the path: a second Listen refuses to replace it.
	if _, err := agent.Listen(agent.ListenConfig{Path: path, GID: -1}); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("Listen(path in use) = %v, want already serving", err)
	}
	// After the agent is gone its socket file is stale and is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := agent.Listen(agent.ListenConfig{Path: path, GID: -1})
	if err != nil {
		t.Fatalf("Listen(stale socket) = %v", err)
	}
	l2.Close()

	// Something that is not a socket is never removed.
	other := filepath.Join(dir, "file")
	os.WriteFile(other, []byte("keep"), 0o600)
	if _, err := agent.Listen(agent.ListenConfig{Path: other, GID: -1}); err == nil {
		t.Errorf("Listen(regular file) = nil error")
	}
	if b, _ := os.ReadFile(other); string(b) != "keep" {
		t.Errorf("Listen replaced a regular file")
	}

	// A directory others may write to, or that another user owns, is refused.
	loose := filepath.Join(t.TempDir(), "loose")
	os.Mkdir(loose, 0o777)
	os.Chmod(loose, 0o777)
	if _, err := agent.Listen(agent.ListenConfig{Path: filepath.Join(loose, "a.sock"), GID: -1}); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("Listen(world-writable dir) = %v, want refused", err)
	}
	sticky := filepath.Join(t.TempDir(), "sticky")
	os.Mkdir(sticky, 0o777)
	os.Chmod(sticky, 0o777|os.ModeSticky)
	if _, err := agent.Listen(agent.ListenConfig{Path: filepath.Join(sticky, "a.sock"), GID: -1}); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("Listen(world-writable sticky dir) = %v, want refused", err)
	}
}

// TestListenOwnership: Listen gives the socket and the directory it
// creates the configured group, and refuses a directory another user
// owns. Both take root: to chown to a group the test is not in, and to
// make a directory another user owns.
func TestListenOwnership(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "agent.sock")
	l, err := agent.Listen(agent.ListenConfig{Path: path, Mode: 0o660, GID: 4321})
	if err != nil {
		t.Fatalf("Listen() = %v", err)
	}
	defer l.Close()
	for _, p := range []string{path, dir} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Gid != 4321 {
			t.Errorf("group of %s = %d, want 4321", p, st.Gid)
		}
	}

	owned := filepath.Join(t.TempDir(), "owned")
	os.Mkdir(owned, 0o755)
	if err := os.Chown(owned, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Listen(agent.ListenConfig{Path: filepath.Join(owned, "a.sock"), GID: -1}); err == nil || !strings.Contains(err.Error(), "belongs to uid 4242") {
		t.Errorf("Listen(dir of another user) = %v, want refused", err)
	}
}
