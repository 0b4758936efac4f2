package audit_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/agent/audit"
)

// TestReadFiles: a file trail is queried by secret, uid, unit, decision,
// operation and time; lines that are not events are skipped and counted.
func TestReadFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	l.For(caller(1001, "mm.service")).Emit(audit.Event{Op: "get", Decision: audit.Allow, Secret: "binance/mm-prod", Version: 3,
		Rule: "bots", Latency: 9 * time.Microsecond})
	l.For(caller(1002, "risk.service")).Emit(audit.Event{Op: "get", Decision: audit.Deny, Secret: "okx/exec", Code: "denied"})
	waitLines(t, path, 3)
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	l.Emit(audit.Event{CallerUID: "1002", Decision: audit.Deny, Suppressed: 7})
	l.Emit(audit.Event{Op: "load", Decision: audit.Error, Secret: "binance/old", Version: 1})
	l.Emit(audit.Event{Op: "sign", Decision: audit.Allow, Secret: "kraken/mm", Signed: &audit.Signed{
		Exchange: "kraken", Method: "POST", Path: "/0/private/AddOrder", Params: []string{"nonce", "pair"}, Digest: [32]byte{0xab}}})
	if err := l.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("not an event\n")
	f.Close()

	uid := func(n uint32) *uint32 { return &n }
	for _, tc := range []struct {
		name   string
		filter audit.Filter
		want   []int // lines
	}{
		{"all", audit.Filter{}, []int{1, 2, 3, 4, 5, 6, 7}},
		{"secret glob", audit.Filter{Secret: "binance/*"}, []int{2, 5}},
		{"secret", audit.Filter{Secret: "okx/exec"}, []int{3}},
		{"uid, caller or denial report", audit.Filter{UID: uid(1002)}, []int{3, 4}},
		{"unit glob", audit.Filter{Unit: "mm*"}, []int{2}},
		{"decision", audit.Filter{Decision: "deny"}, []int{3, 4}},
		{"op", audit.Filter{Op: "load"}, []int{5}},
		{"since", audit.Filter{Since: mid, Decision: "deny"}, []int{4}},
		{"until", audit.Filter{Until: mid, Decision: "deny"}, []int{3}},
		{"nothing", audit.Filter{Secret: "binance/*", Decision: "deny"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.filter.Check(); err != nil {
				t.Fatal(err)
			}
			var got []int
			skipped, err := audit.ReadFiles([]string{path}, tc.filter, func(r *audit.Record) error {
				got = append(got, r.Line)
				return nil
			})
			if err != nil || skipped != 1 {
				t.Fatalf("ReadFiles = %d skipped, %v; want 1 skipped", skipped, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("lines %v, want %v", got, tc.want)
			}
		})
	}

	var sign *audit.Record
	audit.ReadFiles([]string{path}, audit.Filter{Op: "sign"}, func(r *audit.Record) error { sign = r; return nil })
	if sign == nil || sign.Exchange != "kraken" || sign.Method != "POST" || sign.Path != "/0/private/AddOrder" ||
		sign.Params != "nonce,pair" || !strings.HasPrefix(sign.Digest, "ab00") {
		t.Errorf("sign record = %+v", sign)
	}
	var get *audit.Record
	audit.ReadFiles([]string{path}, audit.Filter{Secret: "binance/mm-prod"}, func(r *audit.Record) error { get = r; return nil })
	if get == nil || get.Caller == nil || get.Caller.UID != 1001 || get.Caller.Unit != "mm.service" || get.Caller.Exe != "/opt/mm/bin/mm" ||
		get.Version != 3 || get.Rule != "bots" || get.Latency == nil || *get.Latency != 9 || get.Seq != 2 || !audit.IsHash(get.Hash) || get.File != path {
		t.Errorf("record = %+v", get)
	}
}

// TestFilterCheck: a filter that cannot match as meant is refused.
func TestFilterCheck(t *testing.T) {
	now := time.Now()
	for _, f := range []audit.Filter{
		{Secret: "binance/["},
		{Unit: "["},
		{Decision: "maybe"},
		{Since: now, Until: now.Add(-time.Hour)},
	} {
		if err := f.Check(); err == nil {
			t.Errorf("Check(%+v) = nil", f)
		}
	}
}
