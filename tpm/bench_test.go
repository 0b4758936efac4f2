package tpm_test

import (
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
