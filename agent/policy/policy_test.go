package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeCaller is a Caller with fixed answers.
type fakeCaller struct {
	uid, gid uint32
	groups   []uint32
	exe      string
	unit     string
	sum      [32]byte
	sumErr   error
	sums     int // ExeSHA256 calls
}

func (c *fakeCaller) UID() uint32      { return c.uid }
func (c *fakeCaller) GID() uint32      { return c.gid }
func (c *fakeCaller) Groups() []uint32 { return slices.Clone(c.groups) }
func (c *fakeCaller) Exe() string      { return c.exe }
func (c *fakeCaller) Unit() string     { return c.unit }
func (c *fakeCaller) ExeSHA256() ([32]byte, error) {
	c.sums++
	return c.sum, c.sumErr
}

func (c *fakeCaller) String() string {
	return fmt.Sprintf("uid=%d gid=%d groups=%v exe=%q unit=%q", c.uid, c.gid, c.groups, c.exe, c.unit)
}

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

var (
	sumA = sha256.Sum256([]byte("mm v1"))
	sumB = sha256.Sum256([]byte("mm v2"))
)

var decidePolicy = `
[[rule]]
name    = "by-user"
secrets = ["u/a"]
users   = ["1001"]
allow   = ["get"]

[[rule]]
name    = "by-users"
secrets = ["u/or"]
users   = ["1001", "1002"]
allow   = ["get"]

[[rule]]
name    = "by-group"
secrets = ["g/a"]
groups  = ["2000"]
allow   = ["get"]

[[rule]]
name    = "by-exe"
secrets = ["e/a"]
users   = ["1001"]
exes    = ["/opt/mm/bin/../bin/mm"]
allow   = ["get"]

[[rule]]
name       = "by-sum"
secrets    = ["s/a"]
users      = ["1001"]
exe_sha256 = ["` + hex.EncodeToString(sumA[:]) + `"]
allow      = ["get"]

[[rule]]
name    = "by-unit"
secrets = ["n/a"]
units   = ["mm-prod.service"]
allow   = ["get"]

[[rule]]
name    = "and"
secrets = ["and/a"]
users   = ["1001"]
units   = ["mm-prod.service"]
allow   = ["get"]

[[rule]]
name    = "root"
secrets = ["root/a"]
users   = ["0"]
allow   = ["get"]

[[rule]]
name    = "list-only"
secrets = ["l/*"]
users   = ["1001"]
allow   = ["list"]

[[rule]]
name    = "first"
secrets = ["f/**"]
users   = ["1001"]
allow   = ["get", "watch"]

[[rule]]
name    = "second"
secrets = ["f/a"]
users   = ["1001"]
allow   = ["get", "admin"]
`

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	bot := fakeCaller{uid: 1001, gid: 1001, exe: "/opt/mm/bin/mm", sum: sumB}
	with := func(f func(c *fakeCaller)) *fakeCaller {
		c := bot
		f(&c)
		return &c
	}
	tests := []struct {
		name   string
		c      *fakeCaller
		op     Op
		secret string
		rule   string // "" means denied
	}{
		{"user", &bot, OpGet, "u/a", "by-user"},
		{"user other uid", with(func(c *fakeCaller) { c.uid = 1003 }), OpGet, "u/a", ""},
		{"users first", &bot, OpGet, "u/or", "by-users"},
		{"users second", with(func(c *fakeCaller) { c.uid = 1002 }), OpGet, "u/or", "by-users"},
		{"users neither", with(func(c *fakeCaller) { c.uid = 1003 }), OpGet, "u/or", ""},
		{"group primary", with(func(c *fakeCaller) { c.gid = 2000 }), OpGet, "g/a", "by-group"},
		{"group supplementary", with(func(c *fakeCaller) { c.groups = []uint32{10, 2000} }), OpGet, "g/a", "by-group"},
		{"group none", with(func(c *fakeCaller) { c.groups = []uint32{10, 2001} }), OpGet, "g/a", ""},
		{"exe", &bot, OpGet, "e/a", "by-exe"},
		{"exe other", with(func(c *fakeCaller) { c.exe = "/usr/bin/python3" }), OpGet, "e/a", ""},
		{"exe deleted", with(func(c *fakeCaller) { c.exe = "/opt/mm/bin/mm (deleted)" }), OpGet, "e/a", ""},
		{"sha256", with(func(c *fakeCaller) { c.sum = sumA }), OpGet, "s/a", "by-sum"},
		{"sha256 other", &bot, OpGet, "s/a", ""},
		{"sha256 error", with(func(c *fakeCaller) { c.sum, c.sumErr = sumA, errors.New("exe replaced") }), OpGet, "s/a", ""},
		{"unit", with(func(c *fakeCaller) { c.unit = "mm-prod.service" }), OpGet, "n/a", "by-unit"},
		{"unit other", with(func(c *fakeCaller) { c.unit = "mm-test.service" }), OpGet, "n/a", ""},
		{"unit none", &bot, OpGet, "n/a", ""},
		{"and both", with(func(c *fakeCaller) { c.unit = "mm-prod.service" }), OpGet, "and/a", "and"},
		{"and user only", &bot, OpGet, "and/a", ""},
		{"and unit only", with(func(c *fakeCaller) { c.uid, c.unit = 1003, "mm-prod.service" }), OpGet, "and/a", ""},
		{"root without rule", with(func(c *fakeCaller) { c.uid, c.gid = 0, 0 }), OpGet, "u/a", ""},
		{"root with rule", with(func(c *fakeCaller) { c.uid, c.gid = 0, 0 }), OpGet, "root/a", "root"},
		{"root rule not for others", &bot, OpGet, "root/a", ""},
		{"op not granted", &bot, OpGet, "l/x", ""},
		{"op granted", &bot, OpList, "l/x", "list-only"},
		{"first wins", &bot, OpGet, "f/a", "first"},
		{"first wins deep", &bot, OpWatch, "f/a/b", "first"},
		{"second grants admin", &bot, OpAdmin, "f/a", "second"},
		{"admin not granted", &bot, OpAdmin, "f/b", ""},
		{"unknown secret", &bot, OpGet, "nope/x", ""},
		{"invalid name", &bot, OpGet, "f/../u/a", ""},
		{"empty name", &bot, OpGet, "", ""},
		{"pattern as name", &bot, OpGet, "f/*", ""},
		{"zero op", &bot, Op(0), "f/a", ""},
		{"unknown op", &bot, Op(9), "f/a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.c, tt.op, tt.secret)
			if d.Allowed != (tt.rule != "") || d.Rule != tt.rule {
				t.Errorf("Decide(%v, %v, %q) = %+v, want rule %q", tt.c, tt.op, tt.secret, d, tt.rule)
			}
			if d.Limiter != nil {
				t.Errorf("Decide(%v, %v, %q).Limiter = %p, want nil", tt.c, tt.op, tt.secret, d.Limiter)
			}
			if d.Reason == "" {
				t.Errorf("Decide(%v, %v, %q).Reason is empty", tt.c, tt.op, tt.secret)
			}
		})
	}
}

func TestDecideReason(t *testing.T) {
	p := mustParse(t, decidePolicy)
	bot := &fakeCaller{uid: 1001}
	tests := []struct {
		op     Op
		secret string
		want   string
	}{
		{OpGet, "u/a", `rule "by-user" grants get on u/a`},
		{OpWatch, "f/b/c", `rule "first" grants watch on f/**`},
		{OpGet, "okx/a", `no rule grants get on "okx/a" to this caller`},
		{OpGet, "A", `not a valid secret name`},
		{Op(7), "u/a", `unknown operation op(7)`},
	}
	for _, tt := range tests {
		t.Run(tt.secret, func(t *testing.T) {
			if got := p.Decide(bot, tt.op, tt.secret).Reason; got != tt.want {
				t.Errorf("Decide(%v, %v, %q).Reason = %q, want %q", bot, tt.op, tt.secret, got, tt.want)
			}
		})
	}
}

// TestDecideNoLeak checks that a secret the caller may not have and one that
// no rule names get the same decision, reason aside.
func TestDecideNoLeak(t *testing.T) {
	p := mustParse(t, decidePolicy)
	c := &fakeCaller{uid: 1003}
	denied := p.Decide(c, OpGet, "u/a")
	unknown := p.Decide(c, OpGet, "nope/a")
	denied.Reason, unknown.Reason = "", ""
	if denied != unknown || denied.Allowed {
		t.Errorf("Decide(%v, get, u/a) = %+v, Decide(nope/a) = %+v, want the same denial", c, denied, unknown)
	}
}

// TestExeSHA256Lazy checks that the costly hash is computed only when a
// rule that could decide has exe_sha256, and at most once per call.
func TestExeSHA256Lazy(t *testing.T) {
	p := mustParse(t, decidePolicy)
	tests := []struct {
		name  string
		call  func(c *fakeCaller)
		calls int
	}{
		{"decide without sha256", func(c *fakeCaller) { p.Decide(c, OpGet, "u/a") }, 0},
		{"decide other secret", func(c *fakeCaller) { p.Decide(c, OpGet, "nope/a") }, 0},
		{"decide with sha256", func(c *fakeCaller) { p.Decide(c, OpGet, "s/a") }, 1},
		{"visible without a list grant", func(c *fakeCaller) { p.Visible(c, []string{"s/a", "s/a", "u/a"}) }, 0},
		{"explain", func(c *fakeCaller) { p.Explain(c, OpGet, "s/a") }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeCaller{uid: 1001, sum: sumB}
			tt.call(c)
			if c.sums != tt.calls {
				t.Errorf("ExeSHA256 called %d times, want %d", c.sums, tt.calls)
			}
		})
	}
}

func TestDecideLimiter(t *testing.T) {
	p := mustParse(t, `
[[rule]]
name    = "limited"
secrets = ["a"]
groups  = ["2000"]
allow   = ["get"]
rate    = 2.5

[[rule]]
name    = "free"
secrets = ["b"]
groups  = ["2000"]
allow   = ["get"]
`)
	p.maxLimiters = 2
	caller := func(uid uint32) Caller { return &fakeCaller{uid: uid, gid: 2000} }
	l1 := p.Decide(caller(1), OpGet, "a").Limiter
	l2 := p.Decide(caller(2), OpGet, "a").Limiter
	l3 := p.Decide(caller(3), OpGet, "a").Limiter
	l4 := p.Decide(caller(4), OpGet, "a").Limiter
	switch {
	case l1 == nil || l2 == nil || l1 == l2:
		t.Errorf("Decide(uid 1, 2).Limiter = %p, %p, want two limiters", l1, l2)
	case p.Decide(caller(1), OpGet, "a").Limiter != l1:
		t.Errorf("Decide(uid 1).Limiter changed")
	case l3 == nil || l3 != l4 || l3 == l1 || l3 == l2:
		t.Errorf("Decide(uid 3, 4).Limiter = %p, %p, want one shared overflow limiter", l3, l4)
	}
	if l := p.Decide(caller(1), OpGet, "b").Limiter; l != nil {
		t.Errorf("Decide(b).Limiter = %p, want nil without rate", l)
	}
	if l1 != nil && l1.l.Burst() != 3 {
		t.Errorf("burst = %v, want ceil(rate) = 3", l1.l.Burst())
	}
	reloaded := mustParse(t, `
[[rule]]
name    = "limited"
secrets = ["a"]
groups  = ["2000"]
allow   = ["get"]
rate    = 2.5
`)
	if l := reloaded.Decide(caller(1), OpGet, "a").Limiter; l == nil || l == l1 {
		t.Errorf("reloaded Decide(uid 1).Limiter = %p, want a fresh limiter", l)
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, decidePolicy)
	tests := []struct {
		name   string
		c      *fakeCaller
		op     Op
		secret string
		want   []string
	}{
		{"uid", &fakeCaller{uid: 1002}, OpGet, "u/a", []string{"rule by-user: uid 1002 is not in users [1001]"}},
		{"first and second", &fakeCaller{uid: 1001}, OpGet, "f/a", []string{
			"rule first: grants get on f/** to this caller: this rule decides",
			"rule second: would grant get on f/a too, but rule first comes first",
		}},
		{"op and unit", &fakeCaller{uid: 1001}, OpList, "and/a", []string{
			`rule and: grants get, not list; unit "" is not in units ["mm-prod.service"]`,
		}},
		{"sha256 error", &fakeCaller{uid: 1001, sumErr: errors.New("gone")}, OpGet, "s/a", []string{
			"rule by-sum: the exe's sha256 is unknown (gone), so exe_sha256 does not match",
		}},
		{"no rule", &fakeCaller{uid: 1001}, OpGet, "x", []string{`no rule's secrets match "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, lines := p.Explain(tt.c, tt.op, tt.secret)
			if want := p.Decide(tt.c, tt.op, tt.secret); d != want {
				t.Errorf("Explain(%v, %v, %q) decision = %+v, want %+v", tt.c, tt.op, tt.secret, d, want)
			}
			if !slices.Equal(lines, tt.want) {
				t.Errorf("Explain(%v, %v, %q) =\n%s\nwant\n%s", tt.c, tt.op, tt.secret, strings.Join(lines, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestVisible(t *testing.T) {
	p := mustParse(t, `
[[rule]]
name    = "list-and-get"
secrets = ["a/*"]
users   = ["1001"]
allow   = ["get", "list"]

[[rule]]
name    = "get-only"
secrets = ["b/*"]
users   = ["1001"]
allow   = ["get"]

[[rule]]
name    = "list-only"
secrets = ["c/*"]
users   = ["1001"]
allow   = ["list"]

[[rule]]
name    = "list-wide"
secrets = ["d/**"]
users   = ["1001"]
allow   = ["list"]

[[rule]]
name    = "get-narrow"
secrets = ["d/x"]
users   = ["1001"]
allow   = ["get"]
`)
	names := []string{"a/1", "a/2", "b/1", "c/1", "d/x", "d/y", "e/1"}
	tests := []struct {
		name string
		c    *fakeCaller
		want []string
	}{
		{"granted", &fakeCaller{uid: 1001}, []string{"a/1", "a/2", "d/x"}},
		{"other uid", &fakeCaller{uid: 1002}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Visible(tt.c, names); !slices.Equal(got, tt.want) {
				t.Errorf("Visible(%v) = %q, want %q", tt.c, got, tt.want)
			}
		})
	}
}

func TestParseOp(t *testing.T) {
	for _, op := range []Op{OpGet, OpList, OpWatch, OpAdmin} {
		got, err := ParseOp(op.String())
		if err != nil || got != op {
			t.Errorf("ParseOp(%q) = %v, %v, want %v", op.String(), got, err, op)
		}
	}
	for _, s := range []string{"", "GET", "read", "op(1)"} {
		if got, err := ParseOp(s); err == nil {
			t.Errorf("ParseOp(%q) = %v, want an error", s, got)
		}
	}
}

// benchPolicy returns a policy of n rules, each for its own uid, in the
// shape of a host running n bots; every other rule has a rate limit.
func benchPolicy(b *testing.B, n int) *Policy {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `
[[rule]]
name    = "bot-%d"
secrets = ["venue%d/mm", "venue%d/hedge", "shared/%d/*"]
users   = ["%d"]
groups  = ["2000"]
allow   = ["get", "list"]
`, i, i, i, i, 1000+i)
		if i%2 == 1 {
			sb.WriteString("rate = 1000.0\n")
		}
	}
	return mustParse(b, sb.String())
}

func BenchmarkDecide(b *testing.B) {
	p := benchPolicy(b, 20)
	bench := func(name string, c Caller, secret string, allowed bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := p.Decide(c, OpGet, secret); d.Allowed != allowed {
					b.Fatalf("Decide(%v, get, %q) = %+v", c, secret, d)
				}
			}
		})
	}
	first := &fakeCaller{uid: 1000, gid: 2000}
	last := &fakeCaller{uid: 1019, gid: 2000, groups: []uint32{10, 2001}}
	// The fake's Groups copies, as the agent's peer does: one allocation.
	supplementary := &fakeCaller{uid: 1000, gid: 1000, groups: []uint32{10, 2000}}
	bench("first-rule-exact", first, "venue0/mm", true)
	bench("first-rule-supplementary-group", supplementary, "venue0/mm", true)
	bench("last-rule-exact-rate", last, "venue19/hedge", true)
	bench("last-rule-glob-rate", last, "shared/19/key", true)
	bench("deny", last, "venue0/mm", false)
}

func TestDecideConcurrent(t *testing.T) {
	p := mustParse(t, `
[[rule]]
name    = "limited"
secrets = ["a/**"]
groups  = ["2000"]
allow   = ["get"]
rate    = 1
burst   = 1
`)
	p.maxLimiters = 8
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				c := &fakeCaller{uid: uint32(g*1000 + i%20), gid: 2000}
				d := p.Decide(c, OpGet, "a/b")
				if !d.Allowed || d.Limiter == nil {
					t.Errorf("Decide(%v, get, a/b) = %+v, want allowed with a limiter", c, d)
					return
				}
				d.Limiter.Allow()
			}
		})
	}
	wg.Wait()
	if n := p.limiters.Load(); n != 8 {
		t.Errorf("%d limiters, want the bound 8", n)
	}
}

func TestNames(t *testing.T) {
	p := mustParse(t, decidePolicy)
	if !p.Names(&fakeCaller{uid: 1001}) {
		t.Error("Names(uid 1001) = false, want true")
	}
	if p.Names(&fakeCaller{uid: 4242}) {
		t.Error("Names(uid 4242) = true, want false")
	}
}

func TestExeWarnings(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "python3.11")
	link := filepath.Join(dir, "python3")
	bot := filepath.Join(dir, "mm-bot")
	for _, p := range []string{real, bot} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	p, err := Parse([]byte(fmt.Sprintf(`
[[rule]]
name = "scripts"
secrets = ["a"]
users = ["1000"]
exes = [%q, %q, %q]
allow = ["get"]
`, link, real, bot)))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.ExeWarnings(), "\n")
	for _, want := range []string{
		link + " is a symbolic link to " + real + " and never matches",
		link + " is an interpreter",
		real + " is an interpreter",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ExeWarnings() = %q, want a line with %q", got, want)
		}
	}
	if strings.Contains(got, bot) {
		t.Errorf("ExeWarnings() = %q, warns about %s, an ordinary binary", got, bot)
	}
	if ResolveExe(link) != real || ResolveExe("/no/such/file") != "/no/such/file" {
		t.Errorf("ResolveExe(%s) = %s, want %s", link, ResolveExe(link), real)
	}
}
