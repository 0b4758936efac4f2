//go:build cgo && linux

package hsm

import (
	"context"
	"errors"

	"github.com/miekg/pkcs11"
)

// Return codes after which a session is not used again. The first two mean
// the module has already forgotten the handle, so it is not closed either
// (the number may already name a new session).
var (
	sessionGoneCodes  = []uint{pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED}
	sessionFatalCodes = []uint{pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_USER_NOT_LOGGED_IN}
	keyStaleCodes = []uint{pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID}
)

// isCode reports whether err wraps one of the PKCS #11 return codes.
func isCode(err error, codes []uint) bool {
	for _, rv := range codes {
		if errors.Is(err, pkcs11.Error(rv)) {
			return true
		}
	}
	return false
}

// run calls fn with a logged-in session and the key handle. When fn fails
// because the session died, the session is dropped along with any idle
// session that died too, and fn runs again on a fresh session; when the
// key handle went stale, the key is looked up again and fn runs again.
// Each recovery happens at most once per call. A session on which fn
// failed in any way is not reused: it may hold an unfinished operation.
func (t *Token) run(ctx context.Context, fn func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error) error {
	var sessionRetried, keyRetried bool
	for {
		s, err := t.acquire(ctx)
		if err != nil {
			return err
		}
		t.mu.Lock()
		key := t.key
		t.mu.Unlock()
		err = fn(t.mod.ctx, s, key)
		if err == nil {
			t.release(s)
			return nil
		}
		t.discard(s, err)
		if ctx.Err() != nil {
			return err
		}
		switch {
		case !sessionRetried && isCode(err, sessionFatalCodes):
			sessionRetried = true
			t.purgeIdle()
		case !keyRetried && isCode(err, keyStaleCodes):
			keyRetried = true
			if err := t.refreshKey(ctx); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// acquire takes a session from the pool or opens one, waiting while
// MaxSessions are in use.
func (t *Token) acquire(ctx context.Context) (pkcs11.SessionHandle, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.sem
		return 0, ErrClosed
	}
	if n := len(t.idle); n > 0 {
		s := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return s, nil
	}
	t.mu.Unlock()
	s, loggedIn, err := t.openSession()
	if err != nil {
		<-t.sem
		return 0, err
	}
	if loggedIn {
		// The process had lost its login, so the module may have
		// forgotten, or even renumbered, the handles of private objects:
		// look the key up again rather than trust the old handle.
		key, err := t.findKey(s, t.keyLabel, t.keyCKAID)
		if err != nil {
			t.discard(s, err)
			return 0, err
		}
		t.mu.Lock()
		t.key = key
		t.mu.Unlock()
	}
	return s, nil
}

// release puts a healthy session back in the pool.
func (t *Token) release(s pkcs11.SessionHandle) {
	t.mu.Lock()
	t.idle = append(t.idle, s)
	t.mu.Unlock()
	<-t.sem
}

// discard drops a session after err, closing it unless the module has
// already forgotten it.
func (t *Token) discard(s pkcs11.SessionHandle, err error) {
	if !isCode(err, sessionGoneCodes) {
		_ = t.mod.ctx.CloseSession(s)
	}
	<-t.sem
}

// purgeIdle drops the idle sessions that are no longer open and logged in:
// what killed one session (a device reset, a logout, C_CloseAllSessions)
// usually killed them all.
func (t *Token) purgeIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	var keep []pkcs11.SessionHandle
	for _, s := range idle {
		info, err := t.mod.ctx.GetSessionInfo(s)
		switch {
		case err != nil:
			if !isCode(err, sessionGoneCodes) {
				_ = t.mod.ctx.CloseSession(s)
			}
		case info.State == pkcs11.CKS_RW_USER_FUNCTIONS || info.State == pkcs11.CKS_RO_USER_FUNCTIONS:
			keep = append(keep, s)
		default:
			_ = t.mod.ctx.CloseSession(s)
		}
	}
	t.mu.Lock()
	t.idle = append(t.idle, keep...)
	t.mu.Unlock()
}

// refreshKey looks the key up again by its label and id, after the module
// reported its handle invalid.
func (t *Token) refreshKey(ctx context.Context) error {
	s, err := t.acquire(ctx)
	if err != nil {
		return err
	}
	key, err := t.findKey(s, t.keyLabel, t.keyCKAID)
	if err != nil {
		t.discard(s, err)
		return err
	}
	t.release(s)
	t.mu.Lock()
	t.key = key
	t.mu.Unlock()
	return nil
}
