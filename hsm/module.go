//go:build cgo && linux

package hsm

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/trust"
)

// A module is one loaded, initialised PKCS #11 library. There is exactly
// one per library file per process: C_Initialize and C_Finalize act on the
// whole process, and login state is shared by every session of it, so two
// contexts on one module would finalise or log out under each other.
type module struct {
	path  string // canonical path, the registry key
	ctx   *pkcs11.Ctx
	raw   *rawModule
	owned bool // this package's C_Initialize succeeded, so it calls C_Finalize

	// openMu serialises opening Tokens, so that checking a PIN against
	// the open Tokens, logging in and registering are one step.
	openMu sync.Mutex

	// Guarded by modules.Mutex.
	refs  int
	users map[uint][]*Token // open Tokens by slot, to check their PINs agree
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
	m := &module{path: canon, ctx: ctx, raw: raw, refs: 1, users: make(map[uint][]*Token)}
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

// release gives back a reference; the last one finalises the module.
func (m *module) release() error {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.m, m.path)
	var err error
	if m.owned {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("hsm: finalize PKCS #11 module %s: %w", m.path, err)
	}
	return nil
}

// samePIN reports whether pin is the PIN of every Token already open on
// slot. Once one session is logged in, C_Login on another answers
// CKR_USER_ALREADY_LOGGED_IN without looking at the PIN, so without this
// check a wrong PIN would be accepted while another Token is open.
func (m *module) samePIN(slot uint, pin []byte) bool {
	modules.Lock()
	defer modules.Unlock()
	for _, t := range m.users[slot] {
		if subtle.ConstantTimeCompare(t.pin.Bytes(), pin) != 1 {
			return false
		}
	}
	return true
}

// addUser registers an open Token on slot.
func (m *module) addUser(slot uint, t *Token) {
	modules.Lock()
	defer modules.Unlock()
	m.users[slot] = append(m.users[slot], t)
}

// removeUser unregisters t.
func (m *module) removeUser(slot uint, t *Token) {
	modules.Lock()
	defer modules.Unlock()
	m.users[slot] = slices.DeleteFunc(m.users[slot], func(u *Token) bool { return u == t })
	if len(m.users[slot]) == 0 {
		delete(m.users, slot)
	}
}
