// Command soak drives a running keyward agent as trading processes do
// while its HSM goes away and comes back, then checks what the agent
// answered and prints the checks and numbers. scripts/soak.sh builds the
// agent, makes its token, store and policy, starts it and runs this; see
// docs/operations.md, "Soak test".
//
// The load: -conns connections, each its own socket and client.New,
// getting one secret in a loop with a -deadline per request. Every
// version's value is "soak-value-" and its number, so each answer is
// checked against its version. A rotation every -rotate through the agent
// (alternately client.Put and `keyward rotate`), with a -grace for the
// previous version. The faults: SIGHUP at 20% and 80% of the run and in
// the middle of the flap; the flap itself from 40%, for -flap: SoftHSM's
// token directory moved away and back (-token-dir), or the PKCS #11 shim
// of internal/testenv switched to device removed, a 2 s hang on every
// call, and device error, a third of the flap each (-shim-control).
// Meanwhile the agent's health is read every 100 ms and `keyward status`
// run every second. At the end the agent is stopped with SIGTERM and its
// audit trail and log are read.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyward/keyward/client"
)

type config struct {
	socket, name, keyward, store string
	tokenDir, shimControl        string
	audit, agentLog              string
	agentPID                     int
	conns                        int
	duration, flap, rotate       time.Duration
	grace, deadline              time.Duration
	rotateTimeout                time.Duration
}

// The soak's phases, for latencies and errors.
const (
	phaseBefore int32 = iota
	phaseFlap
	phaseAfter
)

type soak struct {
	cfg   config
	start time.Time

	phase     atomic.Int32
	mustServe atomic.Uint32 // the newest version a rotation reported stored (1: the one put before)

	mu         sync.Mutex
	flapStart  time.Duration
	flapEnd    time.Duration
	events     []event
	rotations  []rotation
	health     []healthSample
	statuses   []statusRun
	violations []string
}

type event struct {
	at   time.Duration
	name string
	err  error
}

func (s *soak) since() time.Duration { return time.Since(s.start) }

// violate records a failed check that is not in the table.
func (s *soak) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func main() {
	var cfg config
	flag.StringVar(&cfg.socket, "socket", "", "the agent's `socket`")
	flag.StringVar(&cfg.name, "name", "soak/key", "the secret's `name`; version 1 must hold soak-value-1")
	flag.StringVar(&cfg.keyward, "keyward", "keyward", "the keyward `binary`, for status and rotate")
	flag.StringVar(&cfg.store, "store", "", "the store `directory`, to read the newest version from")
	flag.StringVar(&cfg.tokenDir, "token-dir", "", "SoftHSM's token `directory`, moved away during the flap")
	flag.StringVar(&cfg.shimControl, "shim-control", "", "the PKCS #11 shim's control `file`, switched during the flap")
	flag.StringVar(&cfg.audit, "audit", "", "the agent's audit log `file`")
	flag.StringVar(&cfg.agentLog, "agent-log", "", "the agent's log `file` (its stderr)")
	flag.IntVar(&cfg.agentPID, "agent-pid", 0, "the agent's `pid`")
	flag.IntVar(&cfg.conns, "conns", 64, "`number` of connections")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long the load runs")
	flag.DurationVar(&cfg.flap, "flap", 0, "how long the HSM is gone (default: a sixth of -duration, at most 10s; with the shim a quarter, at most 12s)")
	flag.DurationVar(&cfg.rotate, "rotate", 2*time.Second, "time between rotations")
	flag.DurationVar(&cfg.grace, "grace", 30*time.Second, "grace period of the previous version at each rotation")
	flag.DurationVar(&cfg.deadline, "deadline", 2*time.Second, "deadline of each get")
	flag.DurationVar(&cfg.rotateTimeout, "rotate-timeout", 15*time.Second, "deadline of each rotation")
	flag.Parse()
	if cfg.socket == "" || cfg.store == "" || cfg.agentPID == 0 || cfg.audit == "" || cfg.agentLog == "" ||
		(cfg.tokenDir == "") == (cfg.shimControl == "") || cfg.conns < 1 || cfg.duration < 10*time.Second {
		fmt.Fprintln(os.Stderr, "soak: need -socket, -store, -agent-pid, -audit, -agent-log, exactly one of -token-dir and -shim-control, -conns >= 1 and -duration >= 10s")
		flag.Usage()
		os.Exit(2)
	}
	if cfg.flap == 0 {
		if cfg.shimControl != "" {
			cfg.flap = min(12*time.Second, cfg.duration/4)
		} else {
			cfg.flap = min(10*time.Second, cfg.duration/6)
		}
	}
	s := &soak{cfg: cfg}
	s.mustServe.Store(1)
	r, err := s.run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	if !r.print(os.Stdout) {
		os.Exit(1)
	}
}

// run runs the load and the schedule, the final checks, stops the agent
// and reads its logs.
func (s *soak) run() (*report, error) {
	startTime, err := procStartTime(s.cfg.agentPID)
	if err != nil {
		return nil, fmt.Errorf("the agent (pid %d): %w", s.cfg.agentPID, err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := client.Dial(dctx, s.cfg.socket)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	monitor, err := client.Dial(dctx, s.cfg.socket)
	if err != nil {
		return nil, err
	}
	defer monitor.Close()

	s.start = time.Now()
	workers := make([]*worker, s.cfg.conns)
	for i := range workers {
		workers[i] = &worker{s: s, id: i}
		if err := workers[i].connect(); err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
	}

	load, stopLoad := context.WithCancel(context.Background())
	var loadWG sync.WaitGroup
	for _, w := range workers {
		loadWG.Go(func() { w.run(load) })
	}
	side, stopSide := context.WithCancel(context.Background())
	var sideWG sync.WaitGroup
	sideWG.Go(func() { s.rotateLoop(side, admin) })
	sideWG.Go(func() { s.healthLoop(side, monitor) })
	sideWG.Go(func() { s.statusLoop(side) })
	sideWG.Go(func() { s.runSchedule(side, s.schedule()) })

	time.Sleep(time.Until(s.start.Add(s.cfg.duration)))
	stopSide() // rotations end first: the last one is then what must be served
	sideWG.Wait()
	// A moment for gets after the last rotation, then stop the load.
	time.Sleep(200 * time.Millisecond)
	stopLoad()
	loadWG.Wait()
	end := s.since()
	if s.phase.Load() == phaseFlap {
		// The schedule did not finish (a run too short): put the token back.
		s.violate("the flap had not ended when the run did")
		if s.cfg.shimControl != "" {
			s.setShim(shimPass)
		} else {
			s.moveToken(false)
		}
		s.flapOff()
	}

	r := &report{s: s, workers: workers, end: end}
	// The last rotation must be served, on every connection.
	r.newestOnDisk, err = newestOnDisk(s.cfg.store, s.cfg.name)
	if err != nil {
		s.violate("reading the store: %v", err)
	}
	for _, w := range workers {
		if w.c == nil {
			if err := w.connect(); err != nil {
				r.finalErrs++
				continue
			}
		}
		v, err := w.get()
		if err != nil {
			r.finalErrs++
			continue
		}
		r.finalVersions = append(r.finalVersions, v)
	}
	r.finalStatus = s.status()

	// Same process all along?
	now, err := procStartTime(s.cfg.agentPID)
	r.samePID = err == nil && now == startTime
	if !r.samePID {
		s.violate("the agent (pid %d) is not the process started: %v", s.cfg.agentPID, err)
	}

	// Stop the agent; its audit trail is complete once it has exited.
	for _, w := range workers {
		w.drop()
	}
	admin.Close()
	monitor.Close()
	if err := syscall.Kill(s.cfg.agentPID, syscall.SIGTERM); err != nil {
		s.violate("SIGTERM to the agent: %v", err)
	}
	stopped := time.Now()
	for {
		st, err := procState(s.cfg.agentPID)
		if err != nil || st == "Z" {
			break
		}
		if time.Since(stopped) > 20*time.Second {
			s.violate("the agent did not exit within 20s of SIGTERM")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stopTime = time.Since(stopped)
	if err := r.readLogs(); err != nil {
		return nil, err
	}
	return r, nil
}

// procStartTime returns a process's start time in clock ticks since
// boot (field 22 of /proc/PID/stat), which tells it from a process that
// reused its pid.
func procStartTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if f[0] == "Z" {
		return 0, fmt.Errorf("pid %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func procState(pid int) (string, error) {
	f, err := procStat(pid)
	if err != nil {
		return "", err
	}
	return f[0], nil
}

// procStat returns the fields of /proc/PID/stat after the command name
// (the state first).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}
