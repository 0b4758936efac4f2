package policy

import (
	"bytes"
	"slices"
	"testing"

	"github.com/keyward/keyward/agent/exchange"

	"github.com/keyward/keyward/internal/secretname"
)

// FuzzParse checks that Parse never panics and that a policy it accepts
// answers Decide, Explain and Visible for a fixed caller without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ruleTable("r", "rate = 2.5\nburst = 3")))
	f.Add([]byte("[[rule]]\nname = \"a\"\nsecrets = [\"*/**\", \"b?/[a-c]*\"]\ngroups = [\"root\"]\nallow = [\"admin\"]\n"))
	f.Add([]byte(budgetPolicy))
	f.Add([]byte("[[rule]]\nname = \"s\"\nsecrets = [\"binance/*\"]\nusers = [\"1001\"]\nallow = [\"sign\"]\nrequests = [\"GET /**\", \"POST /api/*/order\", \"WS *\"]\nparams = [\"symbol\"]\nsymbols = [\"BTCUSDT\"]\n"))
	order := exchange.Request{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Body: []byte("symbol=BTCUSDT&side=BUY&address=x")}
	signed, err := exchange.Parse(exchange.Binance, &order)
	if err != nil {
		f.Fatal(err)
	}
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
			for op := Op(0); op <= OpHMAC+1; op++ {
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
			d := p.DecideSign(c, n, signed)
			if d.Allowed && !bytes.Contains(b, []byte(`"address"`)) {
				// The order carries a fund-movement parameter: only a
				// rule that lists it in params may sign it.
				t.Fatalf("DecideSign(%v, %q, order with address) = %+v, and no params lists address", c, n, d)
			}
			if e, _ := p.ExplainSign(c, n, signed); e != d {
				t.Fatalf("ExplainSign = %+v, want DecideSign's %+v", e, d)
			}
			p.Charge(n, "binance k", signed.Method, signed.Path)
		}
		for _, n := range p.Visible(c, names) {
			if !slices.Contains(names, n) || !p.Decide(c, OpGet, n).Allowed || !p.Decide(c, OpList, n).Allowed {
				t.Fatalf("Visible(%v) returned %q, which it may not list and get", c, n)
			}
		}
	})
}
