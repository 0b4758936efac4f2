//go:build cgo && linux

package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// Return codes, by what they say about a session, the key or the token.
var (
	// A session the module has forgotten: it is not closed either (the
	// number may already name a new session).
	sessionGoneCodes = []uint{pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED}
	// A session not to use again; replaced once per operation. The same
	// code on a session opened for that operation means the token, not
	// the session, is at fault.
	sessionDeadCodes = []uint{pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_USER_NOT_LOGGED_IN}
	// A key handle the module no longer knows: the key is looked up again.
	keyStaleCodes = []uint{pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID}
	// The token or the module is gone or broken: the Token is lost and
	// recovers by re-initialising the module. CKR_GENERAL_ERROR from
	// C_Decrypt is an AES-GCM tag failure on SoftHSM and is not in this
	// set (Unwrap turns it into an IntegrityError first); from any other
	// call (C_Login, C_OpenSession, C_GetTokenInfo after SoftHSM's token
	// directory went away) it is.
	deviceCodes = []uint{pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_GENERAL_ERROR}
)

// slowProbe is how long a health check may go unanswered before a caller
// that gives up on it marks the token lost.
var slowProbe = time.Second

// isCode reports whether err wraps one of the PKCS #11 return codes.
func isCode(err error, codes []uint) bool {
	for _, rv := range codes {
		if errors.Is(err, pkcs11.Error(rv)) {
			return true
		}
	}
	return false
}

// deviceFailure reports whether err says the token or module is gone or
// broken. An IntegrityError never does: it is about the blob.
func deviceFailure(err error) bool {
	var ie *IntegrityError
	return !errors.As(err, &ie) && isCode(err, deviceCodes)
}

// pinFailure reports whether err is a refused, locked or expired PIN:
// logging in again would spend another attempt, or could lock the token.
func pinFailure(err error) bool {
	return errors.Is(err, ErrBadPIN) || errors.Is(err, ErrPINLocked) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_EXPIRED))
}

// An opFunc is an operation on the token with a logged-in session and the
// key handle.
type opFunc func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error

// run runs fn for the operation op (for messages). It fails fast when the
// Token is closed, failed or lost (a lost Token starts a recovery attempt
// when the backoff allows one, without waiting for it), waits for a free
// session and for a running re-initialisation, then runs fn in a
// goroutine and returns when fn does or ctx ends. A goroutine whose
// caller gave up finishes fn, gives the session back and, if fn succeeded,
// calls discard (to clear what it produced).
func (t *Token) run(ctx context.Context, op string, fn opFunc, discard func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.usable(ctx, false); err != nil {
		return err
	}
	t.mu.Lock()
	lost := t.lost
	t.mu.Unlock()
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-lost:
		return t.unavailable()
	case <-t.closing:
		return ErrClosed
	}
	if err := t.mod.enter(ctx); err != nil {
		<-t.sem
		return fmt.Errorf("%w: %s on token %q: gave up waiting for the module to be re-initialised: %w",
			ErrUnavailable, op, t.tokenLabel, err)
	}
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		t.mod.leave()
		<-t.sem
		return ErrClosed
	case t.state != StateHealthy: // a re-initialisation just ended
		t.mu.Unlock()
		t.mod.leave()
		<-t.sem
		return t.unavailable()
	}
	t.work.Add(1)
	t.mu.Unlock()

	var (
		mu        sync.Mutex
		abandoned bool
		res       = make(chan error, 1)
	)
	go func() {
		defer t.work.Done()
		err := t.attempt(fn)
		t.mod.leave()
		<-t.sem
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if err == nil && discard != nil {
				discard()
			}
			return
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case err := <-res:
		return err
	default:
	}
	abandoned = true
	return fmt.Errorf("%w: %s on token %q: the module did not answer in time: %w", ErrUnavailable, op, t.tokenLabel, ctx.Err())
}

// attempt runs fn on a pooled or fresh session, inside the module's gate
// and holding a session slot. When the session died, fn runs again once
// on a fresh session; when the key handle went stale, the key is looked
// up again (and checked to be the same key) and fn runs again once. A
// failure that says the token is gone marks the Token lost. A session on
// which fn failed in any way is not reused: it may hold an unfinished
// operation.
func (t *Token) attempt(fn opFunc) error {
	var sessionRetried, keyRetried bool
	for {
		s, fresh, err := t.session()
		if err != nil {
			return t.failure(err)
		}
		t.mu.Lock()
		key := t.key
		t.mu.Unlock()
		err = fn(t.mod.ctx, s, key)
		if err == nil {
			t.putIdle(s)
			t.succeeded()
			return nil
		}
		t.dropSession(s, err)
		var ie *IntegrityError
		switch {
		case errors.As(err, &ie):
			// SoftHSM answers a failed tag and a broken token alike
			// (CKR_GENERAL_ERROR): ask the token which it was.
			if err := t.tokenAnswers(); err != nil {
				return t.lose(err)
			}
			return err
		case isCode(err, sessionDeadCodes):
			if sessionRetried || fresh {
				return t.lose(err)
			}
			sessionRetried = true
			t.purgeIdle()
		case isCode(err, keyStaleCodes):
			if keyRetried {
				return t.lose(err)
			}
			keyRetried = true
			if err := t.refindKey(); err != nil {
				return t.keyLost(err)
			}
		default:
			return t.failure(err)
		}
	}
}

// failure decides what an error means for the Token: a PIN failure makes
// it failed, a device failure or a changed or missing key makes it lost;
// either way the error returned says so. Other errors are returned as
// they are.
func (t *Token) failure(err error) error {
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable):
		return err
	case pinFailure(err):
		return t.fail(err)
	case deviceFailure(err), isCode(err, sessionDeadCodes),
		errors.Is(err, ErrKeyChanged), errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrTokenNotFound):
		return t.lose(err)
	}
	return err
}

// keyLost handles a failure to find the key again: without its key the
// Token is lost (or failed, for a PIN failure), whatever the reason.
func (t *Token) keyLost(err error) error {
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable):
		return err
	case pinFailure(err):
		return t.fail(err)
	}
	return t.lose(err)
}

// session returns an idle session, or opens one. fresh reports that it
// was opened now. A new session that had to log in again means the
// module may have forgotten or renumbered object handles, so the key is
// looked up again and checked to be the same key.
func (t *Token) session() (s pkcs11.SessionHandle, fresh bool, err error) {
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		s = t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return s, false, nil
	}
	slot := t.slot
	t.mu.Unlock()
	s, loggedIn, err := t.openSession(slot)
	if err != nil {
		return 0, true, err
	}
	if loggedIn {
		key, err := t.findSameKey(s)
		if err != nil {
			t.dropSession(s, err)
			return 0, true, t.keyLost(err)
		}
		t.mu.Lock()
		t.key = key
		t.mu.Unlock()
	}
	return s, true, nil
}

// putIdle puts a healthy session back in the pool.
func (t *Token) putIdle(s pkcs11.SessionHandle) {
	t.mu.Lock()
	t.idle = append(t.idle, s)
	t.mu.Unlock()
}

// dropSession drops a session after err, closing it unless the module has
// already forgotten it or the token is gone.
func (t *Token) dropSession(s pkcs11.SessionHandle, err error) {
	if !isCode(err, sessionGoneCodes) && !deviceFailure(err) {
		_ = t.mod.ctx.CloseSession(s)
	}
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
			t.dropSession(s, err)
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

// refindKey looks the key up again by its label and id, after the module
// reported its handle invalid.
func (t *Token) refindKey() error {
	s, _, err := t.session()
	if err != nil {
		return err
	}
	key, err := t.findSameKey(s)
	if err != nil {
		t.dropSession(s, err)
		return err
	}
	t.putIdle(s)
	t.mu.Lock()
	t.key = key
	t.mu.Unlock()
	return nil
}

// findSameKey finds the key by the label and id it had at Open, checks
// its attributes, and checks with the canary that it is the same key: a
// wrapped key is authenticated, so a different key would only fail to
// unwrap (as if every blob were tampered with) and would wrap new data
// keys that the real key cannot unwrap. A key that vanished while the
// token still answers is reported as [ErrKeyNotFound]; if the token does
// not answer, that is reported instead.
func (t *Token) findSameKey(s pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	key, err := t.findKey(s, t.keyLabel, t.keyCKAID)
	if errors.Is(err, ErrKeyNotFound) {
		// SoftHSM finds nothing, without an error, once its token
		// directory is gone.
		if err := t.tokenAnswers(); err != nil {
			return 0, err
		}
	}
	if err != nil {
		return 0, err
	}
	if _, _, err := t.inspectKey(s, key); err != nil {
		var rv pkcs11.Error
		if errors.As(err, &rv) {
			return 0, err // the module failed, not the key
		}
		return 0, fmt.Errorf("%w: %w", ErrKeyChanged, err)
	}
	if err := t.checkCanary(s, key); err != nil {
		return 0, err
	}
	return key, nil
}

// tokenAnswers checks that the module answers C_GetTokenInfo for the
// Token's slot and that the same token (label and serial number) is
// still in it.
func (t *Token) tokenAnswers() error {
	info, err := t.mod.ctx.GetTokenInfo(t.currentSlot())
	if err != nil {
		return fmt.Errorf("hsm: read the state of token %q: %w", t.tokenLabel, err)
	}
	label, serial := trimField(info.Label), trimField(info.SerialNumber)
	if label != t.tokenLabel || serial != t.serial {
		return fmt.Errorf("%w: the slot of token %q (serial %q) now holds token %q (serial %q)",
			ErrKeyChanged, t.tokenLabel, t.serial, label, serial)
	}
	return nil
}

// currentSlot returns the Token's slot.
func (t *Token) currentSlot() uint {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.slot
}

// succeeded records that the token answered.
func (t *Token) succeeded() {
	now := time.Now()
	t.mu.Lock()
	t.lastOK = now
	t.mu.Unlock()
}

// lose marks the Token lost because of err, unless it is failed, and
// returns the error for the caller. Operations waiting for a session are
// woken and fail.
func (t *Token) lose(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.state {
	case StateFailed:
		return t.unavailableLocked()
	case StateHealthy:
		t.state, t.since = StateLost, time.Now()
		close(t.lost)
	}
	t.cause = err
	return fmt.Errorf("%w: token %q: %w", ErrUnavailable, t.tokenLabel, err)
}

// fail marks the Token failed because of err (a PIN the token refused
// or would lock): it does not try again.
func (t *Token) fail(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == StateHealthy {
		close(t.lost)
	}
	if t.state != StateFailed {
		t.state, t.since = StateFailed, time.Now()
	}
	t.cause = err
	return t.unavailableLocked()
}

// up marks the Token healthy, with key in slot and s as its one idle
// session.
func (t *Token) up(slot uint, key pkcs11.ObjectHandle, s pkcs11.SessionHandle) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slot, t.key, t.idle = slot, key, []pkcs11.SessionHandle{s}
	if t.state != StateHealthy {
		t.lost = make(chan struct{})
	}
	t.state, t.since, t.cause, t.lastOK = StateHealthy, now, nil, now
}

// unavailable returns the error for an operation on a lost or failed
// Token.
func (t *Token) unavailable() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unavailableLocked()
}

func (t *Token) unavailableLocked() error {
	switch {
	case t.closed:
		return ErrClosed
	case t.state == StateFailed:
		return fmt.Errorf("hsm: token %q came back but cannot be used until keyward is restarted: %w", t.tokenLabel, t.cause)
	case t.state == StateLost:
		return fmt.Errorf("%w: token %q lost since %s: %w", ErrUnavailable, t.tokenLabel,
			t.since.Format(time.RFC3339), t.cause)
	}
	return nil
}

// usable returns nil when the Token is healthy. When it is lost, usable
// asks the module for a recovery attempt (refused while the backoff
// runs, joined when one runs). With wait set (Healthy) it waits for the
// attempt until ctx ends and returns nil if the Token came back; without
// (operations) it fails fast, and a later operation finds the Token
// healthy if the attempt succeeded.
func (t *Token) usable(ctx context.Context, wait bool) error {
	t.mu.Lock()
	closed, state := t.closed, t.state
	t.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case state == StateHealthy:
		return nil
	case state == StateFailed:
		return t.unavailable()
	}
	r, _ := t.mod.recover()
	if r == nil || !wait {
		return t.unavailable()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("%w: token %q: gave up waiting for the module to be re-initialised: %w",
			ErrUnavailable, t.tokenLabel, ctx.Err())
	}
	return t.unavailable()
}

// A probe is a health check in flight.
type probe struct {
	started time.Time
	done    chan struct{} // closed when err is set
	err     error
}

// startProbe returns the health check in flight, or starts one.
func (t *Token) startProbe() (*probe, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if t.probe != nil {
		return t.probe, nil
	}
	pr := &probe{started: time.Now(), done: make(chan struct{})}
	t.probe = pr
	t.work.Add(1)
	go func() {
		defer t.work.Done()
		err := t.check()
		t.mu.Lock()
		pr.err = err
		t.probe = nil
		t.mu.Unlock()
		close(pr.done)
	}()
	return pr, nil
}

// check is the health check of Healthy: it unwraps the canary with a
// pooled session, waiting for one if all are busy.
func (t *Token) check() error {
	t.mu.Lock()
	lost := t.lost
	t.mu.Unlock()
	select {
	case t.sem <- struct{}{}:
	case <-lost:
		return t.unavailable()
	case <-t.closing:
		return ErrClosed
	}
	defer func() { <-t.sem }()
	_ = t.mod.enter(context.Background())
	defer t.mod.leave()
	if err := t.unavailable(); err != nil {
		return err
	}
	return t.attempt(func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		return t.checkCanary(s, key)
	})
}

// reattach brings the Token back after its module was re-initialised
// (reinitialized; all sessions are then gone) or, for a module keyward
// may not finalise, after its sessions were dropped. initErr is the
// C_Initialize failure, if any. It selects the token again by the URI and
// the serial number it had, checks the PIN flags, logs in, finds the key
// by its label and id and checks it with the canary. It reports whether
// the Token needs no further attempt: it is healthy, failed or closed.
func (t *Token) reattach(reinitialized bool, initErr error) bool {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	closed, state := t.closed, t.state
	t.mu.Unlock()
	if !reinitialized {
		for _, s := range idle {
			_ = t.mod.ctx.CloseSession(s)
		}
	}
	switch {
	case closed, state == StateFailed:
		return true
	case initErr != nil:
		t.lose(initErr)
		return false
	}
	slot, s, key, err := t.rebind()
	switch {
	case err != nil && pinFailure(err):
		t.fail(err)
		return true
	case err != nil:
		t.lose(err)
		return false
	}
	t.up(slot, key, s)
	return true
}

// rebind finds the Token's token, logs in and finds its key.
func (t *Token) rebind() (slot uint, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, err error) {
	present, matches, err := t.scanTokens(t.uri)
	if err != nil {
		return 0, 0, 0, err
	}
	var same []found
	for _, f := range matches {
		if f.info.SerialNumber == t.serial && f.info.Label == t.tokenLabel {
			same = append(same, f)
		}
	}
	switch {
	case len(same) == 0 && len(matches) > 0:
		// Refused before logging in: no PIN attempt is spent on it.
		return 0, 0, 0, fmt.Errorf("%w: token %q (serial %q) is gone, and %s is there instead: another token; "+
			"keyward refuses it", ErrKeyChanged, t.tokenLabel, t.serial, describe(matches))
	case len(same) == 0:
		return 0, 0, 0, fmt.Errorf("%w: token %q (serial %q) is not back yet; tokens present: %s",
			ErrTokenNotFound, t.tokenLabel, t.serial, describe(present))
	case len(same) > 1:
		return 0, 0, 0, fmt.Errorf("%w: %d tokens have label %q and serial %q: %s",
			ErrKeyChanged, len(same), t.tokenLabel, t.serial, describe(same))
	}
	slot = same[0].slot
	if err := t.checkPINFlags(same[0].info); err != nil {
		return 0, 0, 0, err
	}
	t.mu.Lock()
	t.slot = slot // for tokenAnswers and messages
	t.mu.Unlock()
	s, _, err = t.openSession(slot)
	if err != nil {
		return 0, 0, 0, err
	}
	key, err = t.findSameKey(s)
	if err != nil {
		t.dropSession(s, err)
		return 0, 0, 0, err
	}
	return slot, s, key, nil
}
