//go:build cgo && linux

package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// ModuleOf returns the process's one PKCS #11 context for t's module and
// t's slot, so that tests can open their own sessions on the token.
func ModuleOf(t *Token) (*pkcs11.Ctx, uint) { return t.mod.ctx, t.currentSlot() }

// CloseAllSessions closes every session of the process on t's token,
// behind the pool's back, as a device reset would.
func CloseAllSessions(t *Token) error { return t.mod.ctx.CloseAllSessions(t.currentSlot()) }

// IdleSessions returns the number of sessions waiting in t's pool.
func IdleSessions(t *Token) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// HoldSession takes a session from t's pool until release is called, as a
// long operation would.
func HoldSession(t *Token) (release func(), err error) {
	t.sem <- struct{}{}
	if err := t.mod.enter(context.Background()); err != nil {
		<-t.sem
		return nil, err
	}
	s, _, err := t.session()
	if err != nil {
		t.mod.leave()
		<-t.sem
		return nil, err
	}
	return func() {
		t.putIdle(s)
		t.mod.leave()
		<-t.sem
	}, nil
}
