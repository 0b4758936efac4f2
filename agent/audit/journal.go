package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/systemd"
)

// The journal is read through journalctl rather than libsystemd's
// sd-journal: journalctl reads every journal format and compression the
// host's systemd writes, applies the reader's permissions (root, the
// groups systemd-journal and adm), and needs no C headers to build.

// JournalConfig says which journal [ReadJournal] reads.
type JournalConfig struct {
	// Dir is a journal directory (journalctl --directory), such as one
	// copied from another host; "" reads this host's journal.
	Dir string
	// Stderr receives journalctl's own messages (about permissions, for
	// one); nil discards them.
	Stderr io.Writer
}

// ReadJournal reads the audit events in the systemd journal
// (SYSLOG_IDENTIFIER=keyward-audit) with journalctl, oldest first, and
// calls fn with each event f selects. Entries that are not events are
// counted in skipped. An error from fn stops the reading.
func ReadJournal(ctx context.Context, jc JournalConfig, f Filter, fn func(*Record) error) (skipped int, err error) {
	bin, err := exec.LookPath("journalctl")
	if err != nil {
		return 0, errors.New("journalctl is not installed: the journal can be read only where systemd is")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, journalArgs(jc, f)...)
	cmd.Stderr = jc.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("failed to run journalctl: %w", err)
	}
	skipped, err = readJournal(out, f, fn)
	if err != nil {
		cancel()
		cmd.Wait()
		return skipped, err
	}
	if err := cmd.Wait(); err != nil {
		return skipped, fmt.Errorf("journalctl failed: %w", err)
	}
	return skipped, nil
}

// journalArgs selects in journalctl what it can (exact fields, whole
// seconds); Filter.Match does the rest.
func journalArgs(jc JournalConfig, f Filter) []string {
	args := []string{"--no-pager", "--all", "--output=json"}
	if jc.Dir != "" {
		args = append(args, "--directory="+jc.Dir)
	}
	if !f.Since.IsZero() {
		args = append(args, "--since=@"+strconv.FormatInt(f.Since.Unix(), 10))
	}
	if !f.Until.IsZero() {
		args = append(args, "--until=@"+strconv.FormatInt(f.Until.Unix()+1, 10))
	}
	args = append(args, "SYSLOG_IDENTIFIER="+systemd.AuditIdentifier)
	exact := func(field, v string) {
		if v != "" && !strings.ContainsAny(v, `*?[\`) {
			args = append(args, field+"="+v)
		}
	}
	exact("SECRET", f.Secret)
	exact("CALLER_UNIT", f.Unit)
	exact("DECISION", f.Decision)
	exact("OP", f.Op)
	if f.UID != nil {
		args = append(args, "CALLER_UID="+strconv.FormatUint(uint64(*f.UID), 10))
	}
	return args
}

// readJournal reads journalctl's JSON, one entry a line.
func readJournal(r io.Reader, f Filter, fn func(*Record) error) (skipped int, err error) {
	err = readEvents(r, "", parseJournal, matching(f, fn), func(*lineError) { skipped++ })
	return skipped, err
}

// parseJournal reads one entry of journalctl --output=json: an object
// whose values are strings, arrays of bytes (a value that is not text),
// arrays of those (a field given more than once: the first is used), or
// null (a value journalctl left out).
func parseJournal(line []byte) (Record, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return Record{}, err
	}
	var bad error
	str := func(k string) string {
		v, err := journalValue(m[k])
		if err != nil && bad == nil {
			bad = fmt.Errorf("%s: %w", k, err)
		}
		return v
	}
	num := func(k string, bits int) (uint64, bool) {
		s := str(k)
		if s == "" {
			return 0, false
		}
		n, err := strconv.ParseUint(s, 10, bits)
		if err != nil && bad == nil {
			bad = fmt.Errorf("%s: %w", k, err)
		}
		return n, true
	}
	if id := str("SYSLOG_IDENTIFIER"); id != systemd.AuditIdentifier {
		return Record{}, fmt.Errorf("not an audit entry (SYSLOG_IDENTIFIER=%q)", id)
	}
	usec, ok := num("__REALTIME_TIMESTAMP", 63)
	if !ok {
		return Record{}, errors.New("no __REALTIME_TIMESTAMP")
	}
	r := Record{
		Time: time.UnixMicro(int64(usec)), Level: journalLevel(str("PRIORITY")),
		Op: str("OP"), Decision: str("DECISION"), Secret: str("SECRET"), Code: str("CODE"),
		Rule: str("RULE"), Expires: str("EXPIRES"), Reason: str("REASON"),
		Exchange: str("EXCHANGE"), Method: str("METHOD"), Path: str("PATH"), Params: str("PARAMS"), Digest: str("DIGEST"),
	}
	v, _ := num("VERSION", 32)
	r.Version = uint32(v)
	if n, ok := num("SUPPRESSED", 63); ok {
		r.Suppressed = int64(n)
	}
	if n, ok := num("LATENCY_US", 63); ok {
		us := int64(n)
		r.Latency = &us
	}
	if pid, ok := num("CALLER_PID", 31); ok {
		uid, _ := num("CALLER_UID", 32)
		gid, _ := num("CALLER_GID", 32)
		r.Caller = &Caller{PID: int64(pid), UID: uint32(uid), GID: uint32(gid), Exe: str("CALLER_EXE"), Unit: str("CALLER_UNIT")}
	} else {
		r.CallerUID = str("CALLER_UID") // a denial-budget report's
	}
	if bad != nil {
		return Record{}, bad
	}
	return r, nil
}

// journalValue decodes one value of journalctl's JSON.
func journalValue(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var bytes []uint8
	if err := json.Unmarshal(raw, &bytes); err == nil {
		return string(bytes), nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(raw, &many); err == nil && len(many) > 0 && many[0][0] != '[' {
		return journalValue(many[0])
	}
	return "", errors.New("not a journal value")
}

// journalLevel maps a syslog priority to slog's level names.
func journalLevel(priority string) string {
	switch priority {
	case "0", "1", "2", "3":
		return "ERROR"
	case "4", "5":
		return "WARN"
	case "7":
		return "DEBUG"
	}
	return "INFO"
}
