package agent

import (
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/internal/secretname"
)

// authorize checks a request's secret name and the caller's permission for
// op. When either fails, it records the audit event and returns the error
// frame to send.
func (c *conn) authorize(out []byte, id uint32, pol *policy.Policy, req string, op policy.Op, name string) (policy.Decision, []byte, bool) {
	if refused, ok := c.validName(out, id, req, name); !ok {
		return policy.Decision{}, refused, false
	}
	return c.admit(out, id, req, name, pol.Decide(c.peer, op, name))
}

// validName checks a request's secret name; when it is invalid, it records
// the audit event and returns the error frame to send.
func (c *conn) validName(out []byte, id uint32, req, name string) ([]byte, bool) {
	if secretname.Check(name) != nil {
		c.auditEvent(req, "", 0, audit.Error, wire.CodeBadRequest, "invalid secret name")
		return wire.AppendFrame(out, id, &wire.Error{Code: wire.CodeBadRequest, Message: "invalid secret name"}), false
	}
	return out, true
}

// admit applies a policy decision: a denial, or a request over the
// deciding rule's rate, is recorded and answered.
func (c *conn) admit(out []byte, id uint32, req, name string, d policy.Decision) (policy.Decision, []byte, bool) {
	switch {
	case !d.Allowed:
		c.auditDecision(req, name, 0, audit.Deny, wire.CodeDenied, d)
		return d, wire.AppendFrame(out, id, errorMessage(wire.CodeDenied)), false
	case d.Limiter != nil && !d.Limiter.Allow():
		c.auditDecision(req, name, 0, audit.Deny, wire.CodeRateLimited, d)
		return d, wire.AppendFrame(out, id, errorMessage(wire.CodeRateLimited)), false
	}
	return d, nil, true
}

// refuse answers an allowed request that cannot be served, with a message
// for the caller, who may use the name.
func (c *conn) refuse(out []byte, id uint32, req, name string, version uint32, d policy.Decision, code wire.Code, msg string) []byte {
	msg = clipText(msg)
	c.auditDecision(req, name, version, audit.Error, code, d)
	c.rec.ev.Reason = msg
	return wire.AppendFrame(out, id, &wire.Error{Code: code, Message: msg})
}
