//go:build cgo && linux

package hsm

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
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
// operation is retried once on the fresh session. Wrap, Unwrap and Healthy
// must not be called after Close; they then return [ErrClosed].
type Token struct {
	mod        *module
	slot       uint
	tokenLabel string
	serial     string
	keyLabel   string
	keyCKAID   []byte
	keyID      string
	pin        *locked.Buffer

	sem chan struct{} // one slot per session in use

	mu     sync.Mutex
	key    pkcs11.ObjectHandle
	idle   []pkcs11.SessionHandle
	closed bool
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
	t := &Token{mod: mod, pin: locked.New(cfg.PIN), sem: make(chan struct{}, n)}
	created, err := t.setup(cfg.URI, create)
	if err != nil {
		for _, s := range t.idle {
			_ = mod.ctx.CloseSession(s)
		}
		t.pin.Wipe()
		_ = mod.release()
		return nil, false, err
	}
	return t, created, nil
}

// setup selects the token, logs in, and finds (or creates) the key.
func (t *Token) setup(u *URI, create bool) (created bool, err error) {
	t.mod.openMu.Lock()
	defer t.mod.openMu.Unlock()
	info, err := t.selectToken(u)
	if err != nil {
		return false, err
	}
	if err := t.checkMechanisms(create); err != nil {
		return false, err
	}
	switch {
	case info.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0:
		return false, t.pinLockedError()
	case info.Flags&pkcs11.CKF_USER_PIN_INITIALIZED == 0:
		return false, fmt.Errorf("hsm: token %q has no user PIN set; initialise it with the token vendor's tool", t.tokenLabel)
	case info.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0:
		return false, fmt.Errorf("%w: token %q allows one more PIN attempt before it locks, and keyward will not spend it "+
			"unattended; check the PIN source, then log in once by hand (e.g. pkcs11-tool --login --test) to reset the counter",
			ErrPINLocked, t.tokenLabel)
	}
	if !t.mod.samePIN(t.slot, t.pin.Bytes()) {
		return false, fmt.Errorf("%w: a key on token %q is already open in this process with a different PIN",
			ErrBadPIN, t.tokenLabel)
	}
	s, _, err := t.openSession()
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
	if err := t.inspectKey(s, key); err != nil {
		return false, err
	}
	t.key = key
	t.keyID = "pkcs11:" + t.serial + "/" + t.keyLabel + "/" + hex.EncodeToString(t.keyCKAID)
	t.mod.addUser(t.slot, t)
	return created, nil
}

// selectToken finds the one initialised token that matches u.
func (t *Token) selectToken(u *URI) (pkcs11.TokenInfo, error) {
	p := t.mod.ctx
	slots, err := p.GetSlotList(true)
	if err != nil {
		return pkcs11.TokenInfo{}, fmt.Errorf("hsm: list the slots of %s: %w", t.mod.path, err)
	}
	type found struct {
		slot uint
		info pkcs11.TokenInfo
	}
	var present, matches []found
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
	describe := func(list []found) string {
		var d []string
		for _, f := range list {
			d = append(d, fmt.Sprintf("%q (serial %q, slot %d)", f.info.Label, f.info.SerialNumber, f.slot))
		}
		return strings.Join(d, ", ")
	}
	switch {
	case len(matches) == 1:
		t.slot = matches[0].slot
		t.tokenLabel = matches[0].info.Label
		t.serial = matches[0].info.SerialNumber
		return matches[0].info, nil
	case len(present) == 0:
		return pkcs11.TokenInfo{}, fmt.Errorf("%w: %s offers no initialised token; check that the device is connected "+
			"(for SoftHSM, that SOFTHSM2_CONF names the right token directory)", ErrTokenNotFound, t.mod.path)
	case len(matches) == 0:
		return pkcs11.TokenInfo{}, fmt.Errorf("%w: no token matches %s; tokens present: %s; fix the token attributes of the URI",
			ErrTokenNotFound, selector(u), describe(present))
	default:
		return pkcs11.TokenInfo{}, fmt.Errorf("hsm: %d tokens match %s: %s; add serial= to the URI to choose one",
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

// openSession opens a read/write session on the token and makes sure it
// is logged in as the user. loggedIn reports whether it had to log in,
// because the process was not logged in any more.
func (t *Token) openSession() (s pkcs11.SessionHandle, loggedIn bool, err error) {
	p := t.mod.ctx
	s, err = p.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, false, fmt.Errorf("hsm: open a session on token %q: %w", t.tokenLabel, err)
	}
	info, err := p.GetSessionInfo(s)
	if err != nil {
		_ = p.CloseSession(s)
		return 0, false, fmt.Errorf("hsm: read session state of token %q: %w", t.tokenLabel, err)
	}
	switch info.State {
	case pkcs11.CKS_RW_USER_FUNCTIONS, pkcs11.CKS_RO_USER_FUNCTIONS:
		return s, false, nil // the process is already logged in
	case pkcs11.CKS_RW_SO_FUNCTIONS:
		_ = p.CloseSession(s)
		return 0, false, fmt.Errorf("hsm: the security officer is logged in to token %q in this process; log out first", t.tokenLabel)
	}
	pin := t.pin.Bytes()
	// miekg/pkcs11 takes the PIN as a string. Build it over the locked
	// buffer rather than copying it into the Go heap, where it could not
	// be cleared. (Login still copies it into a C buffer it frees without
	// clearing.)
	err = p.Login(s, pkcs11.CKU_USER, unsafe.String(unsafe.SliceData(pin), len(pin)))
	switch {
	case err == nil:
		return s, true, nil
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)):
		return s, false, nil // another goroutine logged in meanwhile
	}
	_ = p.CloseSession(s)
	return 0, false, t.loginError(err)
}

// loginError translates a C_Login failure. It never includes the PIN.
func (t *Token) loginError(err error) error {
	switch {
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)), errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)):
		hint := "check the PIN source; every failure counts towards locking the token"
		if info, ierr := t.mod.ctx.GetTokenInfo(t.slot); ierr == nil {
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

// findKey returns the one AES secret key with the given label and/or id.
func (t *Token) findKey(s pkcs11.SessionHandle, label string, id []byte) (pkcs11.ObjectHandle, error) {
	p := t.mod.ctx
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
	}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	if err := p.FindObjectsInit(s, tmpl); err != nil {
		return 0, fmt.Errorf("hsm: search token %q for key %s: %w", t.tokenLabel, keyName(label, id), err)
	}
	var found []pkcs11.ObjectHandle
	var err error
	for len(found) < maxKeys {
		var batch []pkcs11.ObjectHandle
		batch, _, err = p.FindObjects(s, maxKeys)
		if err != nil || len(batch) == 0 {
			break
		}
		found = append(found, batch...)
	}
	if ferr := p.FindObjectsFinal(s); err == nil {
		err = ferr
	}
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
func (t *Token) inspectKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
	label, err := t.attr(s, h, pkcs11.CKA_LABEL)
	if err != nil {
		return fmt.Errorf("hsm: read the label of the key on token %q: %w", t.tokenLabel, err)
	}
	id, err := t.attr(s, h, pkcs11.CKA_ID)
	if err != nil {
		return fmt.Errorf("hsm: read the id of key %q on token %q: %w", label, t.tokenLabel, err)
	}
	t.keyLabel, t.keyCKAID = string(label), id
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
			return fmt.Errorf("hsm: read %s of key %q on token %q: %w", c.name, t.keyLabel, t.tokenLabel, err)
		}
		if got := len(v) == 1 && v[0] != 0; got != c.want {
			return fmt.Errorf("hsm: refusing key %q on token %q: %s is %t, so %s; create a new key with `keyward init` and another label",
				t.keyLabel, t.tokenLabel, c.name, got, c.why)
		}
	}
	v, err := t.attr(s, h, pkcs11.CKA_VALUE_LEN)
	if err != nil {
		return fmt.Errorf("hsm: read CKA_VALUE_LEN of key %q on token %q: %w", t.keyLabel, t.tokenLabel, err)
	}
	if n, ok := ulong(v); !ok || n != DataKeySize {
		return fmt.Errorf("hsm: refusing key %q on token %q: it is not an AES-256 key; create one with `keyward init`", t.keyLabel, t.tokenLabel)
	}
	return nil
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
// broken fails here rather than when the data key is needed.
func (t *Token) Wrap(ctx context.Context, dataKey []byte) ([]byte, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("hsm: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	out := make([]byte, WrappedSize)
	out[0] = FormatV1
	err := t.run(ctx, func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		fail := func(err error) error { return fmt.Errorf("hsm: wrap data key with %s: %w", t.keyID, err) }
		iv := out[1 : 1+ivSize]
		_, _ = rand.Read(iv) // never fails (crypto/rand crashes the program instead)
		params := pkcs11.NewGCMParams(iv, aad, tagSize*8)
		defer params.Free()
		if err := p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
			return fail(err)
		}
		ct, err := t.mod.raw.crypt(false, s, dataKey, DataKeySize+tagSize)
		if err != nil {
			return fail(err)
		}
		if len(ct) != DataKeySize+tagSize {
			return fail(fmt.Errorf("module returned %d bytes of AES-GCM output, want %d", len(ct), DataKeySize+tagSize))
		}
		// Some modules ignore the IV they are given and write their own
		// into the parameters: store the one actually used.
		used := params.IV()
		if len(used) != ivSize {
			return fail(fmt.Errorf("module used a %d-byte AES-GCM IV, want %d", len(used), ivSize))
		}
		copy(iv, used)
		copy(out[1+ivSize:], ct)
		return nil
	})
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

// Unwrap decrypts a blob made by Wrap and returns the 32-byte data key,
// which the caller should clear after use. A blob of the wrong size or
// format, modified, or made under another key gives an [*IntegrityError]
// (errors.Is(err, [ErrIntegrity])); the size and format are checked before
// the token is asked.
func (t *Token) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	switch {
	case len(wrapped) != WrappedSize:
		return nil, &IntegrityError{KeyID: t.keyID, Reason: fmt.Sprintf("wrapped key is %d bytes, want %d", len(wrapped), WrappedSize)}
	case wrapped[0] != FormatV1:
		return nil, &IntegrityError{KeyID: t.keyID, Reason: fmt.Sprintf("unknown wrapped key format 0x%02x", wrapped[0])}
	}
	var dataKey []byte
	err := t.run(ctx, func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		fail := func(err error) error { return fmt.Errorf("hsm: unwrap data key with %s: %w", t.keyID, err) }
		params := pkcs11.NewGCMParams(wrapped[1:1+ivSize], aad, tagSize*8)
		defer params.Free()
		if err := p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
			return fail(err)
		}
		pt, err := t.mod.raw.crypt(true, s, wrapped[1+ivSize:], DataKeySize+tagSize)
		if err != nil {
			if authFailure(err) {
				return &IntegrityError{KeyID: t.keyID, Reason: "authentication failed", Err: err}
			}
			return fail(err)
		}
		if len(pt) != DataKeySize {
			clear(pt)
			return fail(fmt.Errorf("module returned a %d-byte data key, want %d", len(pt), DataKeySize))
		}
		dataKey = pt
		return nil
	})
	if err != nil {
		return nil, err
	}
	return dataKey, nil
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

// Healthy checks that the token answers, the session is logged in and the
// key is present, without a cryptographic operation. It is cheap enough
// for a watchdog; like Wrap it replaces a dead session first.
func (t *Token) Healthy(ctx context.Context) error {
	return t.run(ctx, func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		info, err := p.GetSessionInfo(s)
		if err != nil {
			return fmt.Errorf("hsm: token %q is not usable: %w", t.tokenLabel, err)
		}
		if info.State != pkcs11.CKS_RW_USER_FUNCTIONS && info.State != pkcs11.CKS_RO_USER_FUNCTIONS {
			return fmt.Errorf("hsm: token %q is not usable: %w", t.tokenLabel, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
		}
		if _, err := t.attr(s, key, pkcs11.CKA_KEY_TYPE); err != nil {
			return fmt.Errorf("hsm: token %q is not usable: %w", t.tokenLabel, err)
		}
		return nil
	})
}

// Destroy deletes the key-encryption key from the token, then closes the
// Token. Whatever it wrapped can no longer be unwrapped: keyward rewrap
// calls it only after every data key was re-wrapped under a new key.
func (t *Token) Destroy(ctx context.Context) error {
	err := t.run(ctx, func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		return p.DestroyObject(s, key)
	})
	if err != nil {
		t.Close()
		return fmt.Errorf("hsm: failed to destroy the key %s: %w", t.keyID, err)
	}
	return t.Close()
}

// Close waits for running operations, closes the sessions, clears the
// PIN and, when this was the last Token on the module, finalises the
// module. Closing twice is harmless.
func (t *Token) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	for range cap(t.sem) {
		t.sem <- struct{}{} // wait for every operation to give its session back
	}
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, s := range idle {
		_ = t.mod.ctx.CloseSession(s)
	}
	t.mod.removeUser(t.slot, t)
	t.pin.Wipe()
	err := t.mod.release()
	for range cap(t.sem) {
		<-t.sem // later callers get a slot, see closed and return ErrClosed
	}
	return err
}
