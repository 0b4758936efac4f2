package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
)

// auditRecord is the audit event of the request being handled, queued
// after the answer is written.
type auditRecord struct {
	set          bool
	op, name     string
	version      uint32
	decision     string
	code         wire.Code
	rule, reason string
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

// auditDecision records a policy decision.
func (c *conn) auditDecision(op, name string, version uint32, decision string, code wire.Code, d policy.Decision) {
	c.rec = auditRecord{true, op, name, version, decision, code, d.Rule, d.Reason}
}

// auditEvent records a decision that no policy rule made.
func (c *conn) auditEvent(op, name string, version uint32, decision string, code wire.Code, reason string) {
	c.rec = auditRecord{true, op, name, version, decision, code, "", reason}
}

// auditEvent is one decision on its way to the audit log.
type auditEvent struct {
	logger  *slog.Logger // carries the caller attribute
	rec     auditRecord
	latency time.Duration
}

// auditQueue hands audit events from connections to the audit goroutine
// in batches, so that a request costs an append under a mutex, not a
// goroutine wake-up. It holds at most maxQueued events: beyond that,
// serving waits for the audit log rather than losing events.
type auditQueue struct {
	mu      sync.Mutex
	space   sync.Cond // signalled when the writer takes a batch
	pending []auditEvent
	spare   []auditEvent
	closed  bool
}

const (
	maxQueued  = 8192
	auditEvery = 2 * time.Millisecond
)

func newAuditQueue() *auditQueue {
	q := &auditQueue{}
	q.space.L = &q.mu
	return q
}

func (q *auditQueue) push(ev auditEvent) {
	q.mu.Lock()
	for len(q.pending) >= maxQueued && !q.closed {
		q.space.Wait()
	}
	q.pending = append(q.pending, ev)
	q.mu.Unlock()
}

// take returns the queued events; done gives the slice back for reuse.
func (q *auditQueue) take() (batch []auditEvent, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch, q.pending, q.spare = q.pending, q.spare[:0], nil
	q.space.Broadcast()
	return batch, q.closed
}

func (q *auditQueue) done(batch []auditEvent) {
	clear(batch)
	q.mu.Lock()
	q.spare = batch[:0]
	q.mu.Unlock()
}

func (q *auditQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.space.Broadcast()
	q.mu.Unlock()
}

// writeAudit writes queued audit events in order, every auditEvery, until
// the queue is closed and drained.
func (s *Server) writeAudit() {
	t := time.NewTicker(auditEvery)
	defer t.Stop()
	attrs := make([]slog.Attr, 0, 8)
	lastReport := time.Now()
	for {
		batch, closed := s.events.take()
		for i := range batch {
			ev := &batch[i]
			r := &ev.rec
			attrs = append(attrs[:0], slog.String("op", r.op), slog.String("decision", r.decision))
			if r.name != "" {
				attrs = append(attrs, slog.String("secret", r.name))
			}
			if r.version != 0 {
				attrs = append(attrs, slog.Uint64("version", uint64(r.version)))
			}
			if r.code != 0 {
				attrs = append(attrs, slog.String("code", r.code.String()))
			}
			if r.rule != "" {
				attrs = append(attrs, slog.String("rule", r.rule))
			}
			if r.reason != "" {
				attrs = append(attrs, slog.String("reason", r.reason))
			}
			attrs = append(attrs, slog.Int64("latency_us", ev.latency.Microseconds()))
			ev.logger.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
		}
		s.events.done(batch)
		if closed || time.Since(lastReport) >= time.Second {
			reportDenials(s.denials, s.audit)
			lastReport = time.Now()
		}
		if closed {
			return
		}
		<-t.C
	}
}
