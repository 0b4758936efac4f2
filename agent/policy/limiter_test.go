package policy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	l := newLimiter(10, 3, clock.now)
	steps := []struct {
		advance time.Duration
		want    []bool
	}{
		{0, []bool{true, true, true, false}},         // burst, then refuse
		{50 * time.Millisecond, []bool{false}},       // half a token
		{50 * time.Millisecond, []bool{true, false}}, // one token at 10/s
		{250 * time.Millisecond, []bool{true, true, false}},
		{time.Hour, []bool{true, true, true, false}}, // refill stops at burst
		{-time.Minute, []bool{false}},                // a clock going back adds nothing
	}
	for i, s := range steps {
		clock.advance(s.advance)
		for j, want := range s.want {
			if got := l.Allow(); got != want {
				t.Errorf("step %d: Allow() #%d = %v, want %v", i, j, got, want)
			}
		}
	}
}

func TestLimiterEdges(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	tests := []struct {
		name  string
		rate  float64
		burst int
		want  [2]int // allowed of 10 at once, then of 10 an hour later
	}{
		{"zero burst", 5, 0, [2]int{0, 0}},
		{"negative burst", 5, -1, [2]int{0, 0}},
		{"zero rate", 0, 2, [2]int{2, 0}},
		{"nan rate", nanRate(), 2, [2]int{2, 0}},
		{"negative rate", -5, 2, [2]int{2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.rate, tt.burst, clock.now)
			for round, want := range tt.want {
				got := 0
				for range 10 {
					if l.Allow() {
						got++
					}
				}
				if got != want {
					t.Errorf("NewLimiter(%v, %d): round %d allowed %d of 10, want %d", tt.rate, tt.burst, round, got, want)
				}
				clock.advance(time.Hour)
			}
		})
	}
}

func nanRate() float64 {
	zero := 0.0
	return zero / zero
}

func TestLimiterConcurrent(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	l := newLimiter(1000, 50, clock.now)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				if l.Allow() {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Errorf("concurrent Allow() allowed %d, want the burst 50", got)
	}
}

// BenchmarkLimiterAllow measures Allow on one limiter shared by every
// goroutine (one busy uid), and on a limiter per goroutine taken from a
// rule's limiterSet (one uid per trading process), as the agent does.
func BenchmarkLimiterAllow(b *testing.B) {
	b.Run("shared", func(b *testing.B) {
		l := NewLimiter(1e9, 1e6)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow()
			}
		})
	})
	b.Run("per-uid", func(b *testing.B) {
		set := &limiterSet{rate: 1e9, burst: 1e6, byUID: make(map[uint32]*Limiter)}
		var count atomic.Int64
		var next atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			uid := next.Add(1)
			for pb.Next() {
				set.get(uid, &count, maxLimiters, time.Now).Allow()
			}
		})
	})
}
