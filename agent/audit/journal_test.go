package audit

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// journalEntries are lines of journalctl --output=json for entries the
// agent's journal handler writes (package systemd), and others.
var journalEntries = []string{
	// a request
	`{"__REALTIME_TIMESTAMP":"1700000000123456","PRIORITY":"6","SYSLOG_IDENTIFIER":"keyward-audit","MESSAGE":"decision caller.pid=42 op=get",` +
		`"CALLER_PID":"42","CALLER_UID":"1001","CALLER_GID":"1001","CALLER_EXE":"/opt/mm/bin/mm","CALLER_UNIT":"mm.service",` +
		`"OP":"get","DECISION":"allow","SECRET":"binance/mm-prod","VERSION":"3","RULE":"bots","REASON":"rule bots grants get","LATENCY_US":"9"}`,
	// an executable path that is not UTF-8 comes as bytes; a field given twice as an array
	`{"__REALTIME_TIMESTAMP":"1700000001000000","PRIORITY":"6","SYSLOG_IDENTIFIER":"keyward-audit","CALLER_PID":"43","CALLER_UID":"1002",` +
		`"CALLER_GID":"1002","CALLER_EXE":[47,120,255],"OP":["get","list"],"DECISION":"deny","SECRET":"okx/exec","CODE":"denied","REASON":null,"LATENCY_US":"4"}`,
	// a signature
	`{"__REALTIME_TIMESTAMP":"1700000001500000","PRIORITY":"6","SYSLOG_IDENTIFIER":"keyward-audit","CALLER_PID":"44","CALLER_UID":"1001",` +
		`"CALLER_GID":"1001","CALLER_EXE":"/opt/mm","OP":"sign","DECISION":"allow","SECRET":"kraken/mm","EXCHANGE":"kraken","METHOD":"POST",` +
		`"PATH":"/0/private/AddOrder","PARAMS":"nonce,pair","DIGEST":"ab00","LATENCY_US":"30"}`,
	// a denial-budget report: CALLER_UID without a caller
	`{"__REALTIME_TIMESTAMP":"1700000002000000","PRIORITY":"4","SYSLOG_IDENTIFIER":"keyward-audit","CALLER_UID":"1002","DECISION":"deny","SUPPRESSED":"7"}`,
	// the operational log
	`{"__REALTIME_TIMESTAMP":"1700000003000000","PRIORITY":"6","SYSLOG_IDENTIFIER":"keyward","MESSAGE":"agent ready"}`,
	// a version out of range
	`{"__REALTIME_TIMESTAMP":"1700000004000000","PRIORITY":"6","SYSLOG_IDENTIFIER":"keyward-audit","OP":"get","VERSION":"4294967296"}`,
	"not json",
}

// TestParseJournal: journal entries become records with the fields of a
// file trail's events; entries that are not audit events are skipped.
func TestParseJournal(t *testing.T) {
	var got []Record
	skipped, err := readJournal(strings.NewReader(strings.Join(journalEntries, "\n")+"\n"), Filter{}, func(r *Record) error {
		got = append(got, *r)
		return nil
	})
	if err != nil || skipped != 3 || len(got) != 4 {
		t.Fatalf("readJournal = %d records, %d skipped, %v; want 4 and 3", len(got), skipped, err)
	}
	get := got[0]
	if !get.Time.Equal(time.UnixMicro(1700000000123456)) || get.Level != "INFO" || get.Caller == nil || *get.Caller != (Caller{PID: 42, UID: 1001, GID: 1001, Exe: "/opt/mm/bin/mm", Unit: "mm.service"}) ||
		get.Op != "get" || get.Decision != "allow" || get.Secret != "binance/mm-prod" || get.Version != 3 || get.Rule != "bots" ||
		get.Latency == nil || *get.Latency != 9 {
		t.Errorf("request = %+v", get)
	}
	if deny := got[1]; deny.Caller.Exe != "/x\xff" || deny.Op != "get" || deny.Code != "denied" || deny.Reason != "" {
		t.Errorf("second entry = %+v", deny)
	}
	if sign := got[2]; sign.Exchange != "kraken" || sign.Method != "POST" || sign.Path != "/0/private/AddOrder" || sign.Params != "nonce,pair" || sign.Digest != "ab00" {
		t.Errorf("signature = %+v", sign)
	}
	if report := got[3]; report.Caller != nil || report.CallerUID != "1002" || report.Suppressed != 7 || report.Level != "WARN" {
		t.Errorf("report = %+v", report)
	}
}

// TestJournalArgs: journalctl selects the exact fields and whole seconds;
// a glob is left to the filter.
func TestJournalArgs(t *testing.T) {
	uid := uint32(1001)
	since := time.Unix(1700000000, 500)
	args := journalArgs(JournalConfig{Dir: "/srv/journal"}, Filter{Secret: "binance/*", Unit: "mm.service", Decision: "deny", UID: &uid, Since: since, Until: since.Add(time.Hour)})
	want := []string{"--no-pager", "--all", "--output=json", "--directory=/srv/journal", "--since=@1700000000", "--until=@1700003601",
		"SYSLOG_IDENTIFIER=keyward-audit", "CALLER_UNIT=mm.service", "DECISION=deny", "CALLER_UID=1001"}
	if !slices.Equal(args, want) {
		t.Errorf("journalArgs = %q\nwant %q", args, want)
	}
}
