package fleet

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Recipient file format v1 (docs/fleet.md): six lines of text, each a
// keyword, one space and a value, in this order, each ending in "\n":
//
//	keyward-recipient-1
//	host 0123456789abcdef0123456789abcdef       the host id (store.HostID), 32 hex digits
//	hostname trade-ny4-01                      what the host calls itself: 1..253 of [A-Za-z0-9._-]
//	key-id pkcs11:keyward-kek/0a1b             the backend key id at enrollment: 1..255 printable ASCII
//	created 2026-05-01T12:00:00Z               RFC 3339, UTC, whole seconds
//	public-key AAAA...                         standard base64 with padding of the 1216-byte public key
//
// The hostname and key id are informational: they help the person who
// collects the files; the host id and the public key are what bundles are
// sealed to.
const (
	// MaxRecipientSize bounds a recipient file.
	MaxRecipientSize = 4096

	recipientMagic = "keyward-recipient-1"
	maxHostname    = 253
	maxKeyID       = 255
)

// A Recipient is a host's public recipient file: what a provisioner seals
// bundles to.
type Recipient struct {
	Host      [HostIDSize]byte
	Hostname  string
	KeyID     string    // the host backend's key id when it enrolled
	Created   time.Time // whole seconds, UTC
	PublicKey []byte    // PublicKeySize bytes
}

// ID returns the fingerprint of the recipient's public key: compare it
// with what keyward enroll printed on the host.
func (r *Recipient) ID() KeyID { return keyIDOf(r.PublicKey) }

// A RecipientParseError describes a malformed recipient file.
// [ParseRecipient] returns it for any input that is not a well-formed v1
// file.
type RecipientParseError struct{ err error }

// Error describes what is malformed.
func (e *RecipientParseError) Error() string { return "malformed recipient file: " + e.err.Error() }

// Unwrap returns the underlying error.
func (e *RecipientParseError) Unwrap() error { return e.err }

var b64 = base64.StdEncoding.Strict()

// ParseRecipient decodes a recipient file. It is strict: the lines, their
// order and their values are checked, the public key is a valid one, and
// nothing follows the last line, so Marshal(ParseRecipient(b)) equals b.
// On failure it returns nil and a *RecipientParseError.
func ParseRecipient(b []byte) (*Recipient, error) {
	fail := func(format string, args ...any) (*Recipient, error) {
		return nil, &RecipientParseError{fmt.Errorf(format, args...)}
	}
	if len(b) > MaxRecipientSize {
		return fail("%d bytes is larger than the %d-byte limit", len(b), MaxRecipientSize)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		return fail("it does not end with a newline: truncated?")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != recipientMagic {
		if strings.HasPrefix(lines[0], "keyward-recipient-") {
			return fail("format %q is not known to this version of keyward", lines[0])
		}
		return fail("not a keyward recipient file: it must start with %q", recipientMagic)
	}
	keys := []string{"host", "hostname", "key-id", "created", "public-key"}
	if len(lines) != 1+len(keys) {
		return fail("%d lines, want %d", len(lines), 1+len(keys))
	}
	vals := make([]string, len(keys))
	for i, k := range keys {
		v, ok := strings.CutPrefix(lines[i+1], k+" ")
		if !ok {
			return fail("line %d does not start with %q", i+2, k+" ")
		}
		vals[i] = v
	}
	var r Recipient
	if h, err := hex.DecodeString(vals[0]); err != nil || len(h) != HostIDSize || hex.EncodeToString(h) != vals[0] {
		return fail("host is not %d lowercase hex digits", 2*HostIDSize)
	} else {
		r.Host = [HostIDSize]byte(h)
	}
	r.Hostname, r.KeyID = vals[1], vals[2]
	t, err := time.Parse(time.RFC3339, vals[3])
	if err != nil || t.Unix() <= 0 || t.Format(time.RFC3339) != vals[3] || t.Location() != time.UTC {
		return fail("created is not an RFC 3339 UTC time in whole seconds")
	}
	r.Created = t
	pub, err := b64.DecodeString(vals[4])
	if err != nil {
		return fail("public key is not base64")
	}
	r.PublicKey = pub
	if err := r.validate(); err != nil {
		return nil, &RecipientParseError{err}
	}
	return &r, nil
}

// validate checks the fields of r.
func (r *Recipient) validate() error {
	if err := checkHostname(r.Hostname); err != nil {
		return err
	}
	if err := checkKeyID(r.KeyID); err != nil {
		return err
	}
	if r.Created.Unix() <= 0 || r.Created.Nanosecond() != 0 {
		return errors.New("creation time out of range")
	}
	return checkPublicKey(r.PublicKey)
}

func checkHostname(s string) error {
	if len(s) == 0 || len(s) > maxHostname {
		return fmt.Errorf("hostname of %d bytes is out of range (1 to %d)", len(s), maxHostname)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("hostname has a character outside [A-Za-z0-9._-]")
		}
	}
	return nil
}

func checkKeyID(s string) error {
	if len(s) == 0 || len(s) > maxKeyID {
		return fmt.Errorf("key id of %d bytes is out of range (1 to %d)", len(s), maxKeyID)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return errors.New("key id is not printable ASCII")
		}
	}
	return nil
}

// checkPublicKey checks that pub is a canonical import public key.
func checkPublicKey(pub []byte) error {
	if len(pub) != PublicKeySize {
		return fmt.Errorf("public key of %d bytes, want %d", len(pub), PublicKeySize)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("invalid public key: %w", err)
	}
	if !bytes.Equal(pk.Bytes(), pub) {
		return errors.New("non-canonical public key")
	}
	return nil
}

// Marshal encodes the recipient file. It encodes the fields as they are;
// [ParseRecipient] accepts the result only if they are valid.
func (r *Recipient) Marshal() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nhost %s\nhostname %s\nkey-id %s\ncreated %s\npublic-key %s\n", recipientMagic,
		hex.EncodeToString(r.Host[:]), r.Hostname, r.KeyID, r.Created.UTC().Format(time.RFC3339),
		b64.EncodeToString(r.PublicKey))
	return []byte(b.String())
}
