package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/client"
)

// Shim modes, as in internal/testenv (FaultDeviceRemoved, FaultHang,
// FaultDeviceError): one line of the fault-injecting module's control file.
const (
	shimPass          = "pass"
	shimDeviceRemoved = "fail 0x32 all"
	shimHang2s        = "hang 2000 all"
	shimDeviceError   = "fail 0x30 crypto"
)

// An action is a step of the fault schedule, at an offset from the start.
type action struct {
	at   time.Duration
	name string
	do   func() error
}

// schedule returns the fault schedule: a SIGHUP at 20% of the run, the
// flap from 40% (its middle gets a SIGHUP too), and a SIGHUP at 80%.
func (s *soak) schedule() []action {
	d := s.cfg.duration
	start := d * 4 / 10
	flap := s.cfg.flap
	acts := []action{
		{d * 2 / 10, "SIGHUP (before the flap)", s.hup},
		{start + flap/2, "SIGHUP (during the flap)", s.hup},
		{d * 8 / 10, "SIGHUP (after the flap)", s.hup},
	}
	if s.cfg.shimControl == "" {
		acts = append(acts,
			action{start, "token directory moved away", func() error { s.flapOn(); return s.moveToken(true) }},
			action{start + flap, "token directory back", func() error { err := s.moveToken(false); s.flapOff(); return err }},
		)
	} else {
		third := flap / 3
		acts = append(acts,
			action{start, "shim: device removed", func() error { s.flapOn(); return s.setShim(shimDeviceRemoved) }},
			action{start + third, "shim: every call hangs 2 s", func() error { return s.setShim(shimHang2s) }},
			action{start + 2*third, "shim: device error on crypto calls", func() error { return s.setShim(shimDeviceError) }},
			action{start + flap, "shim: pass", func() error { err := s.setShim(shimPass); s.flapOff(); return err }},
		)
	}
	return acts
}

// runSchedule runs the actions in time order until ctx ends.
func (s *soak) runSchedule(ctx context.Context, acts []action) {
	sortActions(acts)
	for _, a := range acts {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(s.start.Add(a.at))):
		}
		err := a.do()
		s.mu.Lock()
		s.events = append(s.events, event{at: s.since(), name: a.name, err: err})
		s.mu.Unlock()
		if err != nil {
			s.violate("fault schedule: %s: %v", a.name, err)
		}
	}
}

func sortActions(a []action) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].at < a[j-1].at; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

func (s *soak) flapOn() {
	s.mu.Lock()
	s.flapStart = s.since()
	s.mu.Unlock()
	s.phase.Store(phaseFlap)
}

func (s *soak) flapOff() {
	s.phase.Store(phaseAfter)
	s.mu.Lock()
	s.flapEnd = s.since()
	s.mu.Unlock()
}

func (s *soak) hup() error { return syscall.Kill(s.cfg.agentPID, syscall.SIGHUP) }

// moveToken moves SoftHSM's token directory away, as pulling the device
// would, or back (as hsm's recovery tests do: anything SoftHSM made in
// its place meanwhile goes first).
func (s *soak) moveToken(away bool) error {
	dir := s.cfg.tokenDir
	if away {
		return os.Rename(dir, dir+".away")
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(dir+".away", dir)
}

// setShim replaces the shim's control file; a new inode makes the shim
// re-read it at its next call.
func (s *soak) setShim(mode string) error {
	tmp := s.cfg.shimControl + ".tmp"
	if err := os.WriteFile(tmp, []byte(mode+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.cfg.shimControl)
}

// A rotation is one attempt to store the next version.
type rotation struct {
	at, end time.Duration
	via     string // "client" (client.Put) or "cli" (keyward rotate)
	want    uint32 // the version it should become: newest on disk + 1
	stored  uint32 // the version reported stored; 0: failed
	unsure  bool   // no answer (timeout): it may or may not be stored
	onDisk  bool   // refused as stored but not loaded: served once the backend answers
	err     string
}

// rotateLoop stores a new version every cfg.rotate until ctx ends,
// alternately through client.Put and `keyward rotate`.
func (s *soak) rotateLoop(ctx context.Context, admin *client.Client) {
	t := time.NewTicker(s.cfg.rotate)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.rotate(admin, i%2 == 1)
	}
}

func (s *soak) rotate(admin *client.Client, cli bool) {
	r := rotation{at: s.since(), via: "client"}
	newest, err := newestOnDisk(s.cfg.store, s.cfg.name)
	if err != nil {
		s.violate("reading the store: %v", err)
		return
	}
	r.want = newest + 1
	value := valueOf(r.want)
	defer clear(value)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.rotateTimeout)
	defer cancel()
	var v uint32
	if cli {
		r.via = "cli"
		v, err = s.rotateCLI(ctx, value)
	} else {
		var st *client.Stored
		st, err = admin.Put(ctx, s.cfg.name, value, client.PutOptions{NewVersion: true, MustExist: true, Grace: s.cfg.grace})
		if err == nil {
			v = st.Version
		}
	}
	r.end = s.since()
	switch {
	case err == nil:
		r.stored = v
		s.raiseMustServe(v)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		r.unsure = true
		r.err = "no answer within " + s.cfg.rotateTimeout.String()
	default:
		var ce *client.Error
		if errors.As(err, &ce) {
			r.err = ce.Code.String() + ": " + ce.Message
		} else {
			r.err = err.Error()
		}
		r.onDisk = strings.Contains(r.err, "is stored but")
	}
	s.mu.Lock()
	s.rotations = append(s.rotations, r)
	s.mu.Unlock()
}

var storedLine = regexp.MustCompile(`version ([0-9]+)`)

// rotateCLI runs `keyward rotate`, the value on its stdin, and returns
// the version it reports stored.
func (s *soak) rotateCLI(ctx context.Context, value []byte) (uint32, error) {
	cmd := exec.CommandContext(ctx, s.cfg.keyward, "rotate", "--grace", s.cfg.grace.String(), s.cfg.name)
	cmd.Stdin = bytes.NewReader(value)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		msg := strings.TrimSpace(errOut.String())
		msg, _, _ = strings.Cut(msg, "\n")
		return 0, fmt.Errorf("keyward rotate: %v: %s", err, msg)
	}
	m := storedLine.FindSubmatch(out.Bytes())
	if m == nil {
		return 0, fmt.Errorf("keyward rotate exited 0 but printed no version: %q", out.String())
	}
	v, err := strconv.ParseUint(string(m[1]), 10, 32)
	return uint32(v), err
}

func (s *soak) raiseMustServe(v uint32) {
	for {
		old := s.mustServe.Load()
		if v <= old || s.mustServe.CompareAndSwap(old, v) {
			return
		}
	}
}

// newestOnDisk returns the newest version of name in the store directory,
// whose files are NAME@VERSION.kwe with '/' in NAME written as '+'
// (store.Store's documented layout).
func newestOnDisk(dir, name string) (uint32, error) {
	paths, err := filepath.Glob(filepath.Join(dir, strings.ReplaceAll(name, "/", "+")+"@*.kwe"))
	if err != nil {
		return 0, err
	}
	var newest uint32
	for _, p := range paths {
		v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), strings.ReplaceAll(name, "/", "+")+"@"), ".kwe"), 10, 32)
		if err == nil {
			newest = max(newest, uint32(v))
		}
	}
	if newest == 0 {
		return 0, fmt.Errorf("no version of %s in %s", name, dir)
	}
	return newest, nil
}

// A healthSample is one Health answer.
type healthSample struct {
	at       time.Duration
	ok       bool // answered, and the backend is healthy
	answered bool
	problems []client.Problem
}

// healthLoop asks the agent's health every 100 ms until ctx ends.
func (s *soak) healthLoop(ctx context.Context, c *client.Client) {
	for ctx.Err() == nil {
		at := s.since()
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		h, err := c.Health(hctx)
		cancel()
		smp := healthSample{at: at, answered: err == nil}
		if err == nil {
			smp.ok = h.BackendOK
			smp.problems = h.Problems
		}
		s.mu.Lock()
		s.health = append(s.health, smp)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// A statusRun is one run of `keyward status`.
type statusRun struct {
	at, end time.Duration
	code    int
	problem string // its first "health:" line, when it exited non-zero
}

// statusLoop runs `keyward status` every second until ctx ends.
func (s *soak) statusLoop(ctx context.Context) {
	for ctx.Err() == nil {
		r := s.status()
		s.mu.Lock()
		s.statuses = append(s.statuses, r)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *soak) status() statusRun {
	r := statusRun{at: s.since()}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.keyward, "status")
	out, err := cmd.CombinedOutput()
	r.end = s.since()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code = -1
	}
	if r.code != 0 {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "health:") || strings.HasPrefix(l, "keyward: error:") {
				r.problem = strings.TrimSpace(l)
				break
			}
		}
	}
	return r
}
