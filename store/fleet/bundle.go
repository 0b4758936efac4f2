package fleet

import (
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/binread"
	"github.com/keyward/keyward/internal/secretname"
)

// Bundle format v1 (docs/fleet.md). All integers are big-endian.
//
//	magic        8 bytes  "KWBUNDL" 0x01 (the last byte is the format version)
//	host         16 bytes: the host id the bundle is for
//	recipient    8 bytes: the fingerprint (KeyID) of the import key it is sealed to
//	provisioner  u8 kind (1 Ed25519, 2 ECDSA P-256), u8 length, the public key (32 or 65 bytes)
//	counter      u64 (> 0): orders the bundles of one secret; the sealing time in nanoseconds
//	name         u8 length, bytes (a valid secret name)
//	expires      i64 Unix seconds, 0 = never
//	kind         u8: 0 = a secret, 1 = an exchange API credential, followed by
//	             exchange u8 length (1..32), API key id u16 length (1..1024), key type u8 length (1..32)
//	enc          1120 bytes: the HPKE encapsulated key
//	ciphertext   u32 length (17..MaxValueSize+16), bytes: the value under HPKE, AES-256-GCM
//	signature    u8 length (64; 0 = unsigned), bytes
//
// The header (magic to kind) is the HPKE additional data; the signature
// covers everything before its length byte.
const (
	// MaxValueSize is the largest value a bundle carries: store.MaxSecretSize.
	MaxValueSize = 64 << 10
	// MaxBundleSize bounds a whole bundle.
	MaxBundleSize = 8 + HostIDSize + keyIDSize + 2 + maxPublicKey + 8 + 1 + secretname.MaxLen + 8 +
		(1 + 1 + maxExchange + 2 + maxAPIKeyID + 1 + maxKeyType) + encSize + 4 + MaxValueSize + tagSize + 1 + sigSize

	maxExchange = 32
	maxAPIKeyID = 1024
	maxKeyType  = 32
	tagSize     = 16
	bundleInfo  = "keyward bundle v1"
	sigContext  = "keyward bundle signature v1\x00"
)

var bundleMagic = [8]byte{'K', 'W', 'B', 'U', 'N', 'D', 'L', 1}

// Errors of [ImportKey.Open] and [Bundle.Verify]; each error they return
// wraps one.
var (
	// ErrOtherHost means the bundle is addressed to another host.
	ErrOtherHost = errors.New("fleet: bundle for another host")
	// ErrOtherKey means the bundle is sealed to another import key of this
	// host: one replaced by keyward enroll --rotate, or by a restore.
	ErrOtherKey = errors.New("fleet: bundle sealed to another import key")
	// ErrUntrusted means the provisioner that signed the bundle is not
	// one the host lists.
	ErrUntrusted = errors.New("fleet: bundle from a provisioner this host does not list")
	// ErrUnsigned means the bundle carries no signature.
	ErrUnsigned = errors.New("fleet: bundle is not signed")
	// ErrSignature means the signature does not verify: the bundle was
	// modified after it was signed.
	ErrSignature = errors.New("fleet: bundle signature does not verify")
	// ErrDecrypt means the value does not decrypt although the signature
	// verifies: the provisioner sealed it wrongly.
	ErrDecrypt = errors.New("fleet: bundle does not decrypt")
)

// A Credential is what is not secret of an exchange API credential
// (store.CredentialInfo).
type Credential struct {
	Exchange string
	KeyID    string // the API key id
	KeyType  string
}

// Contents is what a provisioner says about the value it seals.
type Contents struct {
	Name string
	// Counter orders the bundles of one secret; zero means the sealing
	// time in nanoseconds since 1970.
	Counter uint64
	// Expires, when not zero, is when the version stops being served.
	Expires time.Time
	// Credential, when not nil, marks the value as an exchange API
	// credential.
	Credential *Credential
}

// A Bundle is one value sealed by a provisioner for one host.
type Bundle struct {
	Contents
	Host        [HostIDSize]byte
	Recipient   KeyID // the import key it is sealed to
	Provisioner *ProvisionerKey
	enc         []byte
	ciphertext  []byte
	sig         []byte
}

// A ParseError describes a malformed bundle. [ParseBundle] returns it for
// any input that is not a well-formed v1 bundle, a truncated one included.
type ParseError struct{ err error }

// Error describes what is malformed.
func (e *ParseError) Error() string { return "malformed bundle: " + e.err.Error() }

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.err }

// Seal encrypts value to the recipient, signs the bundle with p and
// returns it. value is at most MaxValueSize bytes; c.Name must be a valid
// secret name.
func Seal(to *Recipient, p *Provisioner, c Contents, value []byte) (*Bundle, error) {
	if len(value) == 0 || len(value) > MaxValueSize {
		return nil, fmt.Errorf("fleet: a value is 1 to %d bytes, not %d", MaxValueSize, len(value))
	}
	if err := to.validate(); err != nil {
		return nil, fmt.Errorf("fleet: recipient %s: %w", to.Hostname, err)
	}
	if c.Counter == 0 {
		c.Counter = uint64(time.Now().UnixNano())
	}
	if !c.Expires.IsZero() {
		c.Expires = time.Unix(c.Expires.Unix(), 0).UTC()
	}
	b := &Bundle{Contents: c, Host: to.Host, Recipient: to.ID(), Provisioner: p.key}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	pk, err := kem.NewPublicKey(to.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("fleet: recipient %s: %w", to.Hostname, err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, []byte(bundleInfo))
	if err != nil {
		return nil, fmt.Errorf("fleet: sealing to %s: %w", to.Hostname, err)
	}
	header := b.appendHeader(nil)
	if b.ciphertext, err = sender.Seal(header, value); err != nil {
		return nil, fmt.Errorf("fleet: sealing to %s: %w", to.Hostname, err)
	}
	b.enc = enc
	if b.sig, err = p.sign(b.signed(header)); err != nil {
		return nil, err
	}
	return b, nil
}

// signed returns the message the signature covers, given the header.
func (b *Bundle) signed(header []byte) []byte {
	m := make([]byte, 0, len(sigContext)+len(header)+encSize+4+len(b.ciphertext))
	m = append(m, sigContext...)
	m = append(m, header...)
	m = append(m, b.enc...)
	m = binary.BigEndian.AppendUint32(m, uint32(len(b.ciphertext)))
	return append(m, b.ciphertext...)
}

// Verify checks that the bundle was signed by one of the trusted
// provisioners and not modified since. It returns an error wrapping
// [ErrUntrusted], [ErrUnsigned] or [ErrSignature].
func (b *Bundle) Verify(trusted []*ProvisionerKey) error {
	listed := false
	for _, k := range trusted {
		listed = listed || k.Equal(b.Provisioner)
	}
	switch {
	case !listed:
		return fmt.Errorf("%w: %s (key %s); add it to fleet.provisioners if it is yours", ErrUntrusted, b.Provisioner.ID(), b.Provisioner)
	case len(b.sig) == 0:
		return fmt.Errorf("%w: it claims provisioner %s and carries no signature", ErrUnsigned, b.Provisioner.ID())
	case !b.Provisioner.verify(b.signed(b.appendHeader(nil)), b.sig):
		return fmt.Errorf("%w: it was modified after provisioner %s signed it, or damaged in transit", ErrSignature, b.Provisioner.ID())
	}
	return nil
}

// Open checks the bundle — addressed to this key's host and this key,
// signed by one of the trusted provisioners ([Bundle.Verify]) — and
// returns the value. Errors wrap [ErrOtherHost], [ErrOtherKey], one of
// Verify's, or [ErrDecrypt]. The caller should clear the value.
func (k *ImportKey) Open(b *Bundle, trusted []*ProvisionerKey) ([]byte, error) {
	if b.Host != k.host {
		return nil, fmt.Errorf("%w: it is addressed to host %x, and this host is %x", ErrOtherHost, b.Host, k.host)
	}
	if id := k.ID(); b.Recipient != id {
		return nil, fmt.Errorf("%w: sealed to import key %s, and this host's is %s; seal it again to the current recipient file",
			ErrOtherKey, b.Recipient, id)
	}
	if err := b.Verify(trusted); err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(b.enc, k.priv, kdf, aead, []byte(bundleInfo))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	v, err := r.Open(b.appendHeader(nil), b.ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: provisioner %s signed a value that does not open with this host's import key", ErrDecrypt, b.Provisioner.ID())
	}
	return v, nil
}

// Marshal encodes the bundle.
func (b *Bundle) Marshal() []byte {
	out := b.appendHeader(make([]byte, 0, MaxBundleSize-MaxValueSize+len(b.ciphertext)))
	out = append(out, b.enc...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.ciphertext)))
	out = append(out, b.ciphertext...)
	out = append(out, byte(len(b.sig)))
	return append(out, b.sig...)
}

// appendHeader appends the encoded header: the HPKE additional data.
func (b *Bundle) appendHeader(out []byte) []byte {
	out = append(out, bundleMagic[:]...)
	out = append(out, b.Host[:]...)
	out = append(out, b.Recipient[:]...)
	out = append(out, b.Provisioner.typ, byte(len(b.Provisioner.raw)))
	out = append(out, b.Provisioner.raw...)
	out = binary.BigEndian.AppendUint64(out, b.Counter)
	out = append(out, byte(len(b.Name)))
	out = append(out, b.Name...)
	var exp int64
	if !b.Expires.IsZero() {
		exp = b.Expires.Unix()
	}
	out = binary.BigEndian.AppendUint64(out, uint64(exp))
	c := b.Credential
	if c == nil {
		return append(out, 0)
	}
	out = append(out, 1, byte(len(c.Exchange)))
	out = append(out, c.Exchange...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(c.KeyID)))
	out = append(out, c.KeyID...)
	out = append(out, byte(len(c.KeyType)))
	return append(out, c.KeyType...)
}

// validate checks what the encoding alone does not bound.
func (b *Bundle) validate() error {
	if err := secretname.Check(b.Name); err != nil {
		return err
	}
	if b.Counter == 0 {
		return errors.New("counter 0")
	}
	if !b.Expires.IsZero() && (b.Expires.Unix() <= 0 || b.Expires.Nanosecond() != 0) {
		return errors.New("expiry time out of range")
	}
	if c := b.Credential; c != nil {
		if len(c.Exchange) == 0 || len(c.Exchange) > maxExchange || len(c.KeyID) == 0 || len(c.KeyID) > maxAPIKeyID ||
			len(c.KeyType) == 0 || len(c.KeyType) > maxKeyType {
			return errors.New("credential attribute length out of range")
		}
	}
	return nil
}

// ParseBundle decodes a bundle. It is strict: every field is bounded and
// validated and no trailing bytes are allowed, so that
// Marshal(ParseBundle(b)) equals b. It checks neither the signature nor
// the addressee (see [ImportKey.Open]). On failure it returns nil and a
// *ParseError.
func ParseBundle(raw []byte) (*Bundle, error) {
	fail := func(format string, args ...any) (*Bundle, error) {
		return nil, &ParseError{fmt.Errorf(format, args...)}
	}
	if len(raw) > MaxBundleSize {
		return fail("%d bytes is larger than the %d-byte limit", len(raw), MaxBundleSize)
	}
	r := binread.New(raw)
	if m := r.Bytes(len(bundleMagic)); r.Err() != nil || [8]byte(m) != bundleMagic {
		if len(raw) >= 8 && string(raw[:7]) == string(bundleMagic[:7]) {
			return fail("bundle format %d is not known to this version of keyward", raw[7])
		}
		return fail("not a keyward bundle")
	}
	var b Bundle
	b.Host = [HostIDSize]byte(r.Bytes(HostIDSize))
	b.Recipient = KeyID(r.Bytes(keyIDSize))
	typ := r.U8()
	pub := r.Bytes(int(r.U8()))
	b.Counter = r.U64()
	b.Name = string(r.Bytes(int(r.U8())))
	if exp := int64(r.U64()); exp != 0 {
		b.Expires = time.Unix(exp, 0).UTC()
	}
	switch kind := r.U8(); {
	case r.Err() != nil:
	case kind == 1:
		b.Credential = &Credential{
			Exchange: string(r.Bytes(int(r.U8()))),
			KeyID:    string(r.Bytes(int(r.U16()))),
			KeyType:  string(r.Bytes(int(r.U8()))),
		}
	case kind != 0:
		return fail("unknown kind %d", kind)
	}
	b.enc = r.Bytes(encSize)
	b.ciphertext = r.Bytes(int(r.U32()))
	b.sig = r.Bytes(int(r.U8()))
	if r.Err() != nil {
		return nil, &ParseError{r.Err()}
	}
	if r.Rest() != 0 {
		return fail("%d trailing bytes", r.Rest())
	}
	var err error
	if b.Provisioner, err = newProvisionerKey(typ, pub); err != nil {
		return fail("provisioner key: %v", err)
	}
	if err := b.validate(); err != nil {
		return nil, &ParseError{err}
	}
	if n := len(b.ciphertext); n <= tagSize || n > MaxValueSize+tagSize {
		return fail("ciphertext of %d bytes is out of range", n)
	}
	if n := len(b.sig); n != 0 && n != sigSize {
		return fail("signature of %d bytes, want %d", n, sigSize)
	}
	b.enc = append([]byte(nil), b.enc...)
	b.ciphertext = append([]byte(nil), b.ciphertext...)
	b.sig = append([]byte(nil), b.sig...)
	return &b, nil
}
