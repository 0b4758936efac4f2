//go:build cgo && linux

package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/locked"
)

// PKCS #11 v3.0 names that miekg/pkcs11 v1.1.2 lacks.
const (
	ckkECEdwards = 0x40
	ckmEdDSA     = 0x1057
)

// The CKA_EC_PARAMS of the curves a Signer supports: the DER of their
// object identifiers (P-256; Ed25519 as RFC 8410 names it, or as the
// printable string "edwards25519" of PKCS #11 v3.0).
var (
	paramsP256     = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	paramsEd25519  = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
	paramsEdwards  = append([]byte{0x13, 0x0c}, "edwards25519"...)
	errSignerClose = errors.New("hsm: the signer is closed")
)

// A Signer is a private key held in a PKCS #11 token (a smart card, a
// YubiKey, an HSM) used as a crypto.Signer: an ECDSA P-256 key, signing a
// SHA-256 digest with CKM_ECDSA, or an Ed25519 key, signing the message
// with CKM_EDDSA. keyward's provisioners sign bundles with one
// (docs/fleet.md). The key is named like the root key, by a PKCS #11 URI
// whose object and/or id select the private key; its public key is read
// from the public key object with the same label and id, which tokens
// keep beside it.
//
// A Signer is safe for concurrent use; it signs one message at a time on
// its one session.
type Signer struct {
	t      *Token // the module, the token's selection and the login
	mu     sync.Mutex
	s      pkcs11.SessionHandle
	key    pkcs11.ObjectHandle
	pub    crypto.PublicKey
	closed bool
}

// OpenSigner opens the private key cfg.URI names and logs in with cfg.PIN
// (cfg.MaxSessions is ignored). It fails with an error wrapping
// [ErrModuleNotFound], [ErrTokenNotFound], [ErrBadPIN], [ErrPINLocked] or
// [ErrKeyNotFound], and for a key that is neither ECDSA P-256 nor Ed25519.
func OpenSigner(cfg Config) (*Signer, error) {
	u := cfg.URI
	if u == nil || u.Object() == "" && len(u.ID()) == 0 {
		return nil, errors.New("hsm: the PKCS #11 URI must name the signing key with object=LABEL and/or id=")
	}
	if t := u.Type(); t != "" && t != "private" {
		return nil, fmt.Errorf("hsm: the PKCS #11 URI says type=%s, but a signing key is a private key (type=private)", t)
	}
	if len(cfg.PIN) == 0 || len(cfg.PIN) > MaxPINLen {
		return nil, fmt.Errorf("hsm: the PIN must be 1 to %d bytes", MaxPINLen)
	}
	path, err := u.ModulePath()
	if err != nil {
		return nil, err
	}
	mod, err := acquireModule(path)
	if err != nil {
		return nil, err
	}
	sg := &Signer{t: &Token{mod: mod, uri: u, pin: locked.New(cfg.PIN), closing: make(chan struct{}), lost: make(chan struct{})}}
	_ = mod.enter(context.Background())
	err = sg.setup(u)
	mod.leave()
	if err != nil {
		sg.Close()
		return nil, err
	}
	return sg, nil
}

// setup selects the token, logs in, and finds the key pair.
func (sg *Signer) setup(u *URI) error {
	t := sg.t
	f, err := t.selectToken(u)
	if err != nil {
		return err
	}
	t.slot, t.tokenLabel, t.serial = f.slot, f.info.Label, f.info.SerialNumber
	if err := t.checkPINFlags(f.info); err != nil {
		return err
	}
	if sg.s, _, err = t.openSession(t.slot); err != nil {
		return err
	}
	name := keyName(u.Object(), u.ID())
	if sg.key, err = sg.find(pkcs11.CKO_PRIVATE_KEY, u.Object(), u.ID()); err != nil {
		return err
	}
	pubObj, err := sg.find(pkcs11.CKO_PUBLIC_KEY, u.Object(), u.ID())
	if err != nil {
		return fmt.Errorf("%w; keyward reads the public key from the public key object beside the private one", err)
	}
	typ, err := t.attr(sg.s, sg.key, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		return fmt.Errorf("hsm: read the type of key %s on token %q: %w", name, t.tokenLabel, err)
	}
	params, err := t.attr(sg.s, pubObj, pkcs11.CKA_EC_PARAMS)
	if err != nil {
		return fmt.Errorf("hsm: key %s on token %q is not an elliptic-curve key (ECDSA P-256 or Ed25519): %w", name, t.tokenLabel, err)
	}
	point, err := t.attr(sg.s, pubObj, pkcs11.CKA_EC_POINT)
	if err != nil {
		return fmt.Errorf("hsm: read the public key of %s on token %q: %w", name, t.tokenLabel, err)
	}
	// CKA_EC_POINT is a DER OCTET STRING; some modules give the bare point.
	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) != 0 {
		raw = point
	}
	kt, _ := ulong(typ)
	switch {
	case kt == pkcs11.CKK_EC && bytes.Equal(params, paramsP256):
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return fmt.Errorf("hsm: the public key of %s on token %q is not a P-256 point: %w", name, t.tokenLabel, err)
		}
		sg.pub = pub
	case kt == ckkECEdwards && (bytes.Equal(params, paramsEd25519) || bytes.Equal(params, paramsEdwards)):
		if len(raw) != ed25519.PublicKeySize {
			return fmt.Errorf("hsm: the public key of %s on token %q is not an Ed25519 key", name, t.tokenLabel)
		}
		sg.pub = ed25519.PublicKey(raw)
	default:
		return fmt.Errorf("hsm: key %s on token %q is neither ECDSA P-256 nor Ed25519; make one with the token's tool "+
			"(pkcs11-tool --keypairgen --key-type EC:prime256v1)", name, t.tokenLabel)
	}
	return nil
}

// find returns the one object of class with the label and id given.
func (sg *Signer) find(class uint, label string, id []byte) (pkcs11.ObjectHandle, error) {
	t := sg.t
	what := map[uint]string{pkcs11.CKO_PRIVATE_KEY: "private key", pkcs11.CKO_PUBLIC_KEY: "public key"}[class]
	found, err := t.findObjects(sg.s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}, label, id, 2)
	switch {
	case err != nil:
		return 0, fmt.Errorf("hsm: search token %q for %s %s: %w", t.tokenLabel, what, keyName(label, id), err)
	case len(found) == 0:
		return 0, fmt.Errorf("%w: token %q has no %s %s", ErrKeyNotFound, t.tokenLabel, what, keyName(label, id))
	case len(found) > 1:
		return 0, fmt.Errorf("hsm: several %ss on token %q match %s; add id= to the URI to choose one", what, t.tokenLabel, keyName(label, id))
	}
	return found[0], nil
}

// Public returns the public key: an *ecdsa.PublicKey or an
// ed25519.PublicKey.
func (sg *Signer) Public() crypto.PublicKey { return sg.pub }

// Sign signs with the key in the token, following crypto.Signer: for
// ECDSA, digest is a SHA-256 digest (opts.HashFunc() is crypto.SHA256)
// and the signature is ASN.1 DER; for Ed25519, digest is the message
// itself (opts.HashFunc() is 0) and the signature is 64 bytes. rand is
// not used: the token draws its own randomness.
func (sg *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var mech uint
	switch sg.pub.(type) {
	case *ecdsa.PublicKey:
		if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
			return nil, errors.New("hsm: an ECDSA P-256 signer signs SHA-256 digests")
		}
		mech = pkcs11.CKM_ECDSA
	default:
		if opts.HashFunc() != 0 {
			return nil, errors.New("hsm: an Ed25519 signer signs messages, not digests")
		}
		mech = ckmEdDSA
	}
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if sg.closed {
		return nil, errSignerClose
	}
	m := sg.t.mod
	if err := m.enter(context.Background()); err != nil {
		return nil, err
	}
	defer m.leave()
	p := m.ctx
	if err := p.SignInit(sg.s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, sg.key); err != nil {
		return nil, fmt.Errorf("hsm: sign with the key on token %q: %w", sg.t.tokenLabel, err)
	}
	sig, err := p.Sign(sg.s, digest)
	if err != nil {
		return nil, fmt.Errorf("hsm: sign with the key on token %q: %w", sg.t.tokenLabel, err)
	}
	if mech == ckmEdDSA {
		return sig, nil
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("hsm: token %q returned a %d-byte ECDSA signature, want 64", sg.t.tokenLabel, len(sig))
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
}

// Close logs out its session, clears the PIN and releases the module.
// Closing twice is harmless.
func (sg *Signer) Close() error {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if sg.closed {
		return nil
	}
	sg.closed = true
	m := sg.t.mod
	_ = m.enter(context.Background())
	if sg.s != 0 {
		_ = m.ctx.CloseSession(sg.s)
	}
	m.loginMu.Lock()
	sg.t.pin.Wipe()
	m.loginMu.Unlock()
	m.leave()
	return m.release()
}
