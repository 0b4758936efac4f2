package agent

import (
	"sync"
	"sync/atomic"

	"github.com/keyward/keyward/agent/policy"
)

// maxBudgetUIDs bounds the uids a budgets set tracks; more share one
// budget, so that a caller with many uids cannot grow the agent's memory.
const maxBudgetUIDs = 4096

// budgets gives each uid a token bucket of rate events per second up to
// burst, and counts the events it refuses. It is safe for concurrent use.
type budgets struct {
	rate  float64
	burst int

	mu       sync.Mutex
	byUID    map[uint32]*budget
	overflow *budget
}

type budget struct {
	limiter *policy.Limiter
	refused atomic.Int64
}

func newBudgets(rate float64, burst int) *budgets {
	return &budgets{rate: rate, burst: burst, byUID: make(map[uint32]*budget),
		overflow: &budget{limiter: policy.NewLimiter(rate, burst)}}
}

// allow takes a token from uid's bucket, or counts a refusal.
func (b *budgets) allow(uid uint32) bool {
	b.mu.Lock()
	st := b.byUID[uid]
	if st == nil {
		if len(b.byUID) < maxBudgetUIDs {
			st = &budget{limiter: policy.NewLimiter(b.rate, b.burst)}
			b.byUID[uid] = st
		} else {
			st = b.overflow
		}
	}
	b.mu.Unlock()
	if st.limiter.Allow() {
		return true
	}
	st.refused.Add(1)
	return false
}

// refusals calls fn for each uid (ok false for the shared overflow budget)
// with the refusals counted since the last call, skipping zeros.
func (b *budgets) refusals(fn func(uid uint32, ok bool, n int64)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for uid, st := range b.byUID {
		if n := st.refused.Swap(0); n > 0 {
			fn(uid, true, n)
		}
	}
	if n := b.overflow.refused.Swap(0); n > 0 {
		fn(0, false, n)
	}
}
