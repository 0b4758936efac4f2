package policy

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxLimiters bounds the per-caller limiters one Policy creates.
const maxLimiters = 1 << 16

// A Limiter is a token bucket: it holds up to burst tokens, gains rate
// tokens per second, and each allowed request takes one. A new Limiter is
// full. It is safe for concurrent use and starts no goroutines.
type Limiter struct {
	now   func() time.Time
	rate  float64
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewLimiter returns a full bucket of burst tokens refilled at rate tokens
// per second. A rate that is not positive never refills; a burst below 1
// allows nothing.
func NewLimiter(rate float64, burst int) *Limiter {
	return newLimiter(rate, burst, time.Now)
}

func newLimiter(rate float64, burst int, now func() time.Time) *Limiter {
	if !(rate > 0) {
		rate = 0
	}
	b := float64(max(burst, 0))
	return &Limiter{now: now, rate: rate, burst: b, tokens: b, last: now()}
}

// Allow takes a token and reports whether there was one.
func (l *Limiter) Allow() bool { return l.AllowN(1) }

// AllowN takes n tokens and reports whether there were as many; when
// there were not, it takes none.
func (l *Limiter) AllowN(n int) bool {
	t := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := t.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
		l.last = t
	}
	if l.tokens < float64(n) {
		return false
	}
	l.tokens -= float64(n)
	return true
}

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
