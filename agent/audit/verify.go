package audit

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Kinds of [Problem].
const (
	KindDamaged   = "damaged"   // a line that is not an audit event
	KindEdited    = "edited"    // an event changed after it was written
	KindDeleted   = "deleted"   // events missing
	KindInserted  = "inserted"  // an event the agent did not write there
	KindReordered = "reordered" // an event moved
	KindUnlinked  = "unlinked"  // a new trail starts in the middle of one
	KindCut       = "cut"       // a recorded head is not in the trail
)

// A Problem is a place where a trail is not what the agent wrote.
type Problem struct {
	File   string    `json:"file"`
	Line   int       `json:"line"`
	Time   time.Time `json:"time,omitzero"` // of the event at that line, when it has one
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// A Mark is an event's place in a trail.
type Mark struct {
	File string    `json:"file"`
	Line int       `json:"line"`
	Time time.Time `json:"time"`
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
}

// A HeadCheck says where a head recorded earlier is in the trail.
type HeadCheck struct {
	Hash  string `json:"hash"`
	Found *Mark  `json:"found"` // nil: not in the trail
}

// A Report is the result of [Verify].
type Report struct {
	Files  []string `json:"files"`
	Events int      `json:"events"`
	Starts int      `json:"starts"` // start events: the agent opening the trail, or a new file
	First  *Mark    `json:"first"`  // nil for a trail with no event
	// Continues is the head, in an earlier file, that the first event
	// continues from; nil when the trail begins in the first file.
	Continues *Head `json:"continues"`
	// Head is the newest event: record it (off the host) to check later
	// that the trail was neither cut nor rewritten up to it.
	Head *Mark `json:"head"`
	// Closed: the trail ends with a stop or a rotate event. Otherwise the
	// agent is writing it, was killed, or its end was cut.
	Closed   bool        `json:"closed"`
	Heads    []HeadCheck `json:"heads,omitempty"`
	Problems []Problem   `json:"problems"`
}

// OK reports whether the trail is as the agent wrote it.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// IsHash reports whether s is written as the chain writes hashes: 64
// lower-case hex digits.
func IsHash(s string) bool { return isHash(s) }

// Verify reads the file trails at paths (a name ending in .gz is
// decompressed), in the order given, as one trail, and reports each place
// where it is not what the agent wrote: a line that is not an event, an
// event edited, deleted, inserted or moved, a new trail starting in the
// middle of one. Each head in heads, recorded earlier, must be an event of
// the trail, or the trail was cut or rewritten since. The error is for a
// file that cannot be read.
func Verify(paths []string, heads []string) (*Report, error) {
	v := newVerifier(paths)
	for _, h := range heads {
		if !isHash(h) {
			return nil, fmt.Errorf("head %q is not a hash of the trail (64 lower-case hex digits)", h)
		}
		if _, dup := v.heads[h]; dup {
			continue
		}
		v.heads[h] = len(v.rep.Heads)
		v.rep.Heads = append(v.rep.Heads, HeadCheck{Hash: h})
	}
	for i, p := range paths {
		v.fileIndex = i
		if err := readFileEvents(p, v.event, v.damaged); err != nil {
			return nil, err
		}
	}
	v.finish()
	return v.rep, nil
}

// A verifier remembers the last window lines, to tell an event inserted
// or repeated from one deleted, and the last maxGaps runs of missing
// events, to tell an event moved from one deleted.
const (
	window  = 64
	maxGaps = 4096
)

func newVerifier(files []string) *verifier {
	return &verifier{
		rep:    &Report{Files: files, Problems: []Problem{}},
		recent: map[string]Mark{},
		heads:  map[string]int{},
	}
}

type verifier struct {
	rep       *Report
	fileIndex int
	last      *Mark // the newest event the chain accepted
	lastOp    string
	recent    map[string]Mark // the last lines, by hash
	order     []string        // their hashes, oldest first
	gaps      []gap
	heads     map[string]int // index in rep.Heads
	problems  []located
}

// gap is a run of sequence numbers missing between two events.
type gap struct {
	from, to      uint64
	before, after Mark
}

// located is a problem with the index of its file, to sort by.
type located struct {
	file int
	Problem
}

// damaged reports a line that is not an event.
func (v *verifier) damaged(le *lineError) {
	v.problem(Mark{File: le.file, Line: le.line}, KindDamaged, "%v", le.err)
}

func (v *verifier) problem(at Mark, kind, format string, args ...any) {
	v.problems = append(v.problems, located{v.fileIndex, Problem{File: at.File, Line: at.Line, Time: at.Time, Kind: kind, Detail: fmt.Sprintf(format, args...)}})
}

// event checks one event against the chain so far; it never fails.
func (v *verifier) event(rec *Record) error {
	r := *rec
	m := Mark{File: r.File, Line: r.Line, Time: r.Time, Seq: r.Seq, Hash: r.Hash}
	v.rep.Events++
	if v.rep.First == nil {
		v.rep.First = &m
	}
	if r.Op == OpStart {
		v.rep.Starts++
	}
	if i, ok := v.heads[r.Hash]; ok && v.rep.Heads[i].Found == nil {
		v.rep.Heads[i].Found = &m
	}
	if !r.intact {
		v.problem(m, KindEdited, "the event does not match its hash: it was changed after the agent wrote it")
	}
	copied, repeated := v.recent[r.Hash]
	v.remember(m)
	last := v.last
	switch {
	case last == nil:
		v.begin(r, m)
	case r.Prev == last.Hash:
		if r.Seq != last.Seq+1 {
			v.problem(m, KindInserted, "seq %d follows seq %d (%s) and names its hash: the agent did not write this event", r.Seq, last.Seq, where(*last, m.File))
		}
		v.accept(r, m)
	case r.Op == OpStart && r.Prev == "":
		v.problem(m, KindUnlinked, "a new trail starts here without naming the event before it (%s): "+
			"the agent could not read the file's last event when it started (see this event's reason), or the events before were replaced", where(*last, m.File))
		v.accept(r, m)
	case repeated:
		v.problem(m, KindInserted, "the event repeats %s: a copy", where(copied, m.File))
	case r.Seq <= last.Seq:
		v.displaced(r, m)
	case r.Seq == last.Seq+1:
		v.problem(*last, KindEdited, "%s does not name this event's hash: that event was replaced, or this one changed and its hash recomputed", where(m, last.File))
		v.accept(r, m)
	default:
		if len(v.gaps) == maxGaps {
			v.reportGap(v.gaps[0]) // too old to be filled by an event moved back
			v.gaps = v.gaps[1:]
		}
		v.gaps = append(v.gaps, gap{from: last.Seq + 1, to: r.Seq - 1, before: *last, after: m})
		v.accept(r, m)
	}
	return nil
}

// begin checks the first event of the trail.
func (v *verifier) begin(r Record, m Mark) {
	switch {
	case r.Op == OpStart && r.Prev != "":
		v.rep.Continues = &Head{Seq: r.Seq - 1, Hash: r.Prev}
	case r.Op != OpStart:
		v.problem(m, KindDeleted, "the trail does not begin with a start event: events before this one are missing "+
			"(cut from the start of the file, or the file was copied and truncated)")
	}
	v.accept(r, m)
}

// displaced checks an event whose sequence number is not above the last
// one's: an event moved back, or one inserted.
func (v *verifier) displaced(r Record, m Mark) {
	for i := range v.gaps {
		g := &v.gaps[i]
		if r.Seq < g.from || r.Seq > g.to {
			continue
		}
		v.problem(m, KindReordered, "the event (seq %d) belongs between %s and %s: it was moved", r.Seq, where(g.before, m.File), where(g.after, m.File))
		switch {
		case g.from == g.to:
			v.gaps = slices.Delete(v.gaps, i, i+1)
		case r.Seq == g.from:
			g.from++
		case r.Seq == g.to:
			g.to--
		default:
			rest := *g
			g.to, rest.from = r.Seq-1, r.Seq+1
			v.gaps = slices.Insert(v.gaps, i+1, rest)
		}
		return
	}
	if p, ok := v.recent[r.Prev]; ok && p.Seq+1 == r.Seq && p.File == m.File && p.Line < m.Line-1 {
		first := Mark{File: m.File, Line: p.Line + 1}
		for _, q := range v.recent {
			if q.File == first.File && q.Line == first.Line {
				first = q
			}
		}
		lines := fmt.Sprintf("lines %d to %d are", p.Line+1, m.Line-1)
		if p.Line+1 == m.Line-1 {
			lines = fmt.Sprintf("line %d is", p.Line+1)
		}
		v.problem(first, KindInserted, "%s not part of the trail: %s follows %s", lines, where(m, m.File), where(p, m.File))
		v.accept(r, m)
		return
	}
	v.problem(m, KindInserted, "seq %d comes after seq %d (%s): the event was inserted or moved here", r.Seq, v.last.Seq, where(*v.last, m.File))
}

// accept makes m the newest event of the chain.
func (v *verifier) accept(r Record, m Mark) {
	if r.Op == OpStart && r.Prev == "" {
		v.gaps = v.gaps[:0] // a new trail counts from 1
	}
	v.last, v.lastOp = &m, r.Op
	v.rep.Head = &m
}

// remember keeps m among the recent lines.
func (v *verifier) remember(m Mark) {
	if len(v.order) == window {
		delete(v.recent, v.order[0])
		v.order = v.order[1:]
	}
	v.recent[m.Hash] = m
	v.order = append(v.order, m.Hash)
}

// where names an event for a person: "line 12 (2006-01-02T15:04:05Z)",
// with its file when that is not file.
func where(m Mark, file string) string {
	s := fmt.Sprintf("line %d", m.Line)
	if m.File != file {
		s = m.File + " " + s
	}
	if !m.Time.IsZero() {
		s += " (" + m.Time.Format(time.RFC3339Nano) + ")"
	}
	return s
}

// reportGap reports events missing.
func (v *verifier) reportGap(g gap) {
	n := g.to - g.from + 1
	what := fmt.Sprintf("%d events (seq %d to %d) are", n, g.from, g.to)
	if n == 1 {
		what = fmt.Sprintf("1 event (seq %d) is", g.from)
	}
	v.problems = append(v.problems, located{slices.Index(v.rep.Files, g.after.File), Problem{
		File: g.after.File, Line: g.after.Line, Time: g.after.Time, Kind: KindDeleted,
		Detail: fmt.Sprintf("%s missing before this event, after %s: deleted, or the file's end was cut while the agent ran", what, where(g.before, g.after.File)),
	}})
}

// finish reports the gaps never filled and the heads not found, and
// orders the problems as they are in the trail.
func (v *verifier) finish() {
	for _, g := range v.gaps {
		v.reportGap(g)
	}
	for _, h := range v.rep.Heads {
		if h.Found != nil {
			continue
		}
		at := Mark{File: v.rep.Files[len(v.rep.Files)-1]}
		if v.last != nil {
			at = *v.last
		}
		v.problem(at, KindCut, "the recorded head %s is not in the trail: the trail was cut or rewritten after it was recorded", h.Hash)
	}
	slices.SortStableFunc(v.problems, func(a, b located) int {
		return cmp.Or(cmp.Compare(a.file, b.file), cmp.Compare(a.Line, b.Line))
	})
	for _, p := range v.problems {
		v.rep.Problems = append(v.rep.Problems, p.Problem)
	}
	v.rep.Closed = v.lastOp == OpStop || v.lastOp == OpRotate
}
