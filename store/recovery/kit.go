package recovery

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// Kit file format v1 (docs/recovery.md). All integers are big-endian.
//
//	magic        8 bytes  "KWRECOV" 0x01 (the last byte is the format version)
//	threshold    u8 (MinThreshold..shares)
//	shares       u8 (threshold..MaxShares)
//	created      i64 Unix seconds (> 0)
//	kem id       u16 0x647a MLKEM768-X25519
//	kdf id       u16 0x0001 HKDF-SHA256
//	aead id      u16 0x0002 AES-256-GCM
//	public key   u16 length (1216), bytes
const (
	// KitSize is the size of an encoded kit.
	KitSize = 8 + 1 + 1 + 8 + 2 + 2 + 2 + 2 + publicKeySize
)

var kitMagic = [8]byte{'K', 'W', 'R', 'E', 'C', 'O', 'V', 1}

// A Kit is the public half of a recovery kit: what the store keeps. Its
// fields are read-only once the kit is made; a *Kit is safe for concurrent
// use.
type Kit struct {
	// ID names the kit on every share: 16 hex digits, the first 8 bytes of
	// SHA-256 of PublicKey. It is derived, not encoded by Marshal.
	ID string
	// Threshold is the number of shares that recover the private key.
	Threshold int
	// Shares is the number of shares the private key was split into.
	Shares int
	// Created is when the kit was made, in whole seconds, UTC.
	Created time.Time
	// PublicKey is the HPKE MLKEM768-X25519 public key (1216 bytes).
	PublicKey []byte
}

// kitID returns the kit id of a public key.
func kitID(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// checkParams reports whether shares and threshold are allowed, stating the
// rule if not.
func checkParams(shares, threshold int) error {
	if threshold < MinThreshold || threshold > shares || shares > MaxShares {
		return fmt.Errorf("recovery: threshold %d with %d shares is not allowed: need %d <= threshold <= shares <= %d",
			threshold, shares, MinThreshold, MaxShares)
	}
	return nil
}

// NewKit makes a recovery kit of shares shares, any threshold of which
// recover its private key; it needs 2 <= threshold <= shares <= 16. It
// returns the kit to store and the shares to hand out, in index order
// (1..shares). The private key exists only while NewKit runs: print each
// share once, give it to its custodian, and never store it.
func NewKit(shares, threshold int, now time.Time) (*Kit, []Share, error) {
	if err := checkParams(shares, threshold); err != nil {
		return nil, nil, err
	}
	if now.Unix() <= 0 {
		return nil, nil, fmt.Errorf("recovery: creation time %v is before 1970", now)
	}
	secret := group.Ristretto255.RandomNonZeroScalar(rand.Reader)
	defer secret.SetUint64(0)
	priv, err := deriveKey(secret)
	if err != nil {
		return nil, nil, err
	}
	pub := priv.PublicKey().Bytes()
	wipeKey(priv)
	kit := &Kit{
		ID:        kitID(pub),
		Threshold: threshold,
		Shares:    shares,
		Created:   time.Unix(now.Unix(), 0).UTC(),
		PublicKey: pub,
	}
	// circl's t is the number of shares that reveal nothing: threshold-1.
	ss := secretsharing.New(rand.Reader, uint(threshold-1), secret)
	out := make([]Share, shares)
	for i, s := range ss.Share(uint(shares)) {
		v, err := s.Value.MarshalBinary()
		s.Value.SetUint64(0)
		if err != nil {
			return nil, nil, fmt.Errorf("recovery: encoding share %d: %w", i+1, err)
		}
		out[i] = Share{KitID: kit.ID, Threshold: threshold, Shares: shares, Index: i + 1, value: v}
	}
	return kit, out, nil
}

// deriveKey derives the kit's HPKE key pair from the secret scalar.
func deriveKey(secret group.Scalar) (hpke.PrivateKey, error) {
	seed, err := secret.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("recovery: encoding secret: %w", err)
	}
	defer clear(seed)
	if len(seed) != seedSize {
		return nil, fmt.Errorf("recovery: secret of %d bytes, want %d", len(seed), seedSize)
	}
	priv, err := kem.DeriveKeyPair(seed)
	if err != nil {
		return nil, fmt.Errorf("recovery: deriving key pair: %w", err)
	}
	return priv, nil
}

// wipeKey clears the seed that crypto/hpke keeps in a private key, where
// Bytes returns it rather than a copy (Go 1.26). The expanded ML-KEM and
// X25519 keys inside it cannot be cleared.
func wipeKey(k hpke.PrivateKey) {
	if b, err := k.Bytes(); err == nil {
		clear(b)
	}
}

// A ParseError describes a malformed kit file. [ParseKit] returns it for any
// input that is not a well-formed v1 kit.
type ParseError struct{ err error }

// Error returns the message.
func (e *ParseError) Error() string { return "recovery: malformed kit: " + e.err.Error() }

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.err }

func parseErrorf(format string, args ...any) error {
	return &ParseError{fmt.Errorf(format, args...)}
}

// ErrUnknownFormat is wrapped by the ParseError for a kit whose magic or
// format version this build does not know. Like the other causes a
// ParseError wraps, it has no prefix of its own: the ParseError adds it.
var ErrUnknownFormat = errors.New("not a keyward recovery kit, or a newer format version")

// ParseKit decodes a kit file. It is strict: every field is validated,
// including the public key, and no trailing bytes are allowed, so that
// Marshal(ParseKit(b)) equals b. On failure it returns nil and a *ParseError.
func ParseKit(b []byte) (*Kit, error) {
	if len(b) > KitSize {
		return nil, parseErrorf("%d bytes is larger than the %d-byte kit", len(b), KitSize)
	}
	if len(b) < len(kitMagic) || [8]byte(b[:8]) != kitMagic {
		return nil, &ParseError{ErrUnknownFormat}
	}
	if len(b) != KitSize {
		return nil, parseErrorf("truncated: %d bytes, want %d", len(b), KitSize)
	}
	b = b[8:]
	k := &Kit{Threshold: int(b[0]), Shares: int(b[1])}
	created := int64(binary.BigEndian.Uint64(b[2:]))
	kemID, kdfID, aeadID := binary.BigEndian.Uint16(b[10:]), binary.BigEndian.Uint16(b[12:]), binary.BigEndian.Uint16(b[14:])
	pkLen := int(binary.BigEndian.Uint16(b[16:]))
	pub := b[18:]
	if err := checkParams(k.Shares, k.Threshold); err != nil {
		return nil, &ParseError{err}
	}
	if created <= 0 {
		return nil, parseErrorf("creation time %d out of range", created)
	}
	k.Created = time.Unix(created, 0).UTC()
	if kemID != kem.ID() || kdfID != kdf.ID() || aeadID != aead.ID() {
		return nil, parseErrorf("unsupported HPKE suite %#04x/%#04x/%#04x", kemID, kdfID, aeadID)
	}
	if pkLen != publicKeySize {
		return nil, parseErrorf("public key of %d bytes, want %d", pkLen, publicKeySize)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, parseErrorf("invalid public key: %w", err)
	}
	if !bytes.Equal(pk.Bytes(), pub) {
		return nil, parseErrorf("non-canonical public key")
	}
	k.PublicKey = bytes.Clone(pub)
	k.ID = kitID(k.PublicKey)
	return k, nil
}

// Marshal encodes the kit. It encodes the fields as they are; [ParseKit]
// accepts the result only if they are valid.
func (k *Kit) Marshal() []byte {
	b := make([]byte, 0, KitSize)
	b = append(b, kitMagic[:]...)
	b = append(b, byte(k.Threshold), byte(k.Shares))
	b = binary.BigEndian.AppendUint64(b, uint64(k.Created.Unix()))
	b = binary.BigEndian.AppendUint16(b, kem.ID())
	b = binary.BigEndian.AppendUint16(b, kdf.ID())
	b = binary.BigEndian.AppendUint16(b, aead.ID())
	b = binary.BigEndian.AppendUint16(b, uint16(len(k.PublicKey)))
	return append(b, k.PublicKey...)
}

// publicKey validates k and returns its HPKE public key.
func (k *Kit) publicKey() (hpke.PublicKey, error) {
	if k == nil {
		return nil, errors.New("recovery: no kit")
	}
	if err := checkParams(k.Shares, k.Threshold); err != nil {
		return nil, err
	}
	if k.ID != kitID(k.PublicKey) {
		return nil, fmt.Errorf("recovery: kit id %q does not match its public key", k.ID)
	}
	pk, err := kem.NewPublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("recovery: invalid kit public key: %w", err)
	}
	return pk, nil
}
