package recovery

import (
	"slices"
	"testing"
)

func reportMS(b *testing.B, unit string) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), unit)
}

// BenchmarkNewKit measures making a 3-of-5 kit, as `keyward recovery init`
// does once.
func BenchmarkNewKit(b *testing.B) {
	for b.Loop() {
		if _, _, err := NewKit(5, 3, testNow); err != nil {
			b.Fatal(err)
		}
	}
	reportMS(b, "ms/kit")
}

// BenchmarkCombine measures recovering the key of a 3-of-5 kit from 3
// shares, as `keyward recovery restore` does once.
func BenchmarkCombine(b *testing.B) {
	kit, shares := newTestKit(b, 5, 3)
	for b.Loop() {
		priv, err := Combine(kit, shares[:3])
		if err != nil {
			b.Fatal(err)
		}
		priv.Destroy()
	}
	reportMS(b, "ms/combine")
}

// BenchmarkCombineIdentify measures finding one forged share among all 16
// shares of an 8-of-16 kit when it comes first (the subset search must skip
// every subset that holds it).
func BenchmarkCombineIdentify(b *testing.B) {
	kit, shares := newTestKit(b, 16, 8)
	given := slices.Clone(shares)
	given[0] = forgeShare(b, kit, 1)
	for b.Loop() {
		if _, err := Combine(kit, given); err == nil {
			b.Fatal("Combine() = nil error, want ErrWrongShares")
		}
	}
	reportMS(b, "ms/combine")
}

// BenchmarkCombineWorst measures the longest search: 16 shares of an 8-of-16
// kit of which 9 are forged, so every one of the 12,870 subsets is tried.
func BenchmarkCombineWorst(b *testing.B) {
	kit, shares := newTestKit(b, 16, 8)
	given := slices.Clone(shares)
	for i := range 9 {
		given[i] = forgeShare(b, kit, i+1)
	}
	for b.Loop() {
		if _, err := Combine(kit, given); err == nil {
			b.Fatal("Combine() = nil error, want ErrWrongShares")
		}
	}
	reportMS(b, "ms/combine")
}
