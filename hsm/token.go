//go:build cgo && linux

package hsm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/locked"
)

// A Token is an AES-256 key-encryption key inside a PKCS #11 token, used
// to wrap and unwrap data keys. The key is generated in the token, is
// sensitive and not extractable, and never leaves it; only 32-byte data
// keys cross the PKCS #11 boundary.
//
// A Token is safe for concurrent use by multiple goroutines. It keeps a
// pool of at most Config.MaxSessions logged-in sessions; an operation waits
// for a free session (or for its context to end). A session the module
// reports dead is dropped and replaced, logging in again, and the
// operation is retried once on the fresh session. Wrap, Unwrap and
// Healthy return by their context's end: a module call that hangs is
// left running in a goroutine (at most MaxSessions operations and one
// health check at a time), and the caller gets an error. Open and Close
// wait for the module.
//
// When the token stops answering (see "Failures and recovery" in the
// package documentation) the Token is lost: operations fail fast with
// [ErrUnavailable] until a re-initialisation of the module, with backoff,
// finds the same key again; [Token.Status] reports it. Wrap, Unwrap and
// Healthy must not be called after Close; they then return [ErrClosed].
type Token struct {
	mod        *module
	uri        *URI   // to select the token again after a re-initialisation
	tokenLabel string // the token's identity, fixed at Open
	serial     string
	keyLabel   string // the key's identity, fixed at Open
	keyCKAID   []byte
	keyID      string
	pin        *locked.Buffer
	canary     []byte   // a random data key wrapped at Open, to recognise the key later
	canarySum  [32]byte // SHA-256 of that data key

	sem     chan struct{}  // one slot per session in use
	closing chan struct{}  // closed by Close
	work    sync.WaitGroup // goroutines calling the module for this Token

	mu     sync.Mutex
	slot   uint // may change when the module is re-initialised
	key    pkcs11.ObjectHandle
	idle   []pkcs11.SessionHandle
	closed bool
	state  State
	since  time.Time     // when state began
	cause  error         // why lost or failed
	lastOK time.Time     // last success
	lost   chan struct{} // closed when the Token is lost or failed; replaced when it is healthy again
	probe  *probe        // the health check in flight, or nil
}

// Open opens the token and key cfg.URI names and logs in with cfg.PIN.
// It fails with an error wrapping [ErrModuleNotFound], [ErrTokenNotFound],
// [ErrBadPIN], [ErrPINLocked], [ErrMechanism] or [ErrKeyNotFound] (the key
// is made by [Init]), and refuses a key that is extractable or not
// sensitive.
func Open(cfg Config) (*Token, error) {
	t, _, err := open(cfg, false)
	return t, err
}

// Init is Open, except that when the key does not exist it generates it
// inside the token (CKM_AES_KEY_GEN, AES-256, persistent, private,
// sensitive, not extractable, usable only to encrypt and decrypt),
// labelled with the URI's object and with its id, or 16 random bytes as
// CKA_ID when the URI has none. created reports whether it did. Running
// Init again finds the key and returns created == false.
func Init(cfg Config) (tok *Token, created bool, err error) {
	return open(cfg, true)
}

// open implements Open and Init.
func open(cfg Config, create bool) (*Token, bool, error) {
	n, err := cfg.validate(create)
	if err != nil {
		return nil, false, err
	}
	path, err := cfg.URI.ModulePath()
	if err != nil {
		return nil, false, err
	}
	mod, err := acquireModule(path)
	if err != nil {
		return nil, false, err
	}
	t := &Token{
		mod:     mod,
		uri:     cfg.URI,
		pin:     locked.New(cfg.PIN),
		sem:     make(chan struct{}, n),
		closing: make(chan struct{}),
		lost:    make(chan struct{}),
	}
	_ = mod.enter(context.Background()) // waits for a running re-initialisation
	created, err := t.setup(cfg.URI, create)
	if err != nil {
		for _, s := range t.idle {
			_ = mod.ctx.CloseSession(s)
		}
		mod.loginMu.Lock()
		t.pin.Wipe()
		mod.loginMu.Unlock()
		mod.leave()
		_ = mod.release()
		return nil, false, err
	}
	mod.leave()
	return t, created, nil
}

// setup selects the token, logs in, finds (or creates) the key and
// wraps the canary. It runs inside the module's gate.
func (t *Token) setup(u *URI, create bool) (created bool, err error) {
	t.mod.openMu.Lock()
	defer t.mod.openMu.Unlock()
	if !t.mod.isInitialized() {
		return false, fmt.Errorf("%w: PKCS #11 module %s lost its token and is being re-initialised; try again later",
			ErrUnavailable, t.mod.path)
	}
	f, err := t.selectToken(u)
	if err != nil {
		return false, err
	}
	t.slot, t.tokenLabel, t.serial = f.slot, f.info.Label, f.info.SerialNumber
	if err := t.checkMechanisms(create); err != nil {
		return false, err
	}
	if err := t.checkPINFlags(f.info); err != nil {
		return false, err
	}
	if !t.mod.samePIN(t, t.pin.Bytes()) {
		return false, fmt.Errorf("%w: a key on token %q is already open in this process with a different PIN",
			ErrBadPIN, t.tokenLabel)
	}
	s, _, err := t.openSession(t.slot)
	if err != nil {
		return false, err
	}
	t.idle = append(t.idle, s)

	key, err := t.findKey(s, u.Object(), u.ID())
	if errors.Is(err, ErrKeyNotFound) && create {
		if err := t.generateKey(s, u); err != nil {
			return false, err
		}
		created = true
		key, err = t.findKey(s, u.Object(), u.ID())
	}
	if err != nil {
		return false, err
	}
	label, id, err := t.inspectKey(s, key)
	if err != nil {
		return false, err
	}
	t.keyLabel, t.keyCKAID = label, id
	t.keyID = "pkcs11:" + t.serial + "/" + t.keyLabel + "/" + hex.EncodeToString(t.keyCKAID)
	if err := t.makeCanary(s, key); err != nil {
		return false, err
	}
	t.key = key
	now := time.Now()
	t.state, t.since, t.lastOK = StateHealthy, now, now
	t.mod.addUser(t)
	return created, nil
}

// checkPINFlags refuses to log in to a token whose user PIN is locked,
// not set, or one failure away from locking: keyward never spends the last
// attempt unattended.
func (t *Token) checkPINFlags(info pkcs11.TokenInfo) error {
	switch {
	case info.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0:
		return t.pinLockedError()
	case info.Flags&pkcs11.CKF_USER_PIN_INITIALIZED == 0:
		return fmt.Errorf("hsm: token %q has no user PIN set; initialise it with the token vendor's tool", t.tokenLabel)
	case info.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0:
		return fmt.Errorf("%w: token %q allows one more PIN attempt before it locks, and keyward will not spend it "+
			"unattended; check the PIN source, then log in once by hand (e.g. pkcs11-tool --login --test) to reset the counter",
			ErrPINLocked, t.tokenLabel)
	}
	return nil
}

// A found is a token present in a slot.
type found struct {
	slot uint
	info pkcs11.TokenInfo
}

// scanTokens lists the initialised tokens the module offers, and those
// that match the token attributes of u.
func (t *Token) scanTokens(u *URI) (present, matches []found, err error) {
	p := t.mod.ctx
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, nil, fmt.Errorf("hsm: list the slots of %s: %w", t.mod.path, err)
	}
	for _, slot := range slots {
		info, err := p.GetTokenInfo(slot)
		if err != nil || info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		info.Label = trimField(info.Label)
		info.SerialNumber = trimField(info.SerialNumber)
		info.ManufacturerID = trimField(info.ManufacturerID)
		info.Model = trimField(info.Model)
		present = append(present, found{slot, info})
		if id, ok := u.SlotID(); ok && id != uint64(slot) {
			continue
		}
		if match(u.Token(), info.Label) && match(u.Serial(), info.SerialNumber) &&
			match(u.Manufacturer(), info.ManufacturerID) && match(u.Model(), info.Model) {
			matches = append(matches, found{slot, info})
		}
	}
	return present, matches, nil
}

// describe lists tokens for messages.
func describe(list []found) string {
	var d []string
	for _, f := range list {
		d = append(d, fmt.Sprintf("%q (serial %q, slot %d)", f.info.Label, f.info.SerialNumber, f.slot))
	}
	return strings.Join(d, ", ")
}

// selectToken finds the one initialised token that matches u.
func (t *Token) selectToken(u *URI) (found, error) {
	present, matches, err := t.scanTokens(u)
	switch {
	case err != nil:
		return found{}, err
	case len(matches) == 1:
		return matches[0], nil
	case len(present) == 0:
		return found{}, fmt.Errorf("%w: %s offers no initialised token; check that the device is connected "+
			"(for SoftHSM, that SOFTHSM2_CONF names the right token directory)", ErrTokenNotFound, t.mod.path)
	case len(matches) == 0:
		return found{}, fmt.Errorf("%w: no token matches %s; tokens present: %s; fix the token attributes of the URI",
			ErrTokenNotFound, selector(u), describe(present))
	default:
		return found{}, fmt.Errorf("hsm: %d tokens match %s: %s; add serial= to the URI to choose one",
			len(matches), selector(u), describe(matches))
	}
}

// trimField strips the blank (or NUL) padding of a CK_TOKEN_INFO field.
func trimField(s string) string { return strings.TrimRight(s, " \x00") }

// match reports whether a token field matches the URI value want.
func match(want, have string) bool { return want == "" || want == have }

// selector describes the token attributes of u for messages.
func selector(u *URI) string {
	var d []string
	for _, a := range [][2]string{{"token", u.Token()}, {"manufacturer", u.Manufacturer()}, {"serial", u.Serial()}, {"model", u.Model()}} {
		if a[1] != "" {
			d = append(d, fmt.Sprintf("%s=%q", a[0], a[1]))
		}
	}
	if id, ok := u.SlotID(); ok {
		d = append(d, fmt.Sprintf("slot-id=%d", id))
	}
	if len(d) == 0 {
		return "the URI"
	}
	return strings.Join(d, " ")
}

// aesMechanisms names the AES mechanisms of PKCS #11 v2.40, for messages.
var aesMechanisms = map[uint]string{
	0x1080: "CKM_AES_KEY_GEN", 0x1081: "CKM_AES_ECB", 0x1082: "CKM_AES_CBC", 0x1083: "CKM_AES_MAC",
	0x1084: "CKM_AES_MAC_GENERAL", 0x1085: "CKM_AES_CBC_PAD", 0x1086: "CKM_AES_CTR", 0x1087: "CKM_AES_GCM",
	0x1088: "CKM_AES_CCM", 0x1089: "CKM_AES_CTS", 0x108A: "CKM_AES_CMAC", 0x108B: "CKM_AES_CMAC_GENERAL",
	0x108C: "CKM_AES_XCBC_MAC", 0x108D: "CKM_AES_XCBC_MAC_96", 0x108E: "CKM_AES_GMAC",
	0x1104: "CKM_AES_ECB_ENCRYPT_DATA", 0x1105: "CKM_AES_CBC_ENCRYPT_DATA", 0x2104: "CKM_AES_OFB",
	0x2105: "CKM_AES_CFB64", 0x2106: "CKM_AES_CFB8", 0x2107: "CKM_AES_CFB128", 0x2108: "CKM_AES_CFB1",
	0x2109: "CKM_AES_KEY_WRAP", 0x210A: "CKM_AES_KEY_WRAP_PAD", 0x210B: "CKM_AES_KEY_WRAP_KWP",
}

// checkMechanisms checks that the token offers AES-GCM encryption and
// decryption, and AES key generation when create is set.
func (t *Token) checkMechanisms(create bool) error {
	p := t.mod.ctx
	list, err := p.GetMechanismList(t.slot)
	if err != nil {
		return fmt.Errorf("hsm: list the mechanisms of token %q: %w", t.tokenLabel, err)
	}
	offered := make(map[uint]bool)
	var aes []string
	for _, m := range list {
		offered[m.Mechanism] = true
		if name, ok := aesMechanisms[m.Mechanism]; ok {
			aes = append(aes, name)
		}
	}
	need := []uint{pkcs11.CKM_AES_GCM}
	if create {
		need = append(need, pkcs11.CKM_AES_KEY_GEN)
	}
	for _, m := range need {
		if !offered[m] {
			have := "none"
			if len(aes) > 0 {
				have = strings.Join(aes, ", ")
			}
			return fmt.Errorf("%w: token %q does not offer %s (0x%X); its AES mechanisms are: %s; keyward needs a token with AES-GCM",
				ErrMechanism, t.tokenLabel, aesMechanisms[m], m, have)
		}
	}
	info, err := p.GetMechanismInfo(t.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, nil)})
	if err != nil {
		return fmt.Errorf("hsm: read CKM_AES_GCM details of token %q: %w", t.tokenLabel, err)
	}
	if want := uint(pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT); info.Flags&want != want {
		return fmt.Errorf("%w: token %q offers CKM_AES_GCM but not for C_Encrypt and C_Decrypt", ErrMechanism, t.tokenLabel)
	}
	return nil
}

// openSession opens a read/write session on the token in slot and makes
// sure it is logged in as the user. loggedIn reports whether it had to
// log in, because the process was not logged in any more. Logins are
// serialised per module, and a Token that failed never logs in again, so
// that a burst of sessions finding themselves logged out spends at most
// one PIN attempt; before logging in again it refuses a PIN that is
// locked or one failure away from locking.
func (t *Token) openSession(slot uint) (s pkcs11.SessionHandle, loggedIn bool, err error) {
	p := t.mod.ctx
	s, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, false, fmt.Errorf("hsm: open a session on token %q: %w", t.tokenLabel, err)
	}
	switch ok, err := t.userSession(s); {
	case err != nil:
		return 0, false, err
	case ok:
		return s, false, nil // the process is already logged in
	}
	t.mod.loginMu.Lock()
	defer t.mod.loginMu.Unlock()
	switch ok, err := t.userSession(s); {
	case err != nil:
		return 0, false, err
	case ok:
		return s, false, nil // another goroutine logged in meanwhile
	}
	t.mu.Lock()
	failed, cause := t.state == StateFailed, t.cause
	t.mu.Unlock()
	if failed {
		_ = p.CloseSession(s)
		return 0, false, cause
	}
	pin := t.pin.Bytes()
	if len(pin) == 0 {
		_ = p.CloseSession(s)
		return 0, false, ErrClosed
	}
	info, err := p.GetTokenInfo(slot)
	if err == nil {
		err = t.checkPINFlags(info)
	}
	if err != nil {
		_ = p.CloseSession(s)
		return 0, false, fmt.Errorf("hsm: check token %q before logging in: %w", t.tokenLabel, err)
	}
	// miekg/pkcs11 takes the PIN as a string. Build it over the locked
	// buffer rather than copying it into the Go heap, where it could not
	// be cleared. (Login still copies it into a C buffer it frees without
	// clearing.)
	err = p.Login(s, pkcs11.CKU_USER, unsafe.String(unsafe.SliceData(pin), len(pin)))
	switch {
	case err == nil:
		return s, true, nil
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)):
		return s, false, nil // logged in by another part of the process
	}
	_ = p.CloseSession(s)
	return 0, false, t.loginError(err)
}

// userSession reports whether session s is logged in as the user. On an
// error, or when the security officer is logged in, it closes s.
func (t *Token) userSession(s pkcs11.SessionHandle) (bool, error) {
	p := t.mod.ctx
	info, err := p.GetSessionInfo(s)
	if err != nil {
		_ = p.CloseSession(s)
		return false, fmt.Errorf("hsm: read session state of token %q: %w", t.tokenLabel, err)
	}
	switch info.State {
	case pkcs11.CKS_RW_USER_FUNCTIONS, pkcs11.CKS_RO_USER_FUNCTIONS:
		return true, nil
	case pkcs11.CKS_RW_SO_FUNCTIONS:
		_ = p.CloseSession(s)
		return false, fmt.Errorf("hsm: the security officer is logged in to token %q in this process; log out first", t.tokenLabel)
	}
	return false, nil
}

// loginError translates a C_Login failure. It never includes the PIN.
func (t *Token) loginError(err error) error {
	switch {
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)), errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)):
		hint := "check the PIN source; every failure counts towards locking the token"
		if info, ierr := t.mod.ctx.GetTokenInfo(t.currentSlot()); ierr == nil {
			switch {
			case info.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0:
				return t.pinLockedError()
			case info.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0:
				hint = "one more failure locks the PIN: check the PIN source before trying again"
			}
		}
		return fmt.Errorf("%w: token %q rejected the PIN (%w); %s", ErrBadPIN, t.tokenLabel, err, hint)
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LOCKED)):
		return t.pinLockedError()
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_EXPIRED)):
		return fmt.Errorf("hsm: the PIN of token %q has expired; set a new one with the token vendor's tool: %w", t.tokenLabel, err)
	default:
		return fmt.Errorf("hsm: log in to token %q: %w", t.tokenLabel, err)
	}
}

// pinLockedError describes a locked user PIN.
func (t *Token) pinLockedError() error {
	return fmt.Errorf("%w: token %q locked its user PIN after too many wrong attempts; its security officer must "+
		"unlock it (or reset the PIN) with the token vendor's tool", ErrPINLocked, t.tokenLabel)
}

// maxKeys bounds how many matching keys findKey collects.
const maxKeys = 16

// findObjects returns the objects that have the attributes of tmpl and
// the given label and/or id: all of them, or at least limit when there
// are more.
func (t *Token) findObjects(s pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, label string, id []byte, limit int) ([]pkcs11.ObjectHandle, error) {
	p := t.mod.ctx
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	if err := p.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	var found []pkcs11.ObjectHandle
	var err error
	for len(found) < limit {
		var batch []pkcs11.ObjectHandle
		batch, _, err = p.FindObjects(s, limit)
		if err != nil || len(batch) == 0 {
			break
		}
		found = append(found, batch...)
	}
	if ferr := p.FindObjectsFinal(s); err == nil {
		err = ferr
	}
	return found, err
}

// findKey returns the one AES secret key with the given label and/or id.
func (t *Token) findKey(s pkcs11.SessionHandle, label string, id []byte) (pkcs11.ObjectHandle, error) {
	found, err := t.findObjects(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
	}, label, id, maxKeys)
	if err != nil {
		return 0, fmt.Errorf("hsm: search token %q for key %s: %w", t.tokenLabel, keyName(label, id), err)
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: token %q has no AES secret key %s; run `keyward init` to create it",
			ErrKeyNotFound, t.tokenLabel, keyName(label, id))
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, h := range found {
		if v, err := t.attr(s, h, pkcs11.CKA_ID); err == nil {
			ids = append(ids, hex.EncodeToString(v))
		}
	}
	return 0, fmt.Errorf("hsm: %d AES keys on token %q match %s (CKA_ID %s); add id= to the URI to choose one",
		len(found), t.tokenLabel, keyName(label, id), strings.Join(ids, ", "))
}

// keyName describes a key selector for messages.
func keyName(label string, id []byte) string {
	var d []string
	if label != "" {
		d = append(d, fmt.Sprintf("object=%q", label))
	}
	if len(id) > 0 {
		d = append(d, "id="+hex.EncodeToString(id))
	}
	return strings.Join(d, " ")
}

// generateKey creates the key-encryption key inside the token. Every
// attribute keyward relies on is set explicitly: defaults differ between
// modules.
func (t *Token) generateKey(s pkcs11.SessionHandle, u *URI) error {
	id := u.ID()
	if len(id) == 0 {
		id = make([]byte, 16)
		_, _ = rand.Read(id)
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, DataKeySize),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object()),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
	if _, err := t.mod.ctx.GenerateKey(s, mech, tmpl); err != nil {
		return fmt.Errorf("hsm: generate AES-256 key %q on token %q: %w", u.Object(), t.tokenLabel, err)
	}
	return nil
}

// inspectKey reads the key's label and id and refuses a key that could
// leave the token or cannot do AES-256-GCM.
func (t *Token) inspectKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (label string, id []byte, err error) {
	l, err := t.attr(s, h, pkcs11.CKA_LABEL)
	if err != nil {
		return "", nil, fmt.Errorf("hsm: read the label of the key on token %q: %w", t.tokenLabel, err)
	}
	label = string(l)
	id, err = t.attr(s, h, pkcs11.CKA_ID)
	if err != nil {
		return "", nil, fmt.Errorf("hsm: read the id of key %q on token %q: %w", label, t.tokenLabel, err)
	}
	for _, c := range []struct {
		attr uint
		name string
		want bool
		why  string
	}{
		{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true, "its value can be read out"},
		{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false, "it can be exported from the token"},
		{pkcs11.CKA_ENCRYPT, "CKA_ENCRYPT", true, "it cannot encrypt"},
		{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", true, "it cannot decrypt"},
	} {
		v, err := t.attr(s, h, c.attr)
		if err != nil {
			return "", nil, fmt.Errorf("hsm: read %s of key %q on token %q: %w", c.name, label, t.tokenLabel, err)
		}
		if got := len(v) == 1 && v[0] != 0; got != c.want {
			return "", nil, fmt.Errorf("hsm: refusing key %q on token %q: %s is %t, so %s; create a new key with `keyward init` and another label",
				label, t.tokenLabel, c.name, got, c.why)
		}
	}
	v, err := t.attr(s, h, pkcs11.CKA_VALUE_LEN)
	if err != nil {
		return "", nil, fmt.Errorf("hsm: read CKA_VALUE_LEN of key %q on token %q: %w", label, t.tokenLabel, err)
	}
	if n, ok := ulong(v); !ok || n != DataKeySize {
		return "", nil, fmt.Errorf("hsm: refusing key %q on token %q: it is not an AES-256 key; create one with `keyward init`", label, t.tokenLabel)
	}
	return label, id, nil
}

// attr reads one attribute of an object.
func (t *Token) attr(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, typ uint) ([]byte, error) {
	a, err := t.mod.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
	if err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, errors.New("hsm: module returned no attribute value")
	}
	return a[0].Value, nil
}

// ulong decodes a CK_ULONG attribute value.
func ulong(v []byte) (uint64, bool) {
	switch len(v) {
	case 8:
		return binary.NativeEndian.Uint64(v), true
	case 4:
		return uint64(binary.NativeEndian.Uint32(v)), true
	}
	return 0, false
}

// KeyID identifies the key: "pkcs11:" + token serial + "/" + key label +
// "/" + hex(CKA_ID). It is stable for the life of the key and holds no
// secret.
func (t *Token) KeyID() string { return t.keyID }

// Wrap encrypts a 32-byte data key under the token key with AES-256-GCM
// (CKM_AES_GCM through C_Encrypt, a random 96-bit IV drawn in Go, a
// 128-bit tag, additional data "keyward data-key v1"). The result is
// [WrappedSize] bytes: [FormatV1] || IV || ciphertext || tag. Wrap
// unwraps the result before returning it, so a module whose AES-GCM is
// broken fails here rather than when the data key is needed. While the
// token is lost it fails with [ErrUnavailable].
func (t *Token) Wrap(ctx context.Context, dataKey []byte) ([]byte, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("hsm: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	out := make([]byte, WrappedSize)
	err := t.run(ctx, "wrap", func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		if err := t.wrapWith(p, s, key, dataKey, out); err != nil {
			return fmt.Errorf("hsm: wrap data key with %s: %w", t.keyID, err)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	check, err := t.Unwrap(ctx, out)
	switch {
	case errors.Is(err, ErrIntegrity):
		return nil, fmt.Errorf("hsm: token %q produced a wrapped key it cannot unwrap; its AES-GCM is not usable: %w", t.tokenLabel, err)
	case err != nil:
		return nil, err
	}
	same := subtle.ConstantTimeCompare(check, dataKey) == 1
	clear(check)
	if !same {
		return nil, fmt.Errorf("hsm: token %q unwrapped a different key than it wrapped; its AES-GCM is not usable", t.tokenLabel)
	}
	return out, nil
}

// wrapWith encrypts dataKey with key on session s into out
// ([WrappedSize] bytes).
func (t *Token) wrapWith(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, dataKey, out []byte) error {
	out[0] = FormatV1
	iv := out[1 : 1+ivSize]
	_, _ = rand.Read(iv) // never fails (crypto/rand crashes the program instead)
	params := pkcs11.NewGCMParams(iv, aad, tagSize*8)
	defer params.Free()
	if err := p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return err
	}
	ct, err := t.mod.raw.crypt(false, s, dataKey, DataKeySize+tagSize)
	if err != nil {
		return err
	}
	if len(ct) != DataKeySize+tagSize {
		return fmt.Errorf("module returned %d bytes of AES-GCM output, want %d", len(ct), DataKeySize+tagSize)
	}
	// Some modules ignore the IV they are given and write their own
	// into the parameters: store the one actually used.
	used := params.IV()
	if len(used) != ivSize {
		return fmt.Errorf("module used a %d-byte AES-GCM IV, want %d", len(used), ivSize)
	}
	copy(iv, used)
	copy(out[1+ivSize:], ct)
	return nil
}

// Unwrap decrypts a blob made by Wrap and returns the 32-byte data key,
// which the caller should clear after use. A blob of the wrong size or
// format, modified, or made under another key gives an [*IntegrityError]
// (errors.Is(err, [ErrIntegrity])); the size and format are checked before
// the token is asked. While the token is lost it fails with
// [ErrUnavailable]; it never decrypts with a key other than the one the
// Token opened.
func (t *Token) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	switch {
	case len(wrapped) != WrappedSize:
		return nil, &IntegrityError{KeyID: t.keyID, Reason: fmt.Sprintf("wrapped key is %d bytes, want %d", len(wrapped), WrappedSize)}
	case wrapped[0] != FormatV1:
		return nil, &IntegrityError{KeyID: t.keyID, Reason: fmt.Sprintf("unknown wrapped key format 0x%02x", wrapped[0])}
	}
	var dataKey []byte
	err := t.run(ctx, "unwrap", func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		pt, err := t.unwrapWith(p, s, key, wrapped)
		if err != nil {
			return err
		}
		dataKey = pt
		return nil
	}, func() { clear(dataKey) })
	if err != nil {
		return nil, err
	}
	return dataKey, nil
}

// unwrapWith decrypts wrapped ([WrappedSize] bytes, format checked) with
// key on session s.
func (t *Token) unwrapWith(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, wrapped []byte) ([]byte, error) {
	fail := func(err error) error { return fmt.Errorf("hsm: unwrap data key with %s: %w", t.keyID, err) }
	params := pkcs11.NewGCMParams(wrapped[1:1+ivSize], aad, tagSize*8)
	defer params.Free()
	if err := p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, fail(err)
	}
	pt, err := t.mod.raw.crypt(true, s, wrapped[1+ivSize:], DataKeySize+tagSize)
	if err != nil {
		if authFailure(err) {
			return nil, &IntegrityError{KeyID: t.keyID, Reason: "authentication failed", Err: err}
		}
		return nil, fail(err)
	}
	if len(pt) != DataKeySize {
		clear(pt)
		return nil, fail(fmt.Errorf("module returned a %d-byte data key, want %d", len(pt), DataKeySize))
	}
	return pt, nil
}

// authFailure reports whether C_Decrypt failed because the AES-GCM tag did
// not verify. Modules disagree on the code: SoftHSM answers
// CKR_GENERAL_ERROR.
func authFailure(err error) bool {
	for _, rv := range []uint{pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_WRAPPED_KEY_INVALID,
		pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE} {
		if errors.Is(err, pkcs11.Error(rv)) {
			return true
		}
	}
	return false
}

// makeCanary wraps a random data key with the key just opened, checks
// that it unwraps, and keeps the blob and the data key's SHA-256: after
// the token comes back, unwrapping the blob again proves that the key
// found under the same label and id is the same key. A different key
// fails the AES-GCM tag.
func (t *Token) makeCanary(s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
	p := t.mod.ctx
	dk := make([]byte, DataKeySize)
	defer clear(dk)
	_, _ = rand.Read(dk)
	blob := make([]byte, WrappedSize)
	if err := t.wrapWith(p, s, key, dk, blob); err != nil {
		return fmt.Errorf("hsm: test AES-GCM encryption with key %q on token %q: %w", t.keyLabel, t.tokenLabel, err)
	}
	back, err := t.unwrapWith(p, s, key, blob)
	if err != nil {
		return fmt.Errorf("hsm: token %q cannot decrypt what it encrypted with key %q; its AES-GCM is not usable: %w",
			t.tokenLabel, t.keyLabel, err)
	}
	same := subtle.ConstantTimeCompare(back, dk) == 1
	clear(back)
	if !same {
		return fmt.Errorf("hsm: token %q decrypted a different key than it encrypted; its AES-GCM is not usable", t.tokenLabel)
	}
	t.canary, t.canarySum = blob, sha256.Sum256(dk)
	return nil
}

// checkCanary unwraps the canary with key and reports [ErrKeyChanged] if
// key is not the key the Token opened.
func (t *Token) checkCanary(s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
	dk, err := t.unwrapWith(t.mod.ctx, s, key, t.canary)
	var ie *IntegrityError
	switch {
	case errors.As(err, &ie):
		// SoftHSM reports a failed tag and a broken device alike.
		if err := t.tokenAnswers(); err != nil {
			return err
		}
		return t.keyChanged("it cannot decrypt what the original key encrypted")
	case err != nil:
		return err
	}
	sum := sha256.Sum256(dk)
	clear(dk)
	if subtle.ConstantTimeCompare(sum[:], t.canarySum[:]) != 1 {
		return t.keyChanged("it decrypts what the original key encrypted to something else")
	}
	return nil
}

// keyChanged reports that the key found is not the key the Token opened.
func (t *Token) keyChanged(why string) error {
	return fmt.Errorf("%w: token %q has a key %s, but %s: it is another key; keyward refuses it "+
		"(put the original token back, or restore the store's recovery kit onto a new key)",
		ErrKeyChanged, t.tokenLabel, keyName(t.keyLabel, t.keyCKAID), why)
}

// Healthy reports whether the token answers with the Token's key. It
// fails with an error wrapping [ErrUnavailable] when the token is lost,
// and notices a removed, replaced or broken token in the call itself: it
// decrypts, on a pooled session, the canary the Token wrapped at Open
// (about 60 µs on SoftHSM). Measured on SoftHSM with its token directory
// moved away, that is the cheapest check that fails: C_GetSlotList,
// C_GetSlotInfo and C_GetSessionInfo still succeed, C_FindObjects finds
// nothing without an error, and C_GetTokenInfo (80 µs) and reading a key
// attribute (70 µs) fail but cost more. It also covers what operations
// need (a live session, the login, the key handle, the mechanism) and
// proves the key is still the same key. Decrypting draws no IV, so health
// checks do not count towards the key's AES-GCM limit. A failed check
// then asks C_GetTokenInfo whether the token itself is gone.
//
// When the token is lost, Healthy first runs a recovery attempt if the
// backoff allows (or waits for the one running), so that a watchdog
// calling it brings the token back without anyone reopening it.
//
// Healthy returns by ctx's end even if the module hangs: the check runs
// in a goroutine, and at most one check per Token is in flight; a later
// call waits for it rather than starting another. A check that has not
// answered for a second when a caller gives up marks the token lost.
func (t *Token) Healthy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.usable(ctx, true); err != nil {
		return err
	}
	pr, err := t.startProbe()
	if err != nil {
		return err
	}
	select {
	case <-pr.done:
		return pr.err
	case <-ctx.Done():
	}
	if waited := time.Since(pr.started); waited >= slowProbe {
		return t.lose(fmt.Errorf("hsm: the module has not answered a health check for %v", waited.Round(time.Millisecond)))
	}
	return fmt.Errorf("hsm: token %q did not answer the health check in time: %w", t.tokenLabel, ctx.Err())
}

// Status reports whether the token is healthy, lost or failed, since
// when, and why. It does not call the module.
func (t *Token) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Status{State: StateClosed, Since: t.since, LastSuccess: t.lastOK}
	}
	return Status{State: t.state, Since: t.since, LastSuccess: t.lastOK, Err: t.cause}
}

// Destroy deletes the key-encryption key from the token, then closes the
// Token. Whatever it wrapped can no longer be unwrapped: keyward rewrap
// calls it only after every data key was re-wrapped under a new key.
func (t *Token) Destroy(ctx context.Context) error {
	err := t.run(ctx, "destroy", func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		return p.DestroyObject(s, key)
	}, nil)
	if err != nil {
		t.Close()
		return fmt.Errorf("hsm: failed to destroy the key %s: %w", t.keyID, err)
	}
	return t.Close()
}

// Close waits for the module calls this Token has in flight (including
// calls its callers gave up on) and for a running re-initialisation, then
// closes the sessions, clears the PIN and, when this was the last Token on
// the module, finalises the module. It works on a lost Token (whose
// sessions are left to C_Finalize); a module call that never returns
// keeps it waiting. Closing twice is harmless.
func (t *Token) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.closing)
	t.mu.Unlock()
	t.work.Wait()

	m := t.mod
	_ = m.enter(context.Background()) // waits for a running re-initialisation
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	lost := t.state == StateLost
	t.mu.Unlock()
	if !lost { // a lost token's sessions are left to C_Finalize
		for _, s := range idle {
			_ = m.ctx.CloseSession(s)
		}
	}
	m.removeUser(t)
	m.loginMu.Lock()
	t.pin.Wipe()
	m.loginMu.Unlock()
	m.leave()
	return m.release()
}
