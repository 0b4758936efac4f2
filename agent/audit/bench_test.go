package audit

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// benchLog opens a file trail in a temporary directory, with or without
// the chain: without it is the Log as it was before the chain, the
// baseline of the same run.
func benchLog(b *testing.B, chained bool) *Log {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "audit.log"), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	l := jsonLog(f, nil, Head{})
	l.file = f
	if !chained {
		l.chain = nil
	}
	return start(l, tail{empty: true})
}

var benchCaller = slog.GroupValue(slog.Int("pid", 4242), slog.Uint64("uid", 1001), slog.Uint64("gid", 1001),
	slog.String("exe", "/opt/mm/bin/market-maker"), slog.String("unit", "mm-binance.service"))

var benchEvent = Event{Op: "get", Decision: Allow, Secret: "binance/mm-prod", Version: 3, Rule: "bots",
	Reason: `rule "bots" grants get on binance/*`, Latency: 9 * time.Microsecond}

// BenchmarkWrite: the cost of an event from Emit to the file, what the
// audit goroutine spends formatting (and sealing) and writing it, with and
// without the chain. ns/op is per event.
func BenchmarkWrite(b *testing.B) {
	for _, chained := range []bool{false, true} {
		b.Run(map[bool]string{false: "chain=off", true: "chain=on"}[chained], func(b *testing.B) {
			l := benchLog(b, chained)
			src := l.For(benchCaller)
			b.ResetTimer()
			for range b.N {
				src.Emit(benchEvent)
			}
			if err := l.Close(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkFormat: the audit goroutine's work per event without the
// goroutine's scheduling: format (and seal) each event, write every 256
// (a batch) to the file.
func BenchmarkFormat(b *testing.B) {
	for _, chained := range []bool{false, true} {
		b.Run(map[bool]string{false: "chain=off", true: "chain=on"}[chained], func(b *testing.B) {
			l := benchLog(b, chained)
			if err := l.Close(time.Second); err != nil { // stop the goroutine; use the Log here
				b.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "audit.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			l.out = f
			h := l.h.WithAttrs([]slog.Attr{{Key: KeyCaller, Value: benchCaller}})
			e := benchEvent
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				l.format(h, &e, true)
				if i%256 == 255 {
					l.flush(false)
				}
			}
			l.flush(false)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEmit: what Emit costs the request path, p50 and p99, with and
// without the chain, at a rate the agent serves (an event every 10 µs).
func BenchmarkEmit(b *testing.B) {
	for _, chained := range []bool{false, true} {
		b.Run(map[bool]string{false: "chain=off", true: "chain=on"}[chained], func(b *testing.B) {
			l := benchLog(b, chained)
			src := l.For(benchCaller)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				src.Emit(benchEvent)
				took = append(took, time.Since(t0))
				for time.Since(t0) < 10*time.Microsecond {
				}
			}
			b.StopTimer()
			if err := l.Close(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}
