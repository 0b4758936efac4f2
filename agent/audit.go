package agent

import (
	"time"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
)

// A request's audit event is recorded while it is handled and emitted
// after the answer is written, so that formatting and writing it stay off
// the caller's latency (see package audit).

// auditRecord is the audit event of the request being handled.
type auditRecord struct {
	set     bool
	dropped bool // over the caller's audit budget: counted, not written
	ev      audit.Event
	code    wire.Code
}

// overBudget marks the request as refused over its uid's budget of
// audited denials: it is answered rate limited, and its event is counted
// in a summary event instead of written.
func (r *auditRecord) overBudget() {
	r.dropped, r.code = true, wire.CodeRateLimited
	r.ev.Decision, r.ev.Code = audit.Deny, wire.CodeRateLimited.String()
}

// countsAsDenial reports whether the request counts against the caller's
// budget of audited denials: a refusal by policy or a malformed request,
// never an answer the caller did not cause (a backend that is down, a
// damaged or expired secret).
func (r *auditRecord) countsAsDenial() bool {
	switch r.code {
	case wire.CodeDenied, wire.CodeBadRequest, wire.CodeRateLimited:
		return true
	}
	return false
}

// auditDecision records a decision the policy made.
func (c *conn) auditDecision(op, name string, version uint32, decision audit.Decision, code wire.Code, d policy.Decision) {
	c.auditEvent(op, name, version, decision, code, d.Reason)
	c.rec.ev.Rule = d.Rule
}

// auditEvent records a decision that no policy rule made.
func (c *conn) auditEvent(op, name string, version uint32, decision audit.Decision, code wire.Code, reason string) {
	c.rec = auditRecord{set: true, code: code, ev: audit.Event{
		Op: op, Decision: decision, Secret: name, Version: version, Reason: clipText(reason),
	}}
	if code != 0 {
		c.rec.ev.Code = code.String()
	}
}

// emitAudit counts the request in the metrics and emits its event, if it
// recorded one.
func (c *conn) emitAudit(start time.Time) {
	if !c.rec.set {
		return
	}
	latency := time.Since(start)
	c.s.metrics.Request(c.rec.ev.Op, c.rec.ev.Decision.String(), c.rec.ev.Code, latency)
	if c.rec.dropped {
		c.s.metrics.AuditDropped()
		return
	}
	c.rec.ev.Latency = latency
	c.src.Emit(c.rec.ev)
}
