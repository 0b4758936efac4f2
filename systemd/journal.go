package systemd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// Syslog identifiers of keyward's journal entries.
const (
	// LogIdentifier marks the operational log: journalctl -t keyward.
	LogIdentifier = "keyward"
	// AuditIdentifier marks audit events: journalctl -t keyward-audit.
	AuditIdentifier = "keyward-audit"
)

// JournalStream reports whether standard error is a journal stream, as it
// is for a service started by systemd with the default StandardError=:
// JOURNAL_STREAM is set and names the device and inode of stderr.
func JournalStream() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil
}

// journalSend sends one entry; tests replace it.
var journalSend = journal.Send

// A JournalHandler is a [slog.Handler] that writes each record to the
// systemd journal over its native protocol, as one entry with:
//
//   - MESSAGE: the message followed by the attributes as key=value, so
//     that `journalctl` shows the whole event;
//   - PRIORITY: from the level (debug 7, info 6, warn 4, error 3);
//   - SYSLOG_IDENTIFIER: the identifier given to [NewJournalHandler];
//   - one field per attribute, its key in upper case with groups joined by
//     "_" and other characters replaced by "_": caller.uid is CALLER_UID,
//     so `journalctl -t keyward-audit DECISION=deny` selects. A key that
//     would replace a field the journal gives a meaning (MESSAGE, PRIORITY,
//     SYSLOG_*, CODE_*, …) gets the prefix KEYWARD_.
//
// Values are resolved ([slog.LogValuer]) first, so a value that redacts
// itself stays redacted. When the journal cannot take an entry, the record
// goes as JSON to the fallback writer instead of being lost.
//
// A JournalHandler is safe for concurrent use. Each record costs a
// datagram to journald: use it where logging is off the request path.
type JournalHandler struct {
	ident    string
	level    slog.Leveler
	fields   []journalField // from WithAttrs
	text     string         // " key=value" of fields, for MESSAGE
	group    string         // "a.b." for text keys of later attributes
	prefix   string         // "A_B_" for field names of later attributes
	fallback slog.Handler
}

type journalField struct{ name, value string }

// NewJournalHandler returns a handler writing to the journal with
// SYSLOG_IDENTIFIER=identifier, at opts.Level and above (info by default),
// and to fallback (JSON) when the journal refuses an entry.
func NewJournalHandler(identifier string, fallback io.Writer, opts *slog.HandlerOptions) *JournalHandler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	return &JournalHandler{
		ident:    identifier,
		level:    level,
		fallback: slog.NewJSONHandler(fallback, &slog.HandlerOptions{Level: level}),
	}
}

// Enabled implements [slog.Handler].
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs implements [slog.Handler].
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.fields = append([]journalField(nil), h.fields...)
	var b strings.Builder
	b.WriteString(h.text)
	for _, a := range attrs {
		h2.fields = appendAttr(h2.fields, &b, h.group, h.prefix, a)
	}
	h2.text = b.String()
	h2.fallback = h.fallback.WithAttrs(attrs)
	return &h2
}

// WithGroup implements [slog.Handler].
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	h2.prefix = h.prefix + fieldName(name) + "_"
	h2.fallback = h.fallback.WithGroup(name)
	return &h2
}

// Handle implements [slog.Handler].
func (h *JournalHandler) Handle(ctx context.Context, r slog.Record) error {
	fields := make([]journalField, 0, len(h.fields)+r.NumAttrs()+1)
	fields = append(fields, h.fields...)
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.text)
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, &b, h.group, h.prefix, a)
		return true
	})
	vars := make(map[string]string, len(fields)+1)
	for _, f := range fields {
		vars[f.name] = f.value
	}
	vars["SYSLOG_IDENTIFIER"] = h.ident
	if err := journalSend(b.String(), priority(r.Level), vars); err != nil {
		return h.fallback.Handle(ctx, r)
	}
	return nil
}

// appendAttr appends a's fields (a group gives several) and writes its
// " key=value" text to b.
func appendAttr(fields []journalField, b *strings.Builder, group, prefix string, a slog.Attr) []journalField {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fields
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return fields
		}
		if a.Key != "" {
			group += a.Key + "."
			prefix += fieldName(a.Key) + "_"
		}
		for _, ga := range attrs {
			fields = appendAttr(fields, b, group, prefix, ga)
		}
		return fields
	}
	v := valueString(a.Value)
	b.WriteByte(' ')
	b.WriteString(group + a.Key)
	b.WriteByte('=')
	if needsQuote(v) {
		b.WriteString(strconv.Quote(v))
	} else {
		b.WriteString(v)
	}
	return append(fields, journalField{safeFieldName(prefix + fieldName(a.Key)), v})
}

func valueString(v slog.Value) string {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
		return fmt.Sprint(v.Any())
	default:
		return v.String()
	}
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == ' ' || r == '=' || r == '"' || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// fieldName maps a key to journal field characters: A-Z, 0-9 and _.
func fieldName(key string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			return r
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		}
		return '_'
	}, key)
}

// reservedFields are fields the journal or journalctl give a meaning to.
var reservedFields = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "ERRNO": true,
	"INVOCATION_ID": true, "USER_INVOCATION_ID": true, "DOCUMENTATION": true,
	"TID": true, "UNIT": true, "USER_UNIT": true,
}

// safeFieldName makes name a valid field that does not replace a
// reserved one: it must start with a letter and be at most 64 bytes.
func safeFieldName(name string) string {
	if name == "" || name[0] < 'A' || name[0] > 'Z' || reservedFields[name] ||
		strings.HasPrefix(name, "SYSLOG_") || strings.HasPrefix(name, "CODE_") || strings.HasPrefix(name, "OBJECT_") {
		name = "KEYWARD_" + strings.TrimLeft(name, "_")
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
