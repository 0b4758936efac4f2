//go:build cgo && linux

package hsm

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/trust"
)

// Re-initialisation backoff: the first attempt after a loss may run at
// once, each failed one doubles the wait, from minBackoff up to
// maxBackoff.
var (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// A module is one loaded, initialised PKCS #11 library. There is exactly
// one per library file per process: C_Initialize and C_Finalize act on the
// whole process, and login state is shared by every session of it, so two
// contexts on one module would finalise or log out under each other.
//
// Every call into the module is made between enter and leave (the gate),
// so that a re-initialisation, which calls C_Finalize, runs only when no
// other call is in flight: PKCS #11 leaves C_Finalize undefined while
// another thread is inside the library.
type module struct {
	path  string // canonical path, the registry key
	ctx   *pkcs11.Ctx
	raw   *rawModule
	owned bool // this package's C_Initialize succeeded, so it calls C_Finalize

	// openMu serialises opening Tokens, so that checking a PIN against
	// the open Tokens, logging in and registering are one step.
	openMu sync.Mutex
	// loginMu serialises C_Login and wiping PINs: a burst of sessions
	// that find themselves logged out spends at most one PIN attempt.
	loginMu sync.Mutex

	// Guarded by modules.Mutex.
	refs  int
	users []*Token // open Tokens, to check their PINs agree and to re-attach them

	// Guarded by mu.
	mu          sync.Mutex
	calls       int           // calls in flight between enter and leave
	drained     chan struct{} // closed when calls drops to 0, if a re-initialisation waits for that
	reinit      *reinit       // the re-initialisation running or waiting, or nil
	initialized bool          // C_Initialize succeeded and no C_Finalize since
	next        time.Time     // no re-initialisation starts before this
	delay       time.Duration // the wait after the next failed re-initialisation
}

// A reinit is one re-initialisation of a module; done is closed when it
// has ended and every Token on the module has been re-attached or marked
// lost.
type reinit struct {
	done chan struct{}
}

// modules is the process-wide registry of loaded modules.
var modules = struct {
	sync.Mutex
	m map[string]*module
}{m: make(map[string]*module)}

// acquireModule returns the module at path, loading and initialising it on
// first use, and takes a reference that release gives back.
func acquireModule(path string) (*module, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s does not exist; install the token vendor's PKCS #11 package "+
			"(for SoftHSM: apt-get install softhsm2) or fix module-path in the URI", ErrModuleNotFound, path)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrModuleNotFound, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file; fix module-path in the URI", ErrModuleNotFound, path)
	}
	// The module runs inside keyward with all its privileges: whoever can
	// replace it, or a directory on its path, owns the agent.
	if err := trust.Check("PKCS #11 module", path, trust.Public); err != nil {
		return nil, fmt.Errorf("hsm: refusing to load the module: %w", err)
	}
	canon, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModuleNotFound, err)
	}

	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.m[canon]; ok {
		m.refs++
		return m, nil
	}
	raw, err := loadRaw(canon)
	if err != nil {
		return nil, err
	}
	ctx := pkcs11.New(canon)
	if ctx == nil {
		return nil, fmt.Errorf("%w: cannot load %s", ErrModuleNotFound, canon)
	}
	m := &module{path: canon, ctx: ctx, raw: raw, refs: 1, initialized: true}
	switch err := ctx.Initialize(); {
	case err == nil:
		m.owned = true
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
		// Someone else in this process initialised it; they finalise it.
	default:
		ctx.Destroy()
		return nil, fmt.Errorf("hsm: initialize PKCS #11 module %s: %w", canon, err)
	}
	modules.m[canon] = m
	return m, nil
}

// hold takes another reference to m, for a goroutine that outlives its
// caller. It fails once the last reference is gone: the module is
// finalised and unloaded then.
func (m *module) hold() bool {
	modules.Lock()
	defer modules.Unlock()
	if m.refs == 0 {
		return false
	}
	m.refs++
	return true
}

// release gives back a reference; the last one finalises the module.
func (m *module) release() error {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.m, m.path)
	m.mu.Lock()
	finalize := m.owned && m.initialized
	m.initialized = false
	m.mu.Unlock()
	var err error
	if finalize {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("hsm: finalize PKCS #11 module %s: %w", m.path, err)
	}
	return nil
}

// enter registers a call into the module, first waiting for a running
// re-initialisation to end (or for ctx). Every enter is paired with a
// leave.
func (m *module) enter(ctx context.Context) error {
	m.mu.Lock()
	for m.reinit != nil {
		done := m.reinit.done
		m.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		m.mu.Lock()
	}
	m.calls++
	m.mu.Unlock()
	return nil
}

// leave ends a call registered by enter.
func (m *module) leave() {
	m.mu.Lock()
	m.calls--
	if m.calls == 0 && m.drained != nil {
		close(m.drained)
		m.drained = nil
	}
	m.mu.Unlock()
}

// isInitialized reports whether the module is initialised.
func (m *module) isInitialized() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.initialized
}

// recover starts a re-initialisation of the module, unless one is
// already running or the backoff says it is too early. It returns the
// running re-initialisation and whether this call started it, or nil when
// none runs. It never waits: at most one re-initialisation runs per
// module.
//
// A re-initialisation waits until no call is in flight (a call that hangs
// holds it up), then calls C_Finalize and C_Initialize, then re-attaches
// every open Token: each selects its token again by its URI and serial,
// opens a session, logs in, finds its key and checks that it is the same
// key. Tokens that fail are marked lost (or failed, for PIN errors).
func (m *module) recover() (r *reinit, started bool) {
	// A reference for the goroutine, taken before m.mu (release takes
	// m.mu under modules.Mutex). A Token closed since its caller checked
	// may have given back the last one.
	if !m.hold() {
		return nil, false
	}
	m.mu.Lock()
	if m.reinit != nil {
		r := m.reinit
		m.mu.Unlock()
		m.release()
		return r, false
	}
	if time.Now().Before(m.next) {
		m.mu.Unlock()
		m.release()
		return nil, false
	}
	r = &reinit{done: make(chan struct{})}
	m.reinit = r
	var drained chan struct{}
	if m.calls > 0 {
		drained = make(chan struct{})
		m.drained = drained
	}
	m.mu.Unlock()
	go m.reinitialize(r, drained)
	return r, true
}

// reinitialize runs a re-initialisation started by recover.
func (m *module) reinitialize(r *reinit, drained chan struct{}) {
	defer m.release()
	if drained != nil {
		<-drained
	}
	// No call is in flight now, and enter waits for r.done.
	var initErr error
	reinitialized := false
	m.mu.Lock()
	wasInitialized := m.initialized
	m.mu.Unlock()
	if m.owned {
		if wasInitialized {
			// A module that lost its device may report an error here;
			// C_Initialize below says whether it is usable again.
			_ = m.ctx.Finalize()
		}
		reinitialized = true
		err := m.ctx.Initialize()
		switch {
		case err == nil:
		case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
			// C_Finalize failed above; the module kept its state.
			reinitialized = false
		default:
			initErr = fmt.Errorf("hsm: initialize PKCS #11 module %s again: %w", m.path, err)
		}
		m.mu.Lock()
		m.initialized = initErr == nil
		m.mu.Unlock()
	}

	modules.Lock()
	users := slices.Clone(m.users)
	modules.Unlock()
	allUp := true
	for _, t := range users {
		if !t.reattach(reinitialized, initErr) {
			allUp = false
		}
	}

	m.mu.Lock()
	if allUp {
		m.delay, m.next = 0, time.Time{}
	} else {
		m.delay = min(max(2*m.delay, minBackoff), maxBackoff)
		m.next = time.Now().Add(m.delay)
	}
	m.reinit = nil
	m.mu.Unlock()
	close(r.done)
}

// samePIN reports whether pin is the PIN of every Token already open on
// the token t is on. Once one session is logged in, C_Login on another
// answers CKR_USER_ALREADY_LOGGED_IN without looking at the PIN, so
// without this check a wrong PIN would be accepted while another Token is
// open.
func (m *module) samePIN(t *Token, pin []byte) bool {
	modules.Lock()
	defer modules.Unlock()
	for _, u := range m.users {
		if u.serial == t.serial && u.tokenLabel == t.tokenLabel &&
			subtle.ConstantTimeCompare(u.pin.Bytes(), pin) != 1 {
			return false
		}
	}
	return true
}

// addUser registers an open Token.
func (m *module) addUser(t *Token) {
	modules.Lock()
	defer modules.Unlock()
	m.users = append(m.users, t)
}

// removeUser unregisters t.
func (m *module) removeUser(t *Token) {
	modules.Lock()
	defer modules.Unlock()
	m.users = slices.DeleteFunc(m.users, func(u *Token) bool { return u == t })
}
