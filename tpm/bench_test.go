package tpm_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keyward/keyward/tpm"
)

// benchTPMs are the TPMs the benchmarks run on.
var benchTPMs = []struct {
	name string
	open func(testing.TB) transport.TPM
}{
	{"simulator", func(tb testing.TB) transport.TPM { return openSim(tb) }},
	{"swtpm", func(tb testing.TB) transport.TPM { _, tp := openSwTPM(tb); return tp }},
}

// reportMS reports the mean time per operation in milliseconds.
func reportMS(b *testing.B, start time.Time, n int) {
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(n), "ms/op")
}

// BenchmarkSeal measures Wrap of a data key: PCR read, salted session,
// TPM2_Create.
func BenchmarkSeal(b *testing.B) {
	for _, bt := range benchTPMs {
		b.Run(bt.name, func(b *testing.B) {
			d := openDevice(b, tpm.Config{TPM: bt.open(b)})
			key := randomBytes(32)
			n, start := 0, time.Now()
			for b.Loop() {
				if _, err := d.Seal(b.Context(), key); err != nil {
					b.Fatalf("Seal() = %v", err)
				}
				n++
			}
			reportMS(b, start, n)
		})
	}
}

// BenchmarkUnseal measures Unwrap: TPM2_Load, salted policy session,
// PolicyPCR, TPM2_Unseal, flushes.
func BenchmarkUnseal(b *testing.B) {
	for _, bt := range benchTPMs {
		b.Run(bt.name, func(b *testing.B) {
			d := openDevice(b, tpm.Config{TPM: bt.open(b)})
			blob, err := d.Seal(b.Context(), randomBytes(32))
			if err != nil {
				b.Fatalf("Seal() = %v", err)
			}
			n, start := 0, time.Now()
			for b.Loop() {
				if _, err := d.Unseal(b.Context(), blob); err != nil {
					b.Fatalf("Unseal() = %v", err)
				}
				n++
			}
			reportMS(b, start, n)
		})
	}
}

// BenchmarkOpen measures Open and Close: creating the ECC SRK, done once
// per Device.
func BenchmarkOpen(b *testing.B) {
	for _, bt := range benchTPMs {
		b.Run(bt.name, func(b *testing.B) {
			tp := bt.open(b)
			n, start := 0, time.Now()
			for b.Loop() {
				d, err := tpm.Open(tpm.Config{TPM: tp})
				if err != nil {
					b.Fatalf("Open() = %v", err)
				}
				d.Close()
				n++
			}
			reportMS(b, start, n)
		})
	}
}

// BenchmarkStart measures what the agent does at start, on swtpm: open
// the Device, then either open the store key and unwrap n data keys with
// it, or (per-secret) unseal n data keys with the Device. tpm-cmds/op is
// the number of TPM commands per start, Close excluded: on a kernel TPM
// stack each costs about 13 ms (docs/tpm.md), which swtpm's socket hides,
// so it is the number to compare. unwrap-p50-ns and unwrap-p99-ns are
// percentiles of one Unwrap, timed one by one.
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		scheme string
		n      int
	}{
		{"storekey", 10}, {"storekey", 100}, {"storekey", 1000},
		{"per-secret", 10}, {"per-secret", 100},
	} {
		b.Run(fmt.Sprintf("%s/n=%d", bc.scheme, bc.n), func(b *testing.B) {
			_, tp := openSwTPM(b)
			ctx := b.Context()
			sealed, wrapped := startFixture(b, tp, bc.scheme == "storekey", bc.n)
			c := countCommands(tp)
			cmds := 0
			times := make([]time.Duration, 0, bc.n)
			for b.Loop() {
				c.Reset()
				d, err := tpm.Open(tpm.Config{TPM: c})
				if err != nil {
					b.Fatalf("Open() = %v", err)
				}
				var backend interface {
					Unwrap(context.Context, []byte) ([]byte, error)
					Close() error
				} = d
				if sealed != nil {
					if backend, err = tpm.OpenStoreKey(ctx, d, sealed); err != nil {
						b.Fatalf("OpenStoreKey() = %v", err)
					}
				}
				for _, w := range wrapped {
					start := time.Now()
					k, err := backend.Unwrap(ctx, w)
					times = append(times, time.Since(start))
					if err != nil {
						b.Fatalf("Unwrap() = %v", err)
					}
					clear(k)
				}
				cmds += c.Total()
				backend.Close()
				d.Close()
			}
			b.ReportMetric(float64(cmds)/float64(b.N), "tpm-cmds/op")
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "unwrap-p50-ns")
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "unwrap-p99-ns")
		})
	}
}

// startFixture makes n wrapped data keys on tp: under a new store key,
// whose sealed blob it returns, or sealed one by one by the Device.
func startFixture(b *testing.B, tp transport.TPM, storeKey bool, n int) (sealed []byte, wrapped [][]byte) {
	b.Helper()
	ctx := context.Background()
	d, err := tpm.Open(tpm.Config{TPM: tp})
	if err != nil {
		b.Fatalf("Open() = %v", err)
	}
	defer d.Close() // swtpm has room for few transient objects
	var backend interface {
		Wrap(context.Context, []byte) ([]byte, error)
	} = d
	if storeKey {
		k, s, err := tpm.NewStoreKey(ctx, d)
		if err != nil {
			b.Fatalf("NewStoreKey() = %v", err)
		}
		defer k.Close()
		sealed, backend = s, k
	}
	for range n {
		w, err := backend.Wrap(ctx, randomBytes(32))
		if err != nil {
			b.Fatalf("Wrap() = %v", err)
		}
		wrapped = append(wrapped, w)
	}
	return sealed, wrapped
}
