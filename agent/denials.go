package agent

import (
	"log/slog"
	"strconv"

	"github.com/keyward/keyward/agent/audit"
)

// Denied and malformed requests are audited, but a caller without rights
// must not be able to flood the audit trail (filling the disk, or making
// journald drop the events that matter). Each uid gets a budget of audited
// denials; past it, its requests are refused as rate limited, the
// connection is closed, and the events are counted instead of written. The
// count is reported in an audit event once a second, so nothing is silent.
// Answers that are not the caller's doing (a backend that is down, a
// damaged secret) never count against it.
const (
	denialRate  = 100 // audited denials per second per uid
	denialBurst = 200
)

func newDenials() *budgets { return newBudgets(denialRate, denialBurst) }

// reportDenials writes one audit event per uid whose denials were counted
// since the last report.
func reportDenials(d *budgets, log *audit.Log) {
	d.refusals(func(uid uint32, ok bool, n int64) {
		who := "other"
		if ok {
			who = strconv.FormatUint(uint64(uid), 10)
		}
		log.Emit(audit.Event{Level: slog.LevelWarn, CallerUID: who, Decision: audit.Deny, Suppressed: n,
			Reason: "denied or malformed requests over the audit budget; refused as rate limited and counted here"})
	})
}
