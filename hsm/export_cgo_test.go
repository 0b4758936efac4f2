//go:build cgo && linux

package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// ModuleOf returns the process's one PKCS #11 context for t's module and
// t's slot, so that tests can open their own sessions on the token.
func ModuleOf(t *Token) (*pkcs11.Ctx, uint) { return t.mod.ctx, t.slot }

// CloseAllSessions closes every session of the process on t's token,
// behind the pool's back, as a device reset would.
func CloseAllSessions(t *Token) error { return t.mod.ctx.CloseAllSessions(t.slot) }

// IdleSessions returns the number of sessions waiting in t's pool.
func IdleSessions(t *Token) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// HoldSession takes a session from t's pool until release is called, as a
// long operation would.
func HoldSession(t *Token) (release func(), err error) {
	s, err := t.acquire(context.Background())
	if err != nil {
		return nil, err
	}
	return func() { t.release(s) }, nil
}
