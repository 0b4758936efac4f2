package policy

import (
	"slices"
	"testing"

	"github.com/keyward/keyward/internal/secretname"
)

// FuzzParse checks that Parse never panics and that a policy it accepts
// answers Decide, Explain and Visible for a fixed caller without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ruleTable("r", "rate = 2.5\nburst = 3")))
	f.Add([]byte("[[rule]]\nname = \"a\"\nsecrets = [\"*/**\", \"b?/[a-c]*\"]\ngroups = [\"root\"]\nallow = [\"admin\"]\n"))
	names := []string{"a", "binance/mm", "f/a", "f/a/b", "s/a", "u/a", "A", "", "a/../b"}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse(%q) = %v and a policy", b, err)
			}
			return
		}
		c := &fakeCaller{uid: 1001, gid: 2000, groups: []uint32{0, 10}, exe: "/opt/mm/bin/mm", unit: "mm-prod.service", sum: sumA}
		for _, n := range names {
			for op := Op(0); op <= OpAdmin+1; op++ {
				d := p.Decide(c, op, n)
				if d.Allowed != (d.Rule != "") || d.Reason == "" {
					t.Fatalf("Decide(%v, %v, %q) = %+v", c, op, n, d)
				}
				if d.Allowed && (!op.valid() || !secretname.Valid(n)) {
					t.Fatalf("Decide(%v, %v, %q) = %+v, want denied", c, op, n, d)
				}
			}
			if e, _ := p.Explain(c, OpGet, n); e != p.Decide(c, OpGet, n) {
				t.Fatalf("Explain(%v, get, %q) = %+v, want Decide's decision", c, n, e)
			}
		}
		for _, n := range p.Visible(c, names) {
			if !slices.Contains(names, n) || !p.Decide(c, OpGet, n).Allowed || !p.Decide(c, OpList, n).Allowed {
				t.Fatalf("Visible(%v) returned %q, which it may not list and get", c, n)
			}
		}
	})
}
