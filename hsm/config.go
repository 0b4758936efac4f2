package hsm

import (
	"errors"
	"fmt"
)

const (
	// DefaultMaxSessions is the session pool size when
	// Config.MaxSessions is 0.
	DefaultMaxSessions = 8

	// MaxPINLen is the longest PIN accepted, in bytes.
	MaxPINLen = 256

	// maxMaxSessions bounds Config.MaxSessions.
	maxMaxSessions = 1024
)

// A Config says which token and key a [Token] uses. The zero value of each
// optional field means its default.
type Config struct {
	// URI names the module, the token and the key (required). The key is
	// selected by object (its CKA_LABEL) and/or id (its CKA_ID); at least
	// one must be present, and Init needs object to label a new key.
	URI *URI

	// PIN is the user PIN (required), read with package internal/pin. Open copies it
	// into memory kept out of the Go heap and core dumps, and keeps that
	// copy until Close, because sessions that die must log in again. The
	// caller should clear its own slice once Open returns.
	PIN []byte

	// MaxSessions bounds the PKCS #11 sessions the Token keeps open, and
	// so the operations it runs at once. 0 means [DefaultMaxSessions].
	MaxSessions int
}

// validate checks c and returns the session pool size.
func (c *Config) validate(create bool) (int, error) {
	if c.URI == nil {
		return 0, errors.New("hsm: Config.URI is required")
	}
	u := c.URI
	if u.Object() == "" && len(u.ID()) == 0 {
		return 0, errors.New("hsm: the PKCS #11 URI must name the key with object=LABEL (and optionally id=)")
	}
	if create && u.Object() == "" {
		return 0, errors.New("hsm: the PKCS #11 URI must give object=LABEL so that a new key can be labelled")
	}
	if t := u.Type(); t != "" && t != "secret-key" {
		return 0, fmt.Errorf("hsm: the PKCS #11 URI says type=%s, but keyward uses an AES secret key (type=secret-key)", t)
	}
	if len(c.PIN) == 0 {
		return 0, errors.New("hsm: Config.PIN is empty; read the PIN with package internal/pin")
	}
	if len(c.PIN) > MaxPINLen {
		return 0, fmt.Errorf("hsm: Config.PIN is %d bytes, longer than %d", len(c.PIN), MaxPINLen)
	}
	switch n := c.MaxSessions; {
	case n == 0:
		return DefaultMaxSessions, nil
	case n < 0 || n > maxMaxSessions:
		return 0, fmt.Errorf("hsm: Config.MaxSessions is %d; want 1 to %d, or 0 for %d", n, maxMaxSessions, DefaultMaxSessions)
	default:
		return n, nil
	}
}
