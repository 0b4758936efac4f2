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

// TestAuditLogrotate runs the logrotate snippet of docs/audit.md, as
// written but for the path and the signal's target, against a real agent,
// three times: the rotated files, one compressed later, verify with the
// current one as one trail that holds every get answered.
func TestAuditLogrotate(t *testing.T) {
	logrotate := testenv.Require(t, "logrotate")
	h := newAgentHost(t, false)
	agent, out := h.serve(t)
	waitForSocket(t, h.socket, out)
	path := filepath.Join(h.dir, "audit.log")
	conf := filepath.Join(h.dir, "logrotate.conf")
	snippet := docsLogrotate(t)
	snippet = strings.Replace(snippet, "/var/log/keyward/audit.log", path, 1)
	snippet = strings.Replace(snippet, "systemctl kill --kill-whom=main --signal=HUP keyward.service", "kill -HUP "+strconv.Itoa(agent.Process.Pid), 1)
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

// docsLogrotate returns the logrotate snippet of docs/audit.md.
func docsLogrotate(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "audit.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```\n/var/log/keyward/audit.log {\n")
	snippet, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/audit.md has no logrotate snippet for /var/log/keyward/audit.log")
	}
	return "/var/log/keyward/audit.log {\n" + snippet
}
