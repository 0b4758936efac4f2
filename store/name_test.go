package store

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"binance/mm-prod", true},
		{"a", true},
		{"0", true},
		{"okx/exec_bot.v2", true},
		{"a/b/c/d", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a/", 63) + "ab", true},
		{"", false},
		{strings.Repeat("a", 129), false},
		{"A", false},
		{"binance/MM", false},
		{"/abs", false},
		{"a/", false},
		{"a//b", false},
		{"a/../b", false},
		{"..", false},
		{".", false},
		{"a/./b", false},
		{".hidden", false},
		{"-flag", false},
		{"_x", false},
		{"a b", false},
		{"a\x00b", false},
		{"a\\b", false},
		{"a+b", false},
		{"a@1", false},
		{"ünï", false},
		{"a\nb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidName) {
					t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", tt.name, err)
				}
				if !strings.Contains(err.Error(), NameRule) {
					t.Errorf("ValidateName(%q) error does not state the rule: %v", tt.name, err)
				}
			}
		})
	}
}

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
