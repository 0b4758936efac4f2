package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// seedTrail is a short trail as the Log writes it: start, a request with
// its caller, an event of the agent's own, stop.
func seedTrail(tb testing.TB) []byte {
	var buf bytes.Buffer // read once Close has waited for the goroutine
	l := New(&buf, nil)
	l.For(slog.GroupValue(slog.Int("pid", 42), slog.Uint64("uid", 1001), slog.Uint64("gid", 1001), slog.String("exe", "/opt/mm"), slog.String("unit", "mm.service"))).
		Emit(Event{Op: "get", Decision: Allow, Secret: "binance/mm-prod", Version: 3, Rule: "bots", Reason: "rule \"bots\" grants get", Latency: 9 * time.Microsecond})
	l.Emit(Event{Level: slog.LevelWarn, Op: "expiry", Secret: "binance/soon", Version: 1, Expires: time.Unix(1700000000, 0)})
	if err := l.Close(time.Second); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzParseLine: the line parser of verify and query never panics, and a
// line it reads has the chain's fields as the Log writes them, intact
// exactly when its content hashes to its hash, and reads back the same
// from its own JSON.
func FuzzParseLine(f *testing.F) {
	for _, line := range bytes.Split(seedTrail(f), []byte("\n")) {
		f.Add(line)
	}
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"decision","log":"audit","seq":1,"prev":"","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`,"seq":1,"prev":"","hash":"` + strings.Repeat("a", 64) + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseLine(line)
		if err != nil {
			return
		}
		if r.Seq == 0 || !isHash(r.Hash) || r.Prev != "" && !isHash(r.Prev) {
			t.Fatalf("parseLine(%q) = seq %d, prev %q, hash %q", line, r.Seq, r.Prev, r.Hash)
		}
		sum := sha256.Sum256(line[:len(line)-sealLen])
		if r.intact != (hex.EncodeToString(sum[:]) == r.Hash) {
			t.Fatalf("parseLine(%q): intact = %v", line, r.intact)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal(%+v): %v", r, err)
		}
		var back Record
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", out, err)
		}
		if again, _ := json.Marshal(back); !bytes.Equal(again, out) {
			t.Fatalf("a record does not read back the same:\n%s\n%s", out, again)
		}
	})
}

// FuzzVerify: the verifier never panics on any file, says where each
// problem is, in order, and finds none in the trail the Log wrote.
func FuzzVerify(f *testing.F) {
	trail := seedTrail(f)
	f.Add(trail)
	lines := bytes.SplitAfter(trail, []byte("\n"))
	f.Add(slices.Concat(lines[0], lines[2], lines[1], lines[3]))
	f.Add(slices.Concat(lines[0], lines[1], lines[1], lines[3]))
	f.Add(slices.Concat(lines[1], lines[3]))
	f.Add(slices.Concat(trail, lines[2][:20]))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			return // a dozen lines exercise every case; longer inputs only cost time
		}
		v := newVerifier([]string{"fuzz"})
		if err := readEvents(bytes.NewReader(data), "fuzz", parseLine, v.event, v.damaged); err != nil {
			t.Fatal(err)
		}
		v.finish()
		rep := v.rep
		if bytes.Equal(data, trail) && !rep.OK() {
			t.Fatalf("the Log's own trail: %v", rep.Problems)
		}
		n := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			n++
		}
		for i, p := range rep.Problems {
			if p.Line < 1 || p.Line > n || p.Kind == "" || p.Detail == "" || i > 0 && p.Line < rep.Problems[i-1].Line {
				t.Fatalf("problem %d of %d lines: %+v", i, n, p)
			}
		}
		if rep.Events > n {
			t.Fatalf("%d events in %d lines", rep.Events, n)
		}
	})
}

// FuzzParseJournal: the journal entry parser never panics, and what it
// reads marshals.
func FuzzParseJournal(f *testing.F) {
	for _, e := range journalEntries {
		f.Add([]byte(e))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseJournal(line)
		if err != nil {
			return
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("json.Marshal(%+v): %v", r, err)
		}
	})
}
