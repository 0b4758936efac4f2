package exchange

import (
	"slices"
	"testing"
)

// BenchmarkSign measures SignTo with a reused Signed, one sub-benchmark per
// scheme, on an order-sized request.
func BenchmarkSign(b *testing.B) {
	keys := testKeys(b)
	for _, c := range signCases() {
		b.Run(c.name, func(b *testing.B) {
			k, p := keys[c.key], mustParse(b, c.x, c.r)
			var s Signed
			b.ReportAllocs()
			for b.Loop() {
				if err := SignTo(&s, k, p, now, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse measures Parse on the same requests: the agent runs it
// before every signature.
func BenchmarkParse(b *testing.B) {
	shapes := []string{"binance-hmac", "binance-ws-hmac", "bybit-hmac", "okx-hmac", "kraken-hmac", "coinbase-es256"}
	for _, c := range signCases() {
		if !slices.Contains(shapes, c.name) { // one per request shape
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(c.x, c.r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
