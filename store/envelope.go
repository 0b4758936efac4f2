package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/binread"
	"github.com/keyward/keyward/internal/secretname"
)

// Envelope format v1 and v2 (docs/envelope.md). All integers are
// big-endian.
//
//	magic        8 bytes  "KEYWARD" 0x01 or 0x02 (the last byte is the format version)
//	name         u8 length, bytes (a valid secret name)
//	version      u32 (>= 1)
//	created      i64 Unix seconds
//	expires      i64 Unix seconds, 0 = never
//	prev until   i64 Unix seconds: the previous version is served until
//	             then; 0 = no previous version, or it is retired at once
//	             v2 only, the kind of secret and what is not secret of it:
//	kind         u8: 1 = an exchange API credential
//	exchange     u8 length, bytes (1..32, [a-z0-9])
//	api key id   u16 length, bytes (1..1024, printable ASCII)
//	key type     u8 length, bytes (1..32, [a-z0-9-])
//	key id       u8 length, bytes (1..255, printable ASCII)
//	host         16 bytes
//	wrapped key  u16 length, bytes (1..MaxWrappedKeySize)
//	nonce        12 bytes
//	ciphertext   u32 length, bytes (16..MaxSecretSize+16)
//
// Everything before the ciphertext length is the header and is the
// additional authenticated data of the AES-256-GCM ciphertext.
const (
	// MaxSecretSize is the largest secret value, in bytes.
	MaxSecretSize = 64 << 10
	// MaxWrappedKeySize bounds the backend's wrapped data key.
	MaxWrappedKeySize = 4096
	// MaxEnvelopeSize bounds a whole envelope file.
	MaxEnvelopeSize = 8 + 1 + 255 + 4 + 8 + 8 + 8 + (1 + 1 + 32 + 2 + 1024 + 1 + 32) + 1 + 255 + HostIDSize + 2 +
		MaxWrappedKeySize + nonceSize + 4 + MaxSecretSize + tagSize

	nonceSize = 12
	tagSize   = 16
)

var magic = [8]byte{'K', 'E', 'Y', 'W', 'A', 'R', 'D', 1}

// Format versions: v1 holds a plain secret; v2 adds the kind of secret and
// its non-secret attributes (an exchange credential's venue, API key id and
// key type), authenticated with the rest of the header. Marshal writes the
// version a Header says, so that every envelope re-encodes to its bytes.
const (
	formatV1 = 1
	formatV2 = 2
)

// kindCredential is the v2 kind of an exchange API credential.
const kindCredential = 1

// A Header is the authenticated, unencrypted part of an envelope: what
// `keyward inspect` shows.
type Header struct {
	Name    string
	Version uint32
	Created time.Time // whole seconds
	Expires time.Time // zero: never
	// PrevUntil is when the previous version stops being served, set by
	// a rotation with a grace period; zero: at once (or no previous).
	PrevUntil time.Time
	// Credential, when not nil, says the secret is an exchange API
	// credential and holds its non-secret attributes (format v2).
	Credential *CredentialInfo
	KeyID      string // the backend's [Backend.KeyID]
	Host       HostID
	WrappedKey []byte
	Nonce      [nonceSize]byte
}

// A CredentialInfo is what is not secret of an exchange API credential:
// which venue, which API key, which kind of key. It is authenticated in
// the envelope's header with the rest, so it cannot be swapped for
// another key's.
type CredentialInfo struct {
	Exchange string // "binance", "bybit", "okx", "kraken", "coinbase"
	KeyID    string // the API key id the exchange issued (public)
	KeyType  string // "hmac", "ed25519", "ecdsa-p256" or "rsa"
}

// Backend returns the backend kind named by the key id ("pkcs11", "tpm").
func (h *Header) Backend() string { return backendKind(h.KeyID) }

// An Envelope is one stored version of one secret: a header and the
// ciphertext of the secret under its data key.
type Envelope struct {
	Header
	Ciphertext []byte
}

// A ParseError describes a malformed envelope. Parse returns it for any
// input that is not a well-formed v1 envelope.
type ParseError struct{ err error }

// Error describes what is malformed.
func (e *ParseError) Error() string { return "malformed envelope: " + e.err.Error() }

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.err }

func parseErrorf(format string, args ...any) error {
	return &ParseError{fmt.Errorf(format, args...)}
}

// ErrUnknownFormat is wrapped by the ParseError for an envelope whose magic
// or format version this build does not know.
var ErrUnknownFormat = errors.New("not a keyward envelope, or a newer format version")

// Parse decodes an envelope. It is strict: every field is bounded and
// validated and no trailing bytes are allowed, so that Marshal(Parse(b))
// equals b. On failure it returns nil and a *ParseError.
func Parse(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, parseErrorf("%d bytes is larger than the %d-byte limit", len(b), MaxEnvelopeSize)
	}
	r := binread.New(b)
	m := r.Bytes(len(magic))
	format := m[len(m)-1]
	if r.Err() != nil || [7]byte(m[:7]) != [7]byte(magic[:7]) || format != formatV1 && format != formatV2 {
		return nil, &ParseError{ErrUnknownFormat}
	}
	var e Envelope
	e.Name = string(r.Bytes(int(r.U8())))
	e.Version = r.U32()
	e.Created = time.Unix(int64(r.U64()), 0).UTC()
	if exp := int64(r.U64()); exp != 0 {
		e.Expires = time.Unix(exp, 0).UTC()
	}
	if until := int64(r.U64()); until != 0 {
		e.PrevUntil = time.Unix(until, 0).UTC()
	}
	if format == formatV2 {
		if kind := r.U8(); r.Err() == nil && kind != kindCredential {
			return nil, parseErrorf("unknown kind %d", kind)
		}
		e.Credential = &CredentialInfo{
			Exchange: string(r.Bytes(int(r.U8()))),
			KeyID:    string(r.Bytes(int(r.U16()))),
			KeyType:  string(r.Bytes(int(r.U8()))),
		}
	}
	e.KeyID = string(r.Bytes(int(r.U8())))
	e.Host = HostID(r.Bytes(HostIDSize))
	e.WrappedKey = r.Bytes(int(r.U16()))
	e.Nonce = [nonceSize]byte(r.Bytes(nonceSize))
	e.Ciphertext = r.Bytes(int(r.U32()))
	if r.Err() != nil {
		return nil, &ParseError{r.Err()}
	}
	if r.Rest() != 0 {
		return nil, parseErrorf("%d trailing bytes", r.Rest())
	}
	if err := e.Header.validate(); err != nil {
		return nil, &ParseError{err}
	}
	if n := len(e.Ciphertext); n < tagSize || n > MaxSecretSize+tagSize {
		return nil, parseErrorf("ciphertext of %d bytes is out of range", n)
	}
	e.WrappedKey = clone(e.WrappedKey)
	e.Ciphertext = clone(e.Ciphertext)
	return &e, nil
}

// Marshal encodes the envelope.
func (e *Envelope) Marshal() []byte {
	b := e.Header.appendTo(make([]byte, 0, e.size()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Ciphertext)))
	return append(b, e.Ciphertext...)
}

func (e *Envelope) size() int {
	n := 8 + 1 + len(e.Name) + 4 + 8 + 8 + 8 + 1 + len(e.KeyID) + HostIDSize +
		2 + len(e.WrappedKey) + nonceSize + 4 + len(e.Ciphertext)
	if c := e.Credential; c != nil {
		n += 1 + 1 + len(c.Exchange) + 2 + len(c.KeyID) + 1 + len(c.KeyType)
	}
	return n
}

// appendTo appends the encoded header. It is also the AAD, so it is always
// computed from the fields: an edited field changes the AAD.
func (h *Header) appendTo(b []byte) []byte {
	b = append(b, magic[:7]...)
	if h.Credential != nil {
		b = append(b, formatV2)
	} else {
		b = append(b, formatV1)
	}
	b = append(b, byte(len(h.Name)))
	b = append(b, h.Name...)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Created.Unix()))
	var exp int64
	if !h.Expires.IsZero() {
		exp = h.Expires.Unix()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	var until int64
	if !h.PrevUntil.IsZero() {
		until = h.PrevUntil.Unix()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(until))
	if c := h.Credential; c != nil {
		b = append(b, kindCredential, byte(len(c.Exchange)))
		b = append(b, c.Exchange...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.KeyID)))
		b = append(b, c.KeyID...)
		b = append(b, byte(len(c.KeyType)))
		b = append(b, c.KeyType...)
	}
	b = append(b, byte(len(h.KeyID)))
	b = append(b, h.KeyID...)
	b = append(b, h.Host[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.WrappedKey)))
	b = append(b, h.WrappedKey...)
	return append(b, h.Nonce[:]...)
}

// validate checks the header fields that the encoding alone does not bound.
func (h *Header) validate() error {
	if err := secretname.Check(h.Name); err != nil {
		return err
	}
	if h.Version == 0 {
		return errors.New("version 0")
	}
	if h.Created.Unix() <= 0 || h.Created.Nanosecond() != 0 {
		return errors.New("creation time out of range")
	}
	if !h.Expires.IsZero() && (h.Expires.Unix() <= 0 || h.Expires.Nanosecond() != 0) {
		return errors.New("expiry time out of range")
	}
	if !h.PrevUntil.IsZero() && (h.PrevUntil.Unix() <= 0 || h.PrevUntil.Nanosecond() != 0) {
		return errors.New("grace end out of range")
	}
	if len(h.KeyID) == 0 || len(h.KeyID) > 255 {
		return errors.New("key id length out of range")
	}
	for i := 0; i < len(h.KeyID); i++ {
		if c := h.KeyID[i]; c < 0x21 || c > 0x7e {
			return errors.New("key id is not printable ASCII")
		}
	}
	if n := len(h.WrappedKey); n == 0 || n > MaxWrappedKeySize {
		return fmt.Errorf("wrapped key of %d bytes is out of range", n)
	}
	if c := h.Credential; c != nil {
		return c.validate()
	}
	return nil
}

// validate checks a credential's attributes.
func (c *CredentialInfo) validate() error {
	word := func(what, s string, max int, extra string) error {
		if len(s) == 0 || len(s) > max {
			return fmt.Errorf("credential %s of %d bytes is out of range (1 to %d)", what, len(s), max)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
				return fmt.Errorf("credential %s %q has a character outside [a-z0-9%s]", what, s, extra)
			}
		}
		return nil
	}
	if err := word("exchange", c.Exchange, 32, ""); err != nil {
		return err
	}
	if err := word("key type", c.KeyType, 32, "-"); err != nil {
		return err
	}
	if len(c.KeyID) == 0 || len(c.KeyID) > 1024 {
		return fmt.Errorf("API key id of %d bytes is out of range (1 to 1024)", len(c.KeyID))
	}
	for i := 0; i < len(c.KeyID); i++ {
		if ch := c.KeyID[i]; ch < 0x20 || ch > 0x7e {
			return errors.New("API key id is not printable ASCII")
		}
	}
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
