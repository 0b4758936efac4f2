package agent

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/keyward/keyward/agent/policy"
)

// Denied and malformed requests are audited, but a caller without rights
// must not be able to flood the audit trail (filling the disk, or making
// journald drop the events that matter). Each uid gets a budget of audited
// denials; past it, its requests are refused as rate limited, the
// connection is closed, and the events are counted instead of written. The
// count is reported in an audit event once a second, so nothing is silent.
const (
	denialRate  = 100 // audited denials per second per uid
	denialBurst = 200
	maxDenyUIDs = 4096 // uids tracked; more share one budget
)

type denialState struct {
	limiter    *policy.Limiter
	suppressed atomic.Int64
}

// denials holds the per-uid budgets.
type denials struct {
	mu       sync.Mutex
	byUID    map[uint32]*denialState
	overflow *denialState
}

func newDenials() *denials {
	return &denials{
		byUID:    make(map[uint32]*denialState),
		overflow: &denialState{limiter: policy.NewLimiter(denialRate, denialBurst)},
	}
}

// allow reports whether a denial for uid may be audited; if not, it is
// counted.
func (d *denials) allow(uid uint32) bool {
	d.mu.Lock()
	st := d.byUID[uid]
	if st == nil {
		if len(d.byUID) < maxDenyUIDs {
			st = &denialState{limiter: policy.NewLimiter(denialRate, denialBurst)}
			d.byUID[uid] = st
		} else {
			st = d.overflow
		}
	}
	d.mu.Unlock()
	if st.limiter.Allow() {
		return true
	}
	st.suppressed.Add(1)
	return false
}

// report writes one audit event per uid whose denials were counted since
// the last report.
func (d *denials) report(audit *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	emit := func(uid string, st *denialState) {
		if n := st.suppressed.Swap(0); n > 0 {
			audit.LogAttrs(context.Background(), slog.LevelWarn, "decision",
				slog.String("caller_uid", uid), slog.String("decision", "deny"),
				slog.Int64("suppressed", n),
				slog.String("reason", "denied or malformed requests over the audit budget; refused as rate limited and counted here"))
		}
	}
	for uid, st := range d.byUID {
		emit(strconv.FormatUint(uint64(uid), 10), st)
	}
	emit("other", d.overflow)
}
