// Package audit is keyward's audit trail: one event per decision the agent
// makes (each request, and its own acts: pruning, expiry warnings, backend
// outages, envelopes that do not load), written off the request path to a
// file, standard error or the systemd journal, and never containing secret
// material.
//
// # Events
//
// An [Event] has an operation, a [Decision], the secret and version it
// concerns, the answer's code, the deciding rule and a reason. Events of a
// connection carry its caller (uid, gid, pid, exe, unit), attached once per
// connection with [Log.For]. The field names are the Key constants; as
// JSON, an event is one line:
//
//	{"time":"…","level":"INFO","msg":"decision","log":"audit","caller":{"uid":1001,…},
//	 "op":"get","decision":"allow","secret":"binance/mm-prod","version":3,
//	 "rule":"bots","reason":"rule \"bots\" grants get on binance/*","latency_us":9,
//	 "seq":42,"prev":"5be1…","hash":"9f0c…"}
//
// In the journal each field is its own journal field (CALLER_UID, DECISION,
// SECRET…) under SYSLOG_IDENTIFIER=keyward-audit.
//
// # The chain
//
// A JSON trail (a file, or standard error) is a hash chain. Each line ends
// with its sequence number, the hash of the line before (prev) and its own
// hash: the hex SHA-256 of every byte of the line before `,"hash":`. The
// Log writes events of its own: a start event first (op "start"), whose
// prev is the hash of the file's last line, read when the file is opened,
// so that runs of the agent make one chain; a stop event at [Log.Close];
// and, when [Log.Reopen] moves to a new file after logrotate renamed the
// old one, a rotate event ending the old file and a start event beginning
// the new one. Sealing costs a SHA-256 of the line on the Log's goroutine,
// nothing on the request path. The journal is not chained: journald seals
// its own files (journalctl --setup-keys, --verify).
//
// [Verify] reads a trail back and reports where it is not what the Log
// wrote: a line that is not an event, an event edited (its hash), deleted
// (a gap in the sequence numbers), inserted, repeated or moved (a link to
// an event that is not the one before), a new chain started in the middle
// of one.
//
// What the chain cannot show: the hash has no key, so whoever can write
// the file (root, or the keyward user) can also rewrite it from any event
// on with every hash recomputed, or cut its end while the agent is
// stopped, and the chain holds. A head (the newest event's seq and hash,
// [Log.Head]) recorded where that writer cannot reach finds both: once the
// trail no longer holds the recorded head, it was cut or rewritten. The
// agent logs the head at each rotation and stop; shipping the trail or
// those heads off the host as they are written is what makes the trail
// evidence. [ReadFiles] and [ReadJournal] read events back for queries.
//
// # Writing
//
// [Log.Emit] appends the event to a bounded queue and returns: formatting
// and writing happen on the Log's goroutine, which takes the queue every
// 2 ms and writes the batch in one write. A write that fails loses nothing:
// the unwritten bytes are kept and retried, and [Config.OnError] is told once
// per run of failures. While more than 16 MiB wait, or 8192 events are
// queued, Emit blocks, which in the agent stops serving: the agent fails
// closed rather than serving unaudited. At most one batch (2 ms of events)
// can be lost if the process is killed; [Log.Close] writes what is left.
//
// A Log is safe for concurrent use.
package audit

import (
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Field names of an event, as JSON keys and, upper-cased, journal fields.
const (
	KeyLog        = "log" // "audit", on every event of a file or stderr trail
	KeyCaller     = "caller"
	KeyCallerUID  = "caller_uid" // in denial-budget reports, which have no single caller
	KeyOp         = "op"
	KeyDecision   = "decision"
	KeySecret     = "secret"
	KeyVersion    = "version"
	KeyCode       = "code"
	KeyRule       = "rule"
	KeyReason     = "reason"
	KeyExpires    = "expires"
	KeyExchange   = "exchange" // a signature's: the exchange, method, path, sorted parameter names
	KeyMethod     = "method"
	KeyPath       = "path"
	KeyParams     = "params"
	KeyDigest     = "digest" // the SHA-256 of what was signed or MACed, in hex
	KeySuppressed = "suppressed"
	KeyLatency    = "latency_us"

	// The chain's fields, last on each line of a file trail.
	KeySeq  = "seq"
	KeyPrev = "prev"
	KeyHash = "hash"
)

// Message is the message of every event.
const Message = "decision"

// A Decision is the outcome an event records.
type Decision uint8

// Decisions.
const (
	None  Decision = iota // an event that decides nothing (an expiry warning)
	Allow                 // the request was served, or the agent's act done
	Deny                  // policy refused, or the request was over a limit
	Error                 // the request or act failed: the agent, its backend or the data
)

var decisionNames = [...]string{Allow: "allow", Deny: "deny", Error: "error"}

// String returns "allow", "deny", "error", or "" for None.
func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return "Decision(" + strconv.Itoa(int(d)) + ")"
}

// An Event is one audit record. Zero fields are left out.
type Event struct {
	Level      slog.Level // info unless set
	Op         string
	Decision   Decision
	Secret     string
	Version    uint32
	Code       string // the error code answered, for a request
	Rule       string
	Reason     string
	Expires    time.Time
	Signed     *Signed // a sign or hmac request's: what was asked
	CallerUID  string  // a denial-budget report's uid, or "other"
	Suppressed int64
	Latency    time.Duration // for a request (emitted through a Source); written in whole microseconds
}

// Signed is what a sign or hmac request asked for, as the audit trail
// keeps it: never the secret, nor the signature.
type Signed struct {
	Exchange string
	Method   string
	Path     string
	Params   []string // the parameter names, sorted, batch items' included
	Digest   [32]byte // SHA-256 of exactly what was signed or MACed; zero: nothing was
}

// attrs appends the event's attributes in their fixed order.
func (e *Event) attrs(a []slog.Attr, request bool) []slog.Attr {
	if e.CallerUID != "" {
		a = append(a, slog.String(KeyCallerUID, e.CallerUID))
	}
	if e.Op != "" {
		a = append(a, slog.String(KeyOp, e.Op))
	}
	if e.Decision != None {
		a = append(a, slog.String(KeyDecision, e.Decision.String()))
	}
	if e.Secret != "" {
		a = append(a, slog.String(KeySecret, e.Secret))
	}
	if e.Version != 0 {
		a = append(a, slog.Uint64(KeyVersion, uint64(e.Version)))
	}
	if e.Code != "" {
		a = append(a, slog.String(KeyCode, e.Code))
	}
	if e.Rule != "" {
		a = append(a, slog.String(KeyRule, e.Rule))
	}
	if !e.Expires.IsZero() {
		a = append(a, slog.String(KeyExpires, e.Expires.UTC().Format(time.RFC3339)))
	}
	if sg := e.Signed; sg != nil {
		a = sg.attrs(a)
	}
	if e.Suppressed != 0 {
		a = append(a, slog.Int64(KeySuppressed, e.Suppressed))
	}
	if e.Reason != "" {
		a = append(a, slog.String(KeyReason, e.Reason))
	}
	if request {
		a = append(a, slog.Int64(KeyLatency, e.Latency.Microseconds()))
	}
	return a
}

func (s *Signed) attrs(a []slog.Attr) []slog.Attr {
	if s.Exchange != "" {
		a = append(a, slog.String(KeyExchange, s.Exchange))
	}
	if s.Method != "" {
		a = append(a, slog.String(KeyMethod, s.Method), slog.String(KeyPath, s.Path))
	}
	if s.Params != nil {
		a = append(a, slog.String(KeyParams, strings.Join(s.Params, ",")))
	}
	if s.Digest != ([32]byte{}) {
		a = append(a, slog.String(KeyDigest, hex.EncodeToString(s.Digest[:])))
	}
	return a
}

// A Source emits the events of one caller; see [Log.For].
type Source struct {
	l *Log
	h slog.Handler
}

// For returns a Source whose events carry caller (a group value, such as
// a peer's LogValue), formatted once here rather than for every event.
func (l *Log) For(caller slog.Value) *Source {
	return &Source{l: l, h: l.h.WithAttrs([]slog.Attr{{Key: KeyCaller, Value: caller}})}
}

// Emit queues a request's event; see [Log.Emit].
func (s *Source) Emit(e Event) { s.l.q.push(queued{h: s.h, e: e, request: true}) }

// Emit queues an event of the agent's own; it blocks only while the queue
// or the unwritten bytes are at their bound (see the package doc).
func (l *Log) Emit(e Event) { l.q.push(queued{h: l.h, e: e}) }
