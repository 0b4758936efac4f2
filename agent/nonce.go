package agent

import (
	"sync"
	"time"
)

// nonceMarks is where the agent records nonce marks: the store.
type nonceMarks interface {
	NonceMark(key string) (uint64, error)
	SetNonceMark(key string, mark uint64) error
}

// nonceAhead is how far above the nonce being issued a mark is recorded:
// a minute of millisecond nonces, so that a key in steady use writes its
// mark about once a minute.
const nonceAhead = 60_000

// nonces issues each API key's nonces: strictly increasing across every
// caller, at least the time in milliseconds (ccxt's nonce, so that a key
// ccxt used before keeps working), and, for an exchange that needs it,
// above every nonce issued before a restart: before it issues a nonce at
// or above the recorded mark, it records a new mark nonceAhead above.
type nonces struct {
	marks nonceMarks // nil: no marks (a server without a store)
	now   func() time.Time

	mu    sync.Mutex
	byKey map[string]*nonceCounter
}

type nonceCounter struct {
	mu     sync.Mutex
	last   uint64
	loaded bool   // mark has been read from marks
	mark   uint64 // every nonce issued for the key, before and since a restart, is below it
}

// next returns the next nonce for key. With durable, the nonce is above
// every one issued for key before a restart, and an error (a mark that
// cannot be read or written) means no nonce.
func (n *nonces) next(key string, durable bool) (uint64, error) {
	c := n.counter(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if durable && n.marks != nil && !c.loaded {
		m, err := n.marks.NonceMark(key)
		if err != nil {
			return 0, err
		}
		// Every nonce issued before is below the mark: start at it.
		c.mark, c.loaded = m, true
		if m > 0 {
			c.last = max(c.last, m-1)
		}
	}
	v := max(c.last+1, uint64(max(n.now().UnixMilli(), 0)))
	if durable && n.marks != nil {
		if v >= c.mark {
			if err := n.marks.SetNonceMark(key, v+nonceAhead); err != nil {
				return 0, err
			}
			c.mark = v + nonceAhead
		}
	}
	c.last = v
	return v, nil
}

func (n *nonces) counter(key string) *nonceCounter {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byKey == nil {
		n.byKey = make(map[string]*nonceCounter)
	}
	c := n.byKey[key]
	if c == nil {
		c = &nonceCounter{}
		n.byKey[key] = c
	}
	return c
}
