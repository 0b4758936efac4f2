package store

import (
	"testing"
)

func TestFileNameRoundTrip(t *testing.T) {
	for _, name := range []string{"a", "binance/mm-prod", "x.y/z_w/0-1"} {
		fn := fileName(name, 42)
		got, v, ok := parseFileName(fn)
		if !ok || got != name || v != 42 {
			t.Errorf("parseFileName(%q) = %q, %d, %v; want %q, 42, true", fn, got, v, ok, name)
		}
	}
	for _, fn := range []string{"a@0.kwe", "a@01.kwe", "a@.kwe", "a.kwe", "A@1.kwe", "a@1", "+a@1.kwe", "a@4294967296.kwe", "a@-1.kwe"} {
		if _, _, ok := parseFileName(fn); ok {
			t.Errorf("parseFileName(%q) ok; want refused", fn)
		}
	}
}
