package policy

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		name    string
		want    bool
	}{
		{"okx/mm", "okx/mm", true},
		{"okx/mm", "okx/mm2", false},
		{"okx/mm", "okx", false},
		{"binance/*", "binance/mm", true},
		{"binance/*", "binance", false},
		{"binance/*", "binance/mm/prod", false},
		{"*", "binance", true},
		{"*", "binance/mm", false},
		{"mm-*", "mm-prod", true},
		{"mm-*", "mm", false},
		{"a/*/c", "a/b/c", true},
		{"a/*/c", "a/c", false},
		{"a/*/c", "a/b/d/c", false},
		{"binance/**", "binance/a", true},
		{"binance/**", "binance/a/b/c", true},
		{"binance/**", "binance", false},
		{"binance/**", "binancex/a", false},
		{"*/**", "a/b", true},
		{"*/**", "a", false},
		{"b*/m?/**", "binance/mm/x/y", true},
		{"b*/m?/**", "binance/mmm/x", false},
		{"b?nance/mm", "binance/mm", true},
		{"b?nance/mm", "bnance/mm", false},
		{"a?b", "a/b", false},
		{"okx/[a-c]m", "okx/bm", true},
		{"okx/[a-c]m", "okx/dm", false},
		{"okx/[^a]m", "okx/bm", true},
		{"okx/[^a]m", "okx/am", false},
		{"a[^x]b", "a/b", false},
		{`okx/m\-m`, "okx/m-m", true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.name, func(t *testing.T) {
			p, exact, err := compilePattern(tt.pattern)
			if err != nil {
				t.Fatalf("compilePattern(%q) = %v", tt.pattern, err)
			}
			var got bool
			if exact {
				got = p.text == tt.name
			} else {
				got = p.match(tt.name)
			}
			if got != tt.want {
				t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

func TestPatternRefused(t *testing.T) {
	tests := []struct {
		pattern string
		bad     bool // wraps path.ErrBadPattern
	}{
		{"", false},
		{"**", false},
		{"**/a", false},
		{"a/**/b", false},
		{"a/b**", false},
		{"a**/b", false},
		{"/**", false},
		{"a//b", false},
		{"a//*", false},
		{"/a", false},
		{"a/", false},
		{"/*", false},
		{"*/", false},
		{"Binance/mm", false},
		{"Binance/*", false},
		{"okx/mm prod", false},
		{"okx/.mm", false},
		{"okx/[", true},
		{"okx/[]", true},
		{"okx/a[b", true},
		{`okx/a\`, true},
		{"a[/]b", true},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a*", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			_, _, err := compilePattern(tt.pattern)
			if err == nil {
				t.Fatalf("compilePattern(%q) = nil, want an error", tt.pattern)
			}
			if got := errors.Is(err, path.ErrBadPattern); got != tt.bad {
				t.Errorf("compilePattern(%q) = %v, want ErrBadPattern %v", tt.pattern, err, tt.bad)
			}
		})
	}
}
