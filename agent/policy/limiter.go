package policy

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiters bounds the per-caller limiters one Policy creates.
const maxLimiters = 1 << 16

// A Limiter is a token bucket: it holds up to burst tokens, gains rate
// tokens per second, and each allowed request takes one. A new Limiter is
// full. It is safe for concurrent use and starts no goroutines. The bucket
// is golang.org/x/time/rate's; Limiter keeps the agent's defaults for odd
// settings and lets tests drive the clock.
type Limiter struct {
	now func() time.Time
	l   *rate.Limiter
}

// NewLimiter returns a full bucket of burst tokens refilled at rate tokens
// per second. A rate that is not positive never refills; a burst below 1
// allows nothing.
func NewLimiter(rate float64, burst int) *Limiter {
	return newLimiter(rate, burst, time.Now)
}

func newLimiter(r float64, burst int, now func() time.Time) *Limiter {
	if !(r > 0) {
		r = 0 // NaN and negative rates too: rate.Limiter reads a negative one as "none"
	}
	l := rate.NewLimiter(rate.Limit(r), max(burst, 0))
	l.AllowN(now(), 0) // starts the refill clock now: the bucket is full
	return &Limiter{now: now, l: l}
}

// Allow takes a token and reports whether there was one.
func (l *Limiter) Allow() bool { return l.AllowN(1) }

// AllowN takes n tokens and reports whether there were as many; when
// there were not, it takes none.
func (l *Limiter) AllowN(n int) bool { return l.l.AllowN(l.now(), n) }

// A limiterSet holds one rule's limiters, one per uid.
type limiterSet struct {
	rate  float64
	burst int

	mu       sync.RWMutex
	byUID    map[uint32]*Limiter
	overflow *Limiter // shared by the callers beyond the policy's bound
}

// get returns uid's limiter, creating it unless count has reached limit.
func (s *limiterSet) get(uid uint32, count *atomic.Int64, limit int64, now func() time.Time) *Limiter {
	s.mu.RLock()
	l := s.byUID[uid]
	s.mu.RUnlock()
	if l != nil {
		return l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.byUID[uid]; l != nil {
		return l
	}
	if count.Add(1) > limit {
		count.Add(-1)
		if s.overflow == nil {
			s.overflow = newLimiter(s.rate, s.burst, now)
		}
		return s.overflow
	}
	l = newLimiter(s.rate, s.burst, now)
	s.byUID[uid] = l
	return l
}
