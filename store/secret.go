package store

import (
	"fmt"
	"log/slog"
	"sync"
	"syscall"
)

// A Secret holds plaintext secret bytes in memory that is locked against
// swapping (best effort: mlock may fail under a low RLIMIT_MEMLOCK) and
// zeroed by [Secret.Destroy]. It never prints its contents: String, Format
// and LogValue show only its length.
//
// A Secret is safe for concurrent reads; Destroy must not race with Bytes.
type Secret struct {
	mu     sync.Mutex
	b      []byte
	locked bool
}

// NewSecret copies b into a freshly allocated, locked buffer. The caller
// keeps ownership of b and should clear it.
func NewSecret(b []byte) *Secret {
	s := newSecretSize(len(b))
	copy(s.b, b)
	return s
}

// newSecretSize allocates a locked, zeroed Secret of n bytes, so that
// plaintext can be written into its final place with no copies left behind.
func newSecretSize(n int) *Secret {
	s := &Secret{b: make([]byte, n)}
	if n > 0 && syscall.Mlock(s.b) == nil {
		s.locked = true
	}
	return s
}

// Bytes returns the plaintext. The slice aliases the Secret's memory: do not
// modify it or keep it past Destroy.
func (s *Secret) Bytes() []byte { return s.b }

// Len returns the length of the plaintext in bytes.
func (s *Secret) Len() int { return len(s.b) }

// Destroy zeroes and unlocks the plaintext. It is safe to call more than once.
func (s *Secret) Destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.b)
	if s.locked {
		_ = syscall.Munlock(s.b)
		s.locked = false
	}
	s.b = nil
}

// String implements fmt.Stringer without revealing the secret.
func (s *Secret) String() string { return fmt.Sprintf("[secret: %d bytes]", len(s.b)) }

// Format implements fmt.Formatter so that no verb, including %x and %#v,
// reveals the secret.
func (s *Secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// LogValue implements slog.LogValuer without revealing the secret.
func (s *Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
