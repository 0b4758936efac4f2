package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// report holds what the run saw and decides the checks.
type report struct {
	s       *soak
	workers []*worker
	end     time.Duration

	newestOnDisk  uint32
	finalVersions []uint32
	finalErrs     int
	finalStatus   statusRun
	samePID       bool
	stopTime      time.Duration

	audit auditSummary
	// agentLogLeaks counts lines of the agent's log holding a value.
	agentLogLeaks int
}

type auditSummary struct {
	getAllow, getOther int
	backend            []backendEvent
	leaks              int // lines holding a secret value
}

type backendEvent struct {
	at       time.Duration
	decision string
}

// readLogs reads the audit trail and the agent's log, once the agent has
// exited.
func (r *report) readLogs() error {
	s := r.s
	err := scanLines(s.cfg.audit, func(line []byte) {
		if bytes.Contains(line, []byte(valuePrefix)) {
			r.audit.leaks++
		}
		switch {
		case bytes.Contains(line, []byte(`"op":"get"`)):
			if bytes.Contains(line, []byte(`"decision":"allow"`)) {
				r.audit.getAllow++
			} else {
				r.audit.getOther++
			}
		case bytes.Contains(line, []byte(`"op":"backend"`)):
			var ev struct {
				Time     time.Time `json:"time"`
				Decision string    `json:"decision"`
			}
			if json.Unmarshal(line, &ev) == nil {
				r.audit.backend = append(r.audit.backend, backendEvent{at: ev.Time.Sub(s.start), decision: ev.Decision})
			}
		}
	})
	if err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	err = scanLines(s.cfg.agentLog, func(line []byte) {
		if bytes.Contains(line, []byte(valuePrefix)) {
			r.agentLogLeaks++
		}
	})
	if err != nil {
		return fmt.Errorf("reading the agent's log: %w", err)
	}
	return nil
}

func scanLines(path string, fn func([]byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			fn(line)
		}
		switch {
		case err == io.EOF:
			return nil
		case err == bufio.ErrBufferFull:
			// A line over 1 MiB: the rest of it is read as more lines,
			// which is enough for the substring checks.
		case err != nil:
			return err
		}
	}
}

// A check is one row of the table.
type check struct {
	name, got, want string
	ok              bool
}

// windows are the soak's time windows, since its start.
type windows struct {
	flapStart, flapEnd time.Duration
	detected           time.Duration // first health answer after the flap began saying the backend is down; -1: never
	settled            time.Duration // first health answer saying it is healthy after that; -1: never
	recovered          time.Duration // first one also with no problem (every secret served from its newest version); -1: never
	hardDown           [][2]time.Duration
}

func (r *report) windows() windows {
	s := r.s
	w := windows{flapStart: s.flapStart, flapEnd: s.flapEnd, detected: -1, settled: -1, recovered: -1}
	for _, h := range s.health {
		switch {
		case !h.answered:
		case w.detected < 0 && h.at >= w.flapStart && !h.ok:
			w.detected = h.at
		case w.detected >= 0 && w.settled < 0 && h.at >= w.flapEnd && h.ok:
			w.settled = h.at
		}
		if w.settled >= 0 && w.recovered < 0 && h.answered && h.ok && len(h.problems) == 0 {
			w.recovered = h.at
		}
	}
	// Where the HSM cannot work at all. With the shim: the device-removed
	// and device-error thirds, where every call, or every cryptographic
	// call, fails at once (a hang is slow, not gone: an operation may
	// still succeed, slowly). With the token directory moved away: from
	// the moment the agent has seen it gone (its health check, or a
	// rotation refused) to the return; SoftHSM may go on for a moment on
	// a session opened before, and what it does then is real work.
	if s.cfg.shimControl == "" {
		seen := w.flapEnd
		if w.detected >= 0 {
			seen = min(seen, w.detected)
		}
		s.mu.Lock()
		for _, rt := range s.rotations {
			if rt.at >= w.flapStart && rt.stored == 0 && !rt.unsure {
				seen = min(seen, rt.end)
				break
			}
		}
		s.mu.Unlock()
		w.hardDown = [][2]time.Duration{{seen, w.flapEnd}}
	} else {
		third := (w.flapEnd - w.flapStart) / 3
		w.hardDown = [][2]time.Duration{{w.flapStart, w.flapStart + third}, {w.flapStart + 2*third, w.flapEnd}}
	}
	return w
}

// print prints the timeline, the numbers and the checks, and reports
// whether every check passed.
func (r *report) print(out io.Writer) bool {
	s := r.s
	w := r.windows()
	var checks []check
	add := func(name, got, want string, ok bool) { checks = append(checks, check{name, got, want, ok}) }
	secs := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return fmt.Sprintf("%.2fs", d.Seconds())
	}

	// Merge the workers.
	var all, flap hist
	var answers, wrong uint64
	var errs []getError
	var transitions []transition
	var older []olderAnswer
	reconnects, dropped := 0, 0
	for _, wk := range r.workers {
		all.merge(&wk.all)
		flap.merge(&wk.flap)
		answers += wk.answers
		wrong += wk.wrongValue
		errs = append(errs, wk.errs...)
		transitions = append(transitions, wk.transitions...)
		older = append(older, wk.older...)
		reconnects += wk.reconnects
		dropped += wk.errsDropped
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].at < errs[j].at })

	// Errors by window.
	settledOrEnd := w.settled
	if settledOrEnd < 0 {
		settledOrEnd = r.end
	}
	type window struct {
		name  string
		codes map[string]int
		n     int
	}
	before := &window{name: "before the flap", codes: map[string]int{}}
	during := &window{name: "during the flap", codes: map[string]int{}}
	settling := &window{name: "token back, not yet healthy", codes: map[string]int{}}
	after := &window{name: "after the first healthy check", codes: map[string]int{}}
	rateLimited, closed := 0, 0
	for _, e := range errs {
		win := after
		switch {
		case e.at < w.flapStart:
			win = before
		case e.at < w.flapEnd:
			win = during
		case e.at < settledOrEnd:
			win = settling
		}
		win.n++
		win.codes[e.code]++
		switch e.code {
		case "rate_limited":
			rateLimited++
		case "closed_by_agent":
			closed++
		}
	}
	codes := func(win *window) string {
		if win.n == 0 {
			return "0"
		}
		var parts []string
		for c, n := range win.codes {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
		slices.Sort(parts)
		return fmt.Sprintf("%d (%s)", win.n, strings.Join(parts, ", "))
	}

	// Versions: going backwards, and what was served during the flap.
	maxBefore := uint32(1)
	for _, t := range transitions {
		if t.end < w.flapStart {
			maxBefore = max(maxBefore, t.to)
		}
	}
	s.mu.Lock()
	rotations := slices.Clone(s.rotations)
	statuses := slices.Clone(s.statuses)
	events := slices.Clone(s.events)
	violations := slices.Clone(s.violations)
	s.mu.Unlock()
	// mayServe reports whether the agent may serve v in an answer that
	// ended at by: v was served before the flap, or a rotation begun
	// before by reported it stored (or got no answer). A rotation refused
	// as "stored but not loaded" left v on disk, to be loaded when the
	// backend answers: that is allowed outside the hard outage.
	inHardDown := func(at time.Duration) bool {
		for _, hd := range w.hardDown {
			if at >= hd[0] && at < hd[1] {
				return true
			}
		}
		return false
	}
	mayServe := func(v uint32, by time.Duration) bool {
		if v <= maxBefore {
			return true
		}
		for _, rt := range rotations {
			if rt.at < by && (rt.stored == v || rt.unsure && rt.want == v || rt.onDisk && rt.want == v && !inHardDown(by)) {
				return true
			}
		}
		return false
	}
	backwardsOK, backwardsBad, notHeld, notStored := 0, 0, 0, 0
	servedAfterRefusal := map[uint32]bool{}
	for _, t := range transitions {
		if t.from != 0 && t.to < t.from {
			inGrace := !t.expires.IsZero() && s.start.Add(t.end).Before(t.expires)
			if t.at >= w.flapStart && t.at < settledOrEnd && inGrace {
				backwardsOK++
			} else {
				backwardsBad++
			}
		}
		switch {
		case mayServe(t.to, t.end):
			for _, rt := range rotations {
				if rt.onDisk && rt.want == t.to {
					servedAfterRefusal[t.to] = true
				}
			}
		case inHardDown(t.end):
			notHeld++
		default:
			notStored++
		}
	}

	// Rotations.
	stored, refused, unsure, mismatched, storedInOutage := 0, 0, 0, 0, 0
	var lastStored uint32
	var outageRotations int
	for _, rt := range rotations {
		switch {
		case rt.stored != 0:
			stored++
			lastStored = max(lastStored, rt.stored)
			if rt.stored != rt.want {
				mismatched++
			}
		case rt.unsure:
			unsure++
		default:
			refused++
		}
		for _, hd := range w.hardDown {
			if rt.at >= hd[0] && rt.end <= hd[1] {
				outageRotations++
				if rt.stored != 0 {
					storedInOutage++
				}
			}
		}
	}

	// Status runs.
	statusBefore, statusAfter, firstDown, firstUp := 0, 0, time.Duration(-1), time.Duration(-1)
	statusDown := 0
	for _, st := range statuses {
		switch {
		case st.end < w.flapStart:
			if st.code != 0 {
				statusBefore++
			}
		case w.recovered >= 0 && st.at >= w.recovered:
			if st.code != 0 {
				statusAfter++
			}
		}
		if st.at >= w.flapStart && st.code == 1 {
			statusDown++
			if firstDown < 0 {
				firstDown = st.end
			}
		}
		if firstDown >= 0 && firstUp < 0 && st.at >= w.flapEnd && st.code == 0 {
			firstUp = st.end
		}
	}

	// The backend seen down outside the flap and its recovery.
	downOutside := 0
	for _, h := range s.health {
		if h.answered && !h.ok && (h.at < w.flapStart || w.settled >= 0 && h.at >= w.settled) {
			downOutside++
		}
	}

	// Audit trail.
	var auditDown, auditUp time.Duration = -1, -1
	for _, b := range r.audit.backend {
		if b.decision == "error" && auditDown < 0 && b.at >= w.flapStart {
			auditDown = b.at
		}
		if b.decision == "allow" && auditDown >= 0 && auditUp < 0 && b.at >= auditDown {
			auditUp = b.at
		}
	}

	// The timeline.
	fmt.Fprintf(out, "\ntimeline (seconds since the load began)\n")
	type line struct {
		at   time.Duration
		text string
	}
	var tl []line
	for _, e := range events {
		text := e.name
		if e.err != nil {
			text += ": " + e.err.Error()
		}
		tl = append(tl, line{e.at, text})
	}
	if w.detected >= 0 {
		tl = append(tl, line{w.detected, "agent's health: backend down"})
	}
	if w.settled >= 0 {
		tl = append(tl, line{w.settled, "agent's health: backend healthy again"})
	}
	if w.recovered >= 0 {
		tl = append(tl, line{w.recovered, "agent's health: every secret served from its newest version"})
	}
	if firstDown >= 0 {
		tl = append(tl, line{firstDown, "keyward status: first exit 1"})
	}
	if firstUp >= 0 {
		tl = append(tl, line{firstUp, "keyward status: first exit 0 after the flap"})
	}
	if auditDown >= 0 {
		tl = append(tl, line{auditDown, "audit: backend unavailable"})
	}
	if auditUp >= 0 {
		tl = append(tl, line{auditUp, "audit: backend available"})
	}
	for _, rt := range rotations {
		if rt.at >= w.flapStart-2*s.cfg.rotate && rt.at < settledOrEnd+2*s.cfg.rotate {
			what := fmt.Sprintf("stored version %d", rt.stored)
			if rt.stored == 0 {
				what = "FAILED: " + rt.err
			}
			tl = append(tl, line{rt.end, fmt.Sprintf("rotation (%s, began %.2f): %s", rt.via, rt.at.Seconds(), what)})
		}
	}
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].at < tl[j].at })
	for _, l := range tl {
		fmt.Fprintf(out, "  %7.2f  %s\n", l.at.Seconds(), l.text)
	}

	// The numbers.
	fmt.Fprintf(out, "\nnumbers\n")
	fmt.Fprintf(out, "  connections %d, load %.1fs, flap %.1fs (%s)\n", s.cfg.conns, r.end.Seconds(), (w.flapEnd - w.flapStart).Seconds(), r.faultKind())
	fmt.Fprintf(out, "  get answers %d (%.0f/s); errors %d; reconnects %d\n", answers, float64(answers)/r.end.Seconds(), len(errs)+dropped, reconnects)
	fmt.Fprintf(out, "  get latency p50 %s, p99 %s, p99.9 %s, max %s\n", all.quantile(0.5), all.quantile(0.99), all.quantile(0.999), all.max)
	fmt.Fprintf(out, "  during the flap: %d gets, p50 %s, p99 %s, max %s\n", flap.count, flap.quantile(0.5), flap.quantile(0.99), flap.max)
	fmt.Fprintf(out, "  time to detect the loss (health says down): %s; to the first `keyward status` exit 1: %s\n",
		secs(sub(w.detected, w.flapStart)), secs(sub(firstDown, w.flapStart)))
	fmt.Fprintf(out, "  time to recover after the token returned: backend healthy %s, every secret current %s, `keyward status` exit 0 %s\n",
		secs(sub(w.settled, w.flapEnd)), secs(sub(w.recovered, w.flapEnd)), secs(sub(firstUp, w.flapEnd)))
	fmt.Fprintf(out, "  rotations %d: stored %d, refused %d, no answer %d; last stored version %d, newest on disk %d\n",
		len(rotations), stored, refused, unsure, lastStored, r.newestOnDisk)
	fmt.Fprintf(out, "  versions served on each connection: %d changes; backwards within grace during the flap: %d\n", len(transitions), backwardsOK)
	fmt.Fprintf(out, "  audit: %d get events allowed, %d not; %d backend events; agent stopped %s after SIGTERM\n",
		r.audit.getAllow, r.audit.getOther, len(r.audit.backend), r.stopTime.Round(time.Millisecond))
	for _, win := range []*window{before, during, settling, after} {
		fmt.Fprintf(out, "  get errors %s: %s\n", win.name, codes(win))
	}

	// The checks.
	graceNote := fmt.Sprintf("0 (flap %s < grace %s: a held version is always servable)", s.cfg.flap, s.cfg.grace)
	flapErrorsOK := during.n == 0 || s.cfg.flap >= s.cfg.grace
	add("get errors before the flap", codes(before), "0", before.n == 0)
	add("get errors during the flap", codes(during), graceNote, flapErrorsOK)
	add("get errors after the token returned, before a healthy check", codes(settling), "any (settling)", true)
	add("get errors after the first healthy check", codes(after), "0", after.n == 0)
	if dropped > 0 {
		add("get errors not recorded (over the per-connection cap)", fmt.Sprint(dropped), "0", false)
	}
	add("answers whose value is not their version's", fmt.Sprint(wrong), "0", wrong == 0)
	add("rate_limited answers", fmt.Sprint(rateLimited), "0", rateLimited == 0)
	add("connections closed by the agent", fmt.Sprint(closed), "0", closed == 0)
	add("versions going backwards on a connection, outside the flap or past grace", fmt.Sprint(backwardsBad), "0", backwardsBad == 0)
	add("gets answered older than a rotation already reported stored", fmt.Sprint(len(older)), "0", len(older) == 0)
	add("versions served while the HSM was down that the agent did not hold", fmt.Sprint(notHeld), "0", notHeld == 0)
	add("versions served that no rotation stored", fmt.Sprint(notStored), "0", notStored == 0)
	add("rotations reported stored as another version than the next", fmt.Sprint(mismatched), "0", mismatched == 0)
	add("rotations while the HSM was down reported stored", fmt.Sprintf("%d of %d", storedInOutage, outageRotations),
		"0 of >= 1", storedInOutage == 0 && outageRotations > 0)
	add("health checks saying the backend is down before the flap or after it recovered", fmt.Sprint(downOutside), "0", downOutside == 0)
	add("backend seen down after the flap began", secs(sub(w.detected, w.flapStart)), "yes", w.detected >= 0)
	add("backend healthy again after the token returned, no restart", fmt.Sprintf("%s, same pid %v", secs(sub(w.settled, w.flapEnd)), r.samePID),
		"yes, same pid", w.settled >= 0 && r.samePID)
	add("every secret served from its newest version again", secs(sub(w.recovered, w.flapEnd)), "yes", w.recovered >= 0)
	finalOK := r.finalErrs == 0 && len(r.finalVersions) == len(r.workers)
	for _, v := range r.finalVersions {
		finalOK = finalOK && v == r.newestOnDisk
	}
	add("last rotation served at the end, on every connection", finalSummary(r.finalVersions, r.finalErrs),
		fmt.Sprintf("version %d x %d", r.newestOnDisk, len(r.workers)), finalOK && r.newestOnDisk == lastStored)
	add("keyward status before the flap", fmt.Sprintf("%d non-zero", statusBefore), "all 0", statusBefore == 0)
	add("keyward status during the flap", fmt.Sprintf("%d exit 1", statusDown), ">= 1 exit 1", statusDown > 0)
	add("keyward status after recovery, and at the end", fmt.Sprintf("%d non-zero; end %d", statusAfter, r.finalStatus.code),
		"all 0; end 0", statusAfter == 0 && r.finalStatus.code == 0)
	add("audit: backend unavailable, then available", fmt.Sprintf("%s, %s", secs(auditDown), secs(auditUp)), "both", auditDown >= 0 && auditUp >= 0)
	add("audit: every get answer recorded", fmt.Sprintf("%d allowed for %d answers", r.audit.getAllow, answers),
		"equal (>= with timeouts)", r.audit.getAllow == int(answers) || r.audit.getAllow > int(answers) && len(errs) > 0)
	add("secret values in the audit log and the agent's log", fmt.Sprintf("%d, %d lines", r.audit.leaks, r.agentLogLeaks), "0, 0",
		r.audit.leaks == 0 && r.agentLogLeaks == 0)
	if len(servedAfterRefusal) > 0 {
		var vs []string
		for v := range servedAfterRefusal {
			vs = append(vs, fmt.Sprint(v))
		}
		slices.Sort(vs)
		fmt.Fprintf(out, "  note: versions served after their rotation was refused as stored but not loaded: %s\n", strings.Join(vs, ", "))
	}

	fmt.Fprintf(out, "\nchecks\n")
	pass := true
	nameW, gotW := 0, 0
	for _, c := range checks {
		nameW, gotW = max(nameW, len(c.name)), max(gotW, len(c.got))
	}
	for _, c := range checks {
		verdict := "ok"
		if !c.ok {
			verdict, pass = "FAIL", false
		}
		fmt.Fprintf(out, "  %-4s  %-*s  %-*s  want %s\n", verdict, nameW, c.name, gotW, c.got, c.want)
	}
	for _, v := range violations {
		fmt.Fprintf(out, "  FAIL  %s\n", v)
		pass = false
	}
	if !pass {
		r.printDetails(out, errs, older, rotations, statuses, w)
	}
	return pass
}

// printDetails prints the first failures of each kind, for a failed run.
func (r *report) printDetails(out io.Writer, errs []getError, older []olderAnswer, rotations []rotation, statuses []statusRun, w windows) {
	fmt.Fprintf(out, "\ndetails\n")
	for i, e := range errs {
		if i == 10 {
			fmt.Fprintf(out, "  ... %d more get errors\n", len(errs)-10)
			break
		}
		fmt.Fprintf(out, "  get error at %.3f (answered %.3f): %s: %s\n", e.at.Seconds(), e.end.Seconds(), e.code, e.msg)
	}
	for i, o := range older {
		if i == 10 {
			break
		}
		fmt.Fprintf(out, "  get at %.3f answered version %d, after version %d was reported stored\n", o.at.Seconds(), o.got, o.stored)
	}
	for _, rt := range rotations {
		for _, hd := range w.hardDown {
			if rt.at >= hd[0] && rt.end <= hd[1] && rt.stored != 0 {
				fmt.Fprintf(out, "  rotation (%s) %.2f-%.2f while the HSM was down: stored version %d\n", rt.via, rt.at.Seconds(), rt.end.Seconds(), rt.stored)
			}
		}
	}
	for _, st := range append(statuses, r.finalStatus) {
		bad := st.end < w.flapStart && st.code != 0 || w.recovered >= 0 && st.at >= w.recovered && st.code != 0
		if bad {
			fmt.Fprintf(out, "  keyward status at %.2f: exit %d: %s\n", st.at.Seconds(), st.code, st.problem)
		}
	}
}

func (r *report) faultKind() string {
	if r.s.cfg.shimControl != "" {
		return "PKCS #11 shim: device removed, 2 s hangs, device error"
	}
	return "token directory moved away"
}

// sub returns a-b, or -1 when a is -1 (never).
func sub(a, b time.Duration) time.Duration {
	if a < 0 {
		return -1
	}
	return a - b
}

func finalSummary(vs []uint32, errs int) string {
	counts := map[uint32]int{}
	for _, v := range vs {
		counts[v]++
	}
	var parts []string
	for v, n := range counts {
		parts = append(parts, fmt.Sprintf("version %d x %d", v, n))
	}
	slices.Sort(parts)
	if errs > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", errs))
	}
	return strings.Join(parts, ", ")
}
