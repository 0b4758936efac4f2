package audit_test

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/audit"
)

// caller is a request's caller as the agent attaches it (peer.LogValue).
func caller(uid uint64, unit string) slog.Value {
	return slog.GroupValue(slog.Int("pid", 4000+int(uid)), slog.Uint64("uid", uid), slog.Uint64("gid", uid),
		slog.String("exe", "/opt/mm/bin/mm"), slog.String("unit", unit))
}

// writeTrail writes a file trail of two runs of the agent, each a start
// event, four gets and a stop event: 12 lines, seq 1 to 12.
func writeTrail(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	for run := range 2 {
		l, err := audit.Open(audit.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		src := l.For(caller(1001, "mm.service"))
		for i := range 4 {
			src.Emit(audit.Event{Op: "get", Decision: audit.Allow, Secret: fmt.Sprintf("binance/k%d", run*4+i), Version: 1})
		}
		if err := l.Close(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")[:strings.Count(string(b), "\n")]
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// field returns a field of an event line as text.
func field(t *testing.T, line, key string) string {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return fmt.Sprint(ev[key])
}

// forge seals line anew as someone who knows the format would: with seq
// and prev, and its hash recomputed.
func forge(line string, seq uint64, prev string) string {
	body := line[:strings.LastIndex(line, `,"seq":`)] + fmt.Sprintf(`,"seq":%d,"prev":"%s"`, seq, prev)
	sum := sha256.Sum256([]byte(body))
	return body + `,"hash":"` + hex.EncodeToString(sum[:]) + "\"}\n"
}

// found is a problem as the tamper table expects it.
type found struct {
	kind string
	line int
}

func problems(rep *audit.Report) []found {
	var out []found
	for _, p := range rep.Problems {
		out = append(out, found{p.Kind, p.Line})
	}
	return out
}

// TestVerifyIntact: a trail of two runs verifies: two start events, closed
// by a stop event, its head the Log's.
func TestVerifyIntact(t *testing.T) {
	path := writeTrail(t)
	rep, err := audit.Verify([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	last := lines[len(lines)-1]
	if !rep.OK() || rep.Events != 12 || rep.Starts != 2 || !rep.Closed || rep.Continues != nil {
		t.Fatalf("Verify = %+v, want 12 events, 2 starts, closed, no problem", rep)
	}
	if rep.Head.Line != 12 || rep.Head.Seq != 12 || rep.Head.Hash != field(t, last, "hash") {
		t.Errorf("head = %+v, want line 12, seq 12, the last line's hash", rep.Head)
	}
	if got := field(t, lines[6], "prev"); got != field(t, lines[5], "hash") || field(t, lines[6], "op") != audit.OpStart {
		t.Errorf("the second run's start event names %s, want the first run's last hash", got)
	}
}

// TestVerifyTampering: each way of changing a trail is found, and said
// where.
func TestVerifyTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, lines []string) []string
		want   []found
	}{
		{"delete an event", func(t *testing.T, l []string) []string {
			return slices.Delete(l, 3, 4)
		}, []found{{audit.KindDeleted, 4}}},
		{"delete two events", func(t *testing.T, l []string) []string {
			return slices.Delete(l, 3, 5)
		}, []found{{audit.KindDeleted, 4}}},
		{"delete across a restart", func(t *testing.T, l []string) []string {
			return slices.Delete(l, 4, 8)
		}, []found{{audit.KindDeleted, 5}}},
		{"delete the file's first events", func(t *testing.T, l []string) []string {
			return l[2:]
		}, []found{{audit.KindDeleted, 1}}},
		{"insert a copy", func(t *testing.T, l []string) []string {
			return slices.Insert(l, 3, l[2])
		}, []found{{audit.KindInserted, 4}}},
		{"insert a forged event", func(t *testing.T, l []string) []string {
			fake := strings.Replace(l[2], "binance/k1", "binance/k9", 1)
			return slices.Insert(l, 3, forge(fake, 4, field(t, l[2], "hash")))
		}, []found{{audit.KindInserted, 4}}},
		{"insert a line that is not an event", func(t *testing.T, l []string) []string {
			return slices.Insert(l, 3, `{"msg":"hello"}`+"\n")
		}, []found{{audit.KindDamaged, 4}}},
		{"swap two events", func(t *testing.T, l []string) []string {
			l[2], l[3] = l[3], l[2]
			return l
		}, []found{{audit.KindReordered, 4}}},
		{"move an event past a restart", func(t *testing.T, l []string) []string {
			moved := l[2]
			l = slices.Delete(l, 2, 3)
			return slices.Insert(l, 8, moved)
		}, []found{{audit.KindReordered, 9}}},
		{"edit an event", func(t *testing.T, l []string) []string {
			l[3] = strings.Replace(l[3], `"decision":"allow"`, `"decision":"deny"`, 1)
			return l
		}, []found{{audit.KindEdited, 4}}},
		{"edit an event and recompute its hash", func(t *testing.T, l []string) []string {
			l[3] = forge(strings.Replace(l[3], "binance/k2", "binance/zz", 1), 4, field(t, l[2], "hash"))
			return l
		}, []found{{audit.KindEdited, 4}}},
		{"delete events and pass the rest off as a new trail", func(t *testing.T, l []string) []string {
			l = slices.Delete(l, 2, 6)
			prev := ""
			for i := 2; i < len(l); i++ {
				l[i] = forge(l[i], uint64(i-1), prev)
				prev = field(t, l[i], "hash")
			}
			return l
		}, []found{{audit.KindUnlinked, 3}}},
		{"cut the end, then the agent writes", func(t *testing.T, l []string) []string {
			return slices.Delete(l, 9, 11) // two gets of the second run
		}, []found{{audit.KindDeleted, 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTrail(t)
			writeLines(t, path, tc.tamper(t, readLines(t, path)))
			rep, err := audit.Verify([]string{path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := problems(rep); !slices.Equal(got, tc.want) {
				t.Errorf("problems = %v, want %v", got, tc.want)
				for _, p := range rep.Problems {
					t.Logf("%s:%d: %s: %s", p.File, p.Line, p.Kind, p.Detail)
				}
			}
			for _, p := range rep.Problems {
				if p.Kind != audit.KindDamaged && p.Time.IsZero() {
					t.Errorf("problem at line %d has no event time", p.Line)
				}
			}
		})
	}
}

// TestVerifyHead: cutting the end while the agent is stopped, or
// rewriting the trail with every hash recomputed, leaves a chain that
// holds; only a head recorded beforehand finds it.
func TestVerifyHead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, lines []string) []string
	}{
		{"cut the end", func(t *testing.T, l []string) []string { return l[:9] }},
		{"rewrite from an event on", func(t *testing.T, l []string) []string {
			prev := field(t, l[2], "hash")
			for i := 3; i < len(l); i++ {
				line := strings.Replace(l[i], "binance/k", "binance/x", 1)
				l[i] = forge(line, uint64(i+1), prev)
				prev = field(t, l[i], "hash")
			}
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTrail(t)
			before, err := audit.Verify([]string{path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			writeLines(t, path, tc.tamper(t, readLines(t, path)))
			rep, err := audit.Verify([]string{path}, nil)
			if err != nil || !rep.OK() {
				t.Fatalf("without a head: %v, %v; want the chain to hold (what a chain alone cannot show)", rep.Problems, err)
			}
			rep, err = audit.Verify([]string{path}, []string{before.Head.Hash})
			if err != nil {
				t.Fatal(err)
			}
			if got := problems(rep); len(got) != 1 || got[0].kind != audit.KindCut || rep.Heads[0].Found != nil {
				t.Errorf("with the recorded head: problems %v, heads %+v; want the head not found", rep.Problems, rep.Heads)
			}
		})
	}
	path := writeTrail(t)
	old := readLines(t, path)[5]
	rep, err := audit.Verify([]string{path}, []string{field(t, old, "hash")})
	if err != nil || !rep.OK() || rep.Heads[0].Found == nil || rep.Heads[0].Found.Line != 6 {
		t.Errorf("an older head: %+v, %v; want found at line 6", rep, err)
	}
}

// TestCutWhileRunning: the end of the file cut under a running agent is
// found at the next event the agent writes.
func TestCutWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		l.Emit(audit.Event{Op: "prune", Decision: audit.Allow, Secret: fmt.Sprintf("a/%d", i)})
	}
	waitLines(t, path, 5)
	lines := readLines(t, path)
	if err := os.Truncate(path, int64(len(strings.Join(lines[:3], "")))); err != nil {
		t.Fatal(err)
	}
	l.Emit(audit.Event{Op: "prune", Decision: audit.Allow, Secret: "a/after"})
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := problems(rep); !slices.Equal(got, []found{{audit.KindDeleted, 4}}) || !strings.Contains(rep.Problems[0].Detail, "2 events (seq 4 to 5)") {
		t.Errorf("problems = %v, want 2 events deleted before line 4", rep.Problems)
	}
}

func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Count(string(b), "\n") >= n {
			return
		}
	}
	t.Fatalf("%s has fewer than %d lines", path, n)
}

// TestTornTail: a file that ends in a partial line (a crash) is continued
// from its last whole event; the partial line stays, a line of its own,
// and verify reports it and nothing else.
func TestTornTail(t *testing.T) {
	path := writeTrail(t)
	lines := readLines(t, path)
	torn := lines[3][:40]
	writeLines(t, path, append(lines, torn))
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	lines = readLines(t, path)
	if lines[12] != torn+"\n" || field(t, lines[13], "op") != audit.OpStart || field(t, lines[13], "level") != "WARN" ||
		!strings.Contains(field(t, lines[13], "reason"), "partial line") {
		t.Fatalf("after a torn tail: %q", lines[12:])
	}
	rep, err := audit.Verify([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := problems(rep); !slices.Equal(got, []found{{audit.KindDamaged, 13}}) {
		t.Errorf("problems = %v, want the partial line 13 only", rep.Problems)
	}
}

// TestUnreadableTail: a file whose last line is not an event starts a new
// trail, which verify reports as not linked, beside the bad line.
func TestUnreadableTail(t *testing.T) {
	path := writeTrail(t)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("garbage\n")
	f.Close()
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Close(time.Second)
	rep, err := audit.Verify([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := problems(rep); !slices.Equal(got, []found{{audit.KindDamaged, 13}, {audit.KindUnlinked, 14}}) {
		t.Errorf("problems = %v", rep.Problems)
	}
}

// TestReopen: while events are emitted from several goroutines, the file
// is renamed (as logrotate does) and the Log reopened: every event is in
// one file or the other, once; the old file ends with a rotate event, the
// new one starts with a start event, and the two verify as one trail,
// also once the old one is compressed.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var emitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			src := l.For(caller(uint64(1000+g), ""))
			for i := 0; !stop.Load(); i++ {
				src.Emit(audit.Event{Op: "get", Decision: audit.Allow, Secret: fmt.Sprintf("g%d/%d", g, i)})
				emitted.Add(1)
				if i%4 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	time.Sleep(30 * time.Millisecond)
	if ok, err := l.Reopen(); ok || err != nil {
		t.Errorf("Reopen() with the file in place = %v, %v; want nothing done", ok, err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if ok, err := l.Reopen(); !ok || err != nil {
		t.Fatalf("Reopen() after a rename = %v, %v", ok, err)
	}
	time.Sleep(30 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v, %v", fi, err)
	}

	oldLines, newLines := readLines(t, path+".1"), readLines(t, path)
	if op := field(t, oldLines[len(oldLines)-1], "op"); op != audit.OpRotate {
		t.Errorf("the old file ends with %q, want %q", op, audit.OpRotate)
	}
	if op := field(t, newLines[0], "op"); op != audit.OpStart {
		t.Errorf("the new file begins with %q, want %q", op, audit.OpStart)
	}
	seen := map[string]int{}
	newGets := 0
	for i, line := range slices.Concat(oldLines, newLines) {
		if field(t, line, "op") == "get" {
			seen[field(t, line, "secret")]++
			if i >= len(oldLines) {
				newGets++
			}
		}
	}
	if len(seen) != int(emitted.Load()) || newGets == 0 || newGets == len(seen) {
		t.Errorf("%d distinct events written (%d in the new file), %d emitted", len(seen), newGets, emitted.Load())
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("%s written %d times", name, n)
		}
	}

	gz := gzipFile(t, path+".1")
	rep, err := audit.Verify([]string{gz, path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Starts != 2 || !rep.Closed || rep.Events != len(oldLines)+len(newLines) {
		t.Errorf("Verify(old, new) = %+v", rep)
	}
	rep, err = audit.Verify([]string{path}, nil)
	if err != nil || !rep.OK() || rep.Continues == nil || rep.Continues.Hash != field(t, oldLines[len(oldLines)-1], "hash") {
		t.Errorf("Verify(new) = %+v, %v; want it to continue from the old file's head", rep, err)
	}
}

func gzipFile(t *testing.T, path string) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(path + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	z := gzip.NewWriter(out)
	if _, err := io.Copy(z, in); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path + ".gz"
}

// TestReopenRefused: when the new file cannot be opened safely, Reopen
// says so and events go on to the old file.
func TestReopenRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Reopen(); ok || err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Reopen() in a world-writable directory = %v, %v; want refused", ok, err)
	}
	l.Emit(audit.Event{Op: "prune", Decision: audit.Allow})
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify([]string{path + ".1"}, nil)
	if err != nil || !rep.OK() || rep.Events != 3 {
		t.Errorf("Verify(old) = %+v, %v; want start, prune, stop", rep, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a new file was created: %v", err)
	}
}

// TestHeadAndStats: Head is the last event written; Stats counts events.
func TestHeadAndStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.Emit(audit.Event{Op: "prune"})
	}
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	last := lines[len(lines)-1]
	if h := l.Head(); h.Seq != 5 || h.Hash != field(t, last, "hash") {
		t.Errorf("Head() = %v, want seq 5 and the last line's hash", h)
	}
	if s := l.Stats(); s.Emitted != 3 || s.Queued != 0 || s.Pending != 0 {
		t.Errorf("Stats() = %+v, want 3 emitted, nothing waiting", s)
	}
}
