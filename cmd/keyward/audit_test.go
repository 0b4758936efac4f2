package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/internal/testenv"
)

// TestAuditRotation: a real agent process serves gets from several
// clients while its file audit trail is renamed and the agent sent
// SIGHUP, as logrotate does. No event is lost: every get answered is in
// one file or the other, once; the two files verify as one trail, the
// new one beginning where the old one ends; the agent logs the heads.
func TestAuditRotation(t *testing.T) {
	h := newAgentHost(t, false)
	agent, out := h.serve(t)
	waitForSocket(t, h.socket, out)
	path := filepath.Join(h.dir, "audit.log")

	var served atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				if v, err := h.get(t, "binance/mm-prod"); err != nil || v != "correct-horse" {
					t.Errorf("get = %q, %v", v, err)
					return
				}
				served.Add(1)
			}
		})
	}
	waitServed := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); served.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d gets served", served.Load())
			}
		}
	}
	waitServed(100)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	before := served.Load()
	if err := agent.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServed(before + 200)
	stop.Store(true)
	wg.Wait()
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agent.Wait(); err != nil {
		t.Fatalf("keyward serve: %v\n%s", err, out)
	}

	files := []string{path + ".1", path}
	perFile := map[string]int{}
	if _, err := audit.ReadFiles(files, audit.Filter{Op: "get", Secret: "binance/mm-prod", Decision: "allow"}, func(r *audit.Record) error {
		perFile[r.File]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := perFile[files[0]] + perFile[files[1]]; got != int(served.Load()) || perFile[files[1]] == 0 {
		t.Errorf("get events: %v; want %d in all, some in the new file", perFile, served.Load())
	}
	rep, err := audit.Verify(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Starts != 2 || !rep.Closed {
		t.Errorf("Verify(old, new) = %+v; want no problem, the agent's start and the rotation, closed", rep)
	}
	logs := out.String()
	for _, want := range []string{`"msg":"audit log reopened"`, `"msg":"audit trail closed","head":{"seq":` + strconv.FormatUint(rep.Head.Seq, 10) + `,"hash":"` + rep.Head.Hash + `"}`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the agent's log has no %s:\n%s", want, logs)
		}
	}
}

// TestAuditLogrotate runs the logrotate snippet the package installs
// (scripts/package/keyward.logrotate, shown in docs/audit.md), as written
// but for the path, the signal's target, su (no keyward user here) and
// dateext (three rotations in a day), against a real agent, three times:
// the rotated files, one compressed later, verify with the current one as
// one trail that holds every get answered.
func TestAuditLogrotate(t *testing.T) {
	logrotate := testenv.Require(t, "logrotate")
	h := newAgentHost(t, false)
	agent, out := h.serve(t)
	waitForSocket(t, h.socket, out)
	path := filepath.Join(h.dir, "audit.log")
	conf := filepath.Join(h.dir, "logrotate.conf")
	snippet := shippedLogrotate(t)
	for old, new := range map[string]string{
		"/var/log/keyward/*.log": path,
		"\tsu keyward keyward\n": "",
		"\tdateext\n":            "",
		"if systemctl -q is-active keyward.service; then systemctl reload keyward.service; fi": "kill -HUP " + strconv.Itoa(agent.Process.Pid),
	} {
		if !strings.Contains(snippet, old) {
			t.Fatalf("the logrotate snippet has no %q:\n%s", old, snippet)
		}
		snippet = strings.Replace(snippet, old, new, 1)
	}
	if err := os.WriteFile(conf, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	gets := 0
	for range 3 {
		for range 5 {
			if _, err := h.get(t, "binance/mm-prod"); err != nil {
				t.Fatal(err)
			}
			gets++
		}
		rotate := exec.Command(logrotate, "--force", "--state", filepath.Join(h.dir, "logrotate.state"), conf)
		if b, err := rotate.CombinedOutput(); err != nil {
			t.Fatalf("logrotate: %v\n%s", err, b)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(path); err == nil {
				break // the agent reopened: nocreate leaves the path to it
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new audit file after SIGHUP:\n%s", out)
			}
		}
	}
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agent.Wait(); err != nil {
		t.Fatalf("keyward serve: %v\n%s", err, out)
	}
	files := []string{path + ".3.gz", path + ".2.gz", path + ".1", path}
	rep, err := audit.Verify(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Starts != 4 || !rep.Closed {
		t.Errorf("Verify(%v) = %+v; want no problem, 4 starts, closed", files, rep)
	}
	n := 0
	if _, err := audit.ReadFiles(files, audit.Filter{Op: "get"}, func(*audit.Record) error { n++; return nil }); err != nil || n != gets {
		t.Errorf("%d get events, %v; want %d", n, err, gets)
	}
}

// shippedLogrotate returns the logrotate snippet the package installs as
// /etc/logrotate.d/keyward, without its comments, and checks that
// docs/audit.md shows it as it is.
func shippedLogrotate(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "package", "keyward.logrotate"))
	if err != nil {
		t.Fatal(err)
	}
	var snippet strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			snippet.WriteString(line)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "audit.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```\n"+snippet.String()+"```\n") {
		t.Errorf("docs/audit.md does not show the logrotate snippet the package installs:\n%s", snippet.String())
	}
	return snippet.String()
}
