package systemd

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

// sentEntry is one entry the handler gave the journal.
type sentEntry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func captureJournal(t *testing.T, fail error) *[]sentEntry {
	t.Helper()
	var mu sync.Mutex
	var sent []sentEntry
	old := journalSend
	journalSend = func(msg string, pri journal.Priority, vars map[string]string) error {
		if fail != nil {
			return fail
		}
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, sentEntry{msg, pri, vars})
		return nil
	}
	t.Cleanup(func() { journalSend = old })
	return &sent
}

// redacted stands for a secret: it logs as "[redacted]" only.
type redacted []byte

func (redacted) LogValue() slog.Value { return slog.StringValue("[redacted]") }

func TestJournalHandler(t *testing.T) {
	sent := captureJournal(t, nil)
	log := slog.New(NewJournalHandler(AuditIdentifier, &bytes.Buffer{}, nil))
	caller := slog.Group("caller", slog.Int("pid", 42), slog.Uint64("uid", 1001), slog.String("exe", "/opt/mm/bin/mm"))
	log.With(caller).Info("decision", "op", "get", "decision", "allow", "secret", "binance/mm-prod",
		"value", redacted("correct-horse"), "message", "not the MESSAGE", "reason", `rule "mm" grants get`)
	log.Debug("not at info")
	log.WithGroup("backend").Error("unhealthy", "err", errors.New("hsm: token gone"))

	if len(*sent) != 2 {
		t.Fatalf("sent %d entries, want 2 (debug is below the level)", len(*sent))
	}
	e := (*sent)[0]
	want := map[string]string{
		"SYSLOG_IDENTIFIER": "keyward-audit",
		"CALLER_PID":        "42",
		"CALLER_UID":        "1001",
		"CALLER_EXE":        "/opt/mm/bin/mm",
		"OP":                "get",
		"DECISION":          "allow",
		"SECRET":            "binance/mm-prod",
		"VALUE":             "[redacted]",
		"KEYWARD_MESSAGE":   "not the MESSAGE",
		"REASON":            `rule "mm" grants get`,
	}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("field %s = %q, want %q", k, e.vars[k], v)
		}
	}
	if len(e.vars) != len(want) {
		t.Errorf("fields = %v, want exactly %v", e.vars, want)
	}
	if e.pri != journal.PriInfo {
		t.Errorf("priority = %d, want %d", e.pri, journal.PriInfo)
	}
	wantMsg := `decision caller.pid=42 caller.uid=1001 caller.exe=/opt/mm/bin/mm op=get decision=allow ` +
		`secret=binance/mm-prod value=[redacted] message="not the MESSAGE" reason="rule \"mm\" grants get"`
	if e.msg != wantMsg {
		t.Errorf("MESSAGE = %q\nwant      %q", e.msg, wantMsg)
	}
	if strings.Contains(e.msg, "correct-horse") {
		t.Error("a redacted value reached the journal")
	}

	e = (*sent)[1]
	if e.pri != journal.PriErr || e.vars["BACKEND_ERR"] != "hsm: token gone" || e.msg != "unhealthy backend.err=\"hsm: token gone\"" {
		t.Errorf("error entry = %+v", e)
	}
}

func TestJournalFieldNames(t *testing.T) {
	for key, want := range map[string]string{
		"uid":               "UID",
		"latency_us":        "LATENCY_US",
		"agent.socket":      "AGENT_SOCKET",
		"priority":          "KEYWARD_PRIORITY",
		"syslog_identifier": "KEYWARD_SYSLOG_IDENTIFIER",
		"_pid":              "KEYWARD_PID",
		"9lives":            "KEYWARD_9LIVES",
		"unit":              "KEYWARD_UNIT",
		"ünïcode key":       "KEYWARD_N_CODE_KEY",
	} {
		if got := safeFieldName(fieldName(key)); got != want {
			t.Errorf("field name of %q = %q, want %q", key, got, want)
		}
	}
}

// TestJournalFallback: when journald refuses an entry it goes to the
// fallback writer as JSON rather than being lost.
func TestJournalFallback(t *testing.T) {
	captureJournal(t, errors.New("no journald"))
	var buf bytes.Buffer
	log := slog.New(NewJournalHandler(LogIdentifier, &buf, nil))
	log.With("socket", "/run/keyward/agent.sock").Warn("agent ready", "secrets", 3)
	if got := buf.String(); !strings.Contains(got, `"msg":"agent ready"`) || !strings.Contains(got, `"secrets":3`) ||
		!strings.Contains(got, `"socket":"/run/keyward/agent.sock"`) {
		t.Errorf("fallback output = %q", got)
	}
}
