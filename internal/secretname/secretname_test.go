package secretname_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/secretname"
)

// TestRule is the one table of the naming rule: the store, the policy and
// the CLI all use this package.
func TestRule(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
		why  string
	}{
		{"binance/mm-prod", true, ""},
		{"a", true, ""},
		{"0", true, ""},
		{"okx/exec_bot.v2", true, ""},
		{"a/b/c/d", true, ""},
		{strings.Repeat("a", 128), true, ""},
		{strings.Repeat("a/", 63) + "ab", true, ""},
		{"", false, "it is empty"},
		{strings.Repeat("a", 129), false, "129 bytes long"},
		{"A", false, `segment "A" does not start`},
		{"binance/MM", false, `segment "MM" does not start`},
		{"/abs", false, "empty segment"},
		{"a/", false, "empty segment"},
		{"a//b", false, "empty segment"},
		{"a/../b", false, `segment ".." does not start`},
		{"..", false, "does not start"},
		{".", false, "does not start"},
		{"a/./b", false, "does not start"},
		{".hidden", false, "does not start"},
		{"-flag", false, "does not start"},
		{"_x", false, "does not start"},
		{"a b", false, `contains ' '`},
		{"a\x00b", false, `contains '\x00'`},
		{"a\\b", false, "contains"},
		{"a+b", false, `contains '+'`},
		{"a@1", false, `contains '@'`},
		{"ünï", false, "does not start"},
		{"a\nb", false, "contains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := secretname.Check(tt.name)
			if (err == nil) != tt.ok || secretname.Valid(tt.name) != tt.ok {
				t.Fatalf("Check(%q) = %v, Valid = %v; want ok=%v", tt.name, err, secretname.Valid(tt.name), tt.ok)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, secretname.ErrInvalid) || !strings.Contains(err.Error(), tt.why) || !strings.Contains(err.Error(), secretname.Rule) {
				t.Errorf("Check(%q) = %v; want ErrInvalid saying %q and the rule", tt.name, err, tt.why)
			}
		})
	}
}

func TestValidDoesNotAllocate(t *testing.T) {
	for _, n := range []string{"binance/mm-prod", "a//b", strings.Repeat("x", 200), "A"} {
		if allocs := testing.AllocsPerRun(100, func() { secretname.Valid(n) }); allocs != 0 {
			t.Errorf("Valid(%q): %v allocations, want 0", n, allocs)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"binance/mm-prod", "a/../b", "", "a//b", "Ab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := secretname.Check(name)
		if (err == nil) != secretname.Valid(name) {
			t.Fatalf("Check(%q) = %v but Valid = %v", name, err, secretname.Valid(name))
		}
		if err == nil && (strings.Contains(name, "..") && strings.Contains("/"+name+"/", "/../") || strings.HasPrefix(name, "/")) {
			t.Fatalf("Check(%q) accepts a path escape", name)
		}
	})
}
