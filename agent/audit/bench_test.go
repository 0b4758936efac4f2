package audit

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// BenchmarkWrite: events from Emit to the file through the Log's queue
// and goroutine, with and without the chain. ns/op is wall time per
// event; cpu-ns/event is the process's CPU time (user and system) per
// event, which a machine busy with other work does not inflate.
func BenchmarkWrite(b *testing.B) {
	for _, chained := range []bool{false, true} {
		b.Run(map[bool]string{false: "chain=off", true: "chain=on"}[chained], func(b *testing.B) {
			l := benchLog(b, chained)
			src := l.For(benchCaller)
			c0 := processCPU(b)
			b.ResetTimer()
			for range b.N {
				src.Emit(benchEvent)
			}
			if err := l.Close(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(processCPU(b)-c0)/float64(b.N), "cpu-ns/event")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// processCPU returns the CPU time of the process, in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkFormat: the audit goroutine's work per event, formatting
// (and sealing) a batch of 256 events and writing it to a file, without
// and with the chain, batch by batch in one loop so that both see the
// same machine. One op is a batch of each. Reported per event, for each
// of off and on: the p50 and p99 of the wall time, and the p50 of the
// thread's CPU time (kernel time of the write included), which a machine
// busy with other work does not inflate; and the ratios on/off.
func BenchmarkFormat(b *testing.B) {
	const batch = 256
	var logs [2]*Log
	for i, chained := range []bool{false, true} {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "audit.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		logs[i] = jsonLog(f, nil, Head{})
		if !chained {
			logs[i].chain = nil
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var wall, cpu [2][]float64 // ns per event, each batch
	e := benchEvent
	b.ReportAllocs()
	for b.Loop() {
		for i, l := range logs {
			h := l.h.WithAttrs([]slog.Attr{{Key: KeyCaller, Value: benchCaller}}) // as Log.For, once per connection
			c0, t0 := threadCPU(b), time.Now()
			for range batch {
				l.format(h, &e, true)
			}
			l.flush(false)
			wall[i] = append(wall[i], float64(time.Since(t0).Nanoseconds())/batch)
			cpu[i] = append(cpu[i], float64(threadCPU(b)-c0)/batch)
		}
	}
	p := func(v []float64, q int) float64 {
		slices.Sort(v)
		return v[len(v)*q/100]
	}
	for i, name := range []string{"off", "on"} {
		b.ReportMetric(p(cpu[i], 50), name+"-cpu-p50-ns/event")
		b.ReportMetric(p(wall[i], 50), name+"-wall-p50-ns/event")
		b.ReportMetric(p(wall[i], 99), name+"-wall-p99-ns/event")
	}
	b.ReportMetric(p(cpu[1], 50)/p(cpu[0], 50), "on/off-cpu-p50")
	b.ReportMetric(p(wall[1], 50)/p(wall[0], 50), "on/off-wall-p50")
}

// threadCPU returns the CPU time of the calling thread, in nanoseconds.
func threadCPU(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return ts.Nano()
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
