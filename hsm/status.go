package hsm

import "time"

// A State says whether a [Token] can reach its key.
type State int

const (
	// StateHealthy: the token answered the last operation or check.
	StateHealthy State = iota
	// StateLost: the token stopped answering or came back changed.
	// Operations fail fast with [ErrUnavailable] while the Token retries,
	// with backoff, to re-initialise the module and find the same key.
	StateLost
	// StateFailed: the token came back but refused the PIN, or would lock
	// it at the next attempt. The Token does not retry: another attempt
	// could lock the PIN. Open a new Token once the cause is fixed.
	StateFailed
	// StateClosed: Close was called.
	StateClosed
)

// String returns "healthy", "lost", "failed" or "closed".
func (s State) String() string {
	switch s {
	case StateHealthy:
		return "healthy"
	case StateLost:
		return "lost"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// A Status describes a Token's availability, for status reports ("lost
// since 09:14:03: ...").
type Status struct {
	State State
	// Since is when State began.
	Since time.Time
	// LastSuccess is when the token last completed an operation or a
	// check; zero if never.
	LastSuccess time.Time
	// Err says why the token is lost or failed; nil when healthy or
	// closed. It never contains the PIN or key material.
	Err error
}
