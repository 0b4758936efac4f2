package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/internal/config"
)

// exitAuditBroken is the exit status of `keyward audit verify` when the
// trail is not as the agent wrote it (docs/audit.md).
const exitAuditBroken = 3

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "show audit events of the file trail or the journal, by secret, caller, decision and time",
		Description: "audit prints the events that every selection matches, oldest first: by default from\n" +
			"agent.audit_log, or from the journal (journalctl -t keyward-audit) when that is \"stderr\".\n" +
			"A file trail is readable by root and the keyward user. See docs/audit.md.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Usage: "read this file trail; repeat for rotated files, oldest first (.gz is read)"},
			&cli.BoolFlag{Name: "journal", Usage: "read the systemd journal"},
			&cli.StringFlag{Name: "journal-dir", Usage: "read the journal files in `DIR` (journalctl --directory)"},
			&cli.StringFlag{Name: "secret", Usage: "a secret name, or a glob such as binance/*"},
			&cli.StringFlag{Name: "uid", Usage: "the caller's user: a uid or a user name"},
			&cli.StringFlag{Name: "unit", Usage: "the caller's systemd unit, or a glob"},
			&cli.StringFlag{Name: "decision", Usage: "allow, deny or error"},
			&cli.StringFlag{Name: "op", Usage: "the operation: get, list, put, remove, prune, load, …"},
			&cli.StringFlag{Name: "since", Usage: "events at or after `TIME`: 2026-05-01T09:00:00Z, 2026-05-01 09:00, 2026-05-01, today, yesterday, or a duration ago (90m, 7d)"},
			&cli.StringFlag{Name: "until", Usage: "events before `TIME`, written as for --since"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per event (JSON Lines)"},
		},
		Action:      auditQuery,
		Subcommands: []*cli.Command{auditVerifyCommand()},
	}
}

func auditQuery(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("audit takes no arguments (select with --secret, --uid, --unit, --decision, --op, --since, --until; check a file with audit verify)")
	}
	f, err := auditFilter(c, time.Now())
	if err != nil {
		return err
	}
	files := c.StringSlice("file")
	journal := c.Bool("journal") || c.IsSet("journal-dir")
	if len(files) > 0 && journal {
		return usagef("read either --file or the journal, not both")
	}
	if len(files) == 0 && !journal {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		if cfg.Agent.AuditLog == "stderr" {
			journal = true
		} else {
			files = []string{cfg.Agent.AuditLog}
		}
	}
	out := printRecord(c.App.Writer, c.Bool("json"))
	if journal {
		// journalctl says on standard error what it cannot read, and why.
		_, err := audit.ReadJournal(c.Context, audit.JournalConfig{Dir: c.String("journal-dir"), Stderr: c.App.ErrWriter}, f, out)
		return err
	}
	skipped, err := audit.ReadFiles(files, f, out)
	if err != nil {
		return trailError(err)
	}
	if skipped > 0 {
		warn(c.App.ErrWriter, fmt.Sprintf("%d line(s) are not audit events and were skipped", skipped),
			"keyward audit verify "+strings.Join(files, " ")+" says where they are")
	}
	return nil
}

// auditFilter reads the selection flags.
func auditFilter(c *cli.Context, now time.Time) (audit.Filter, error) {
	f := audit.Filter{Secret: c.String("secret"), Unit: c.String("unit"), Decision: c.String("decision"), Op: c.String("op")}
	if s := c.String("uid"); s != "" {
		uid, err := lookupUID(s)
		if err != nil {
			return f, err
		}
		f.UID = &uid
	}
	for _, t := range []struct {
		flag string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := c.String(t.flag); s != "" {
			when, err := parseWhen(s, now)
			if err != nil {
				return f, usagef("--%s %q is not a time: write 2026-05-01T09:00:00Z, 2026-05-01 09:00, 2026-05-01, today, yesterday, or a duration ago such as 90m or 7d", t.flag, s)
			}
			*t.to = when
		}
	}
	if err := f.Check(); err != nil {
		return f, usagef("%v", err)
	}
	return f, nil
}

// parseWhen reads a time as --since and --until take it: RFC 3339, a
// local date and time, a local date, today or yesterday (at midnight), or
// a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := config.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	switch s {
	case "today":
		return midnight, nil
	case "yesterday":
		return midnight.AddDate(0, 0, -1), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

// printRecord returns the function that prints each event.
func printRecord(w io.Writer, asJSON bool) func(*audit.Record) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return func(r *audit.Record) error { return enc.Encode(r) }
	}
	return func(r *audit.Record) error {
		_, err := io.WriteString(w, recordText(r)+"\n")
		return err
	}
}

// recordText is an event on one line: time, decision, operation, secret,
// then the other fields as key=value.
func recordText(r *audit.Record) string {
	var b strings.Builder
	b.WriteString(r.Time.Format("2006-01-02T15:04:05.000Z07:00"))
	for _, s := range []string{r.Decision, r.Op} {
		b.WriteByte(' ')
		b.WriteString(cmp.Or(s, "-"))
	}
	b.WriteByte(' ')
	switch {
	case r.Secret == "":
		b.WriteString("-")
	case r.Version != 0:
		fmt.Fprintf(&b, "%s@%d", r.Secret, r.Version)
	default:
		b.WriteString(r.Secret)
	}
	kv := func(k, v string) {
		if v == "" {
			return
		}
		if strings.ContainsAny(v, " \"=") || strconv.Quote(v) != `"`+v+`"` {
			v = strconv.Quote(v)
		}
		b.WriteString(" " + k + "=" + v)
	}
	if p := r.Caller; p != nil {
		kv("uid", strconv.FormatUint(uint64(p.UID), 10))
		kv("pid", strconv.FormatInt(p.PID, 10))
		kv("unit", p.Unit)
		kv("exe", p.Exe)
	}
	kv("uid", r.CallerUID)
	kv("code", r.Code)
	kv("rule", r.Rule)
	kv("expires", r.Expires)
	kv("exchange", r.Exchange)
	kv("method", r.Method)
	kv("path", r.Path)
	kv("params", r.Params)
	kv("digest", r.Digest)
	if r.Suppressed != 0 {
		kv("suppressed", strconv.FormatInt(r.Suppressed, 10))
	}
	kv("reason", r.Reason)
	return b.String()
}

// trailError adds what to do to an error reading a file trail.
func trailError(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return withHint(err, "a file trail is readable by root and the keyward user only: run as one of them")
	case errors.Is(err, fs.ErrNotExist):
		return withHint(err, "agent.audit_log says where the agent writes; with \"stderr\" its events are in the journal: keyward audit --journal")
	}
	return err
}

func auditVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a file trail's hash chain: find events deleted, inserted, moved or edited, and say where",
		ArgsUsage: "FILE...",
		Description: "verify reads the files as one trail, in the order given (rotated files oldest first;\n" +
			".gz is read), and lists each problem as FILE:LINE: kind (event time): what is wrong.\n" +
			"It ends with the trail's head: record it off the host, and a later --head HASH finds a\n" +
			"trail cut or rewritten since. Exit status: 0 the trail is as the agent wrote it, 1 it could\n" +
			"not be read, 2 a usage error, 3 a problem was found. See docs/audit.md.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "head", Usage: "a head recorded earlier (`HASH`) that must be in the trail; repeatable"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as one JSON object"},
		},
		OnUsageError: onUsageError,
		Action: func(c *cli.Context) error {
			paths := c.Args().Slice()
			if len(paths) == 0 {
				return usagef("audit verify takes the file trail to check (rotated files first, oldest first)")
			}
			heads := c.StringSlice("head")
			for _, h := range heads {
				if !audit.IsHash(h) {
					return usagef("--head %q is not a head: 64 lower-case hex digits, as verify prints them", h)
				}
			}
			rep, err := audit.Verify(paths, heads)
			if err != nil {
				return trailError(err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printReport(c.App.Writer, rep)
			}
			if !rep.OK() {
				return cli.Exit(fmt.Sprintf("the audit trail is not as the agent wrote it: %d problem(s)", len(rep.Problems)), exitAuditBroken)
			}
			return nil
		},
	}
}

// printReport prints a verify report for a person.
func printReport(w io.Writer, rep *audit.Report) {
	at := func(m *audit.Mark) string {
		return fmt.Sprintf("%s line %d (%s)", m.File, m.Line, m.Time.Format(time.RFC3339Nano))
	}
	for _, p := range rep.Problems {
		when := ""
		if !p.Time.IsZero() {
			when = " (" + p.Time.Format(time.RFC3339Nano) + ")"
		}
		fmt.Fprintf(w, "%s:%d: %s%s: %s\n", p.File, p.Line, p.Kind, when, p.Detail)
	}
	fmt.Fprintf(w, "%d events in %d file(s), %d start event(s)\n", rep.Events, len(rep.Files), rep.Starts)
	if c := rep.Continues; c != nil {
		fmt.Fprintf(w, "the trail continues from %s, in an earlier file: name that file first to check the link\n", c)
	}
	for _, h := range rep.Heads {
		if h.Found != nil {
			fmt.Fprintf(w, "recorded head %s: %s\n", h.Hash, at(h.Found))
		}
	}
	if h := rep.Head; h != nil {
		fmt.Fprintf(w, "head: seq %d hash %s at %s\n", h.Seq, h.Hash, at(h))
	}
	if rep.Events > 0 && !rep.Closed {
		fmt.Fprintln(w, "the trail does not end with a stop or rotate event: the agent is writing it, was killed, or its end was cut")
	}
}
