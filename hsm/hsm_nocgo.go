//go:build !cgo || !linux

package hsm

import (
	"context"
	"crypto"
	"errors"
	"io"
	"runtime"
)

// errNoCgo explains why this build has no PKCS #11 backend.
var errNoCgo = func() error {
	if runtime.GOOS != "linux" {
		return errors.New("hsm: the PKCS #11 backend of keyward supports Linux only (this binary was built for " + runtime.GOOS + ")")
	}
	return errors.New("hsm: keyward was built without cgo; the PKCS #11 backend needs a cgo build (CGO_ENABLED=1, glibc)")
}()

// A Token would be a key-encryption key in a PKCS #11 token. This build
// has no PKCS #11 support (it needs cgo on Linux): Open and Init fail, and
// no Token exists. Its methods are safe for concurrent use.
type Token struct{}

// Open fails: this build has no PKCS #11 support.
func Open(cfg Config) (*Token, error) { return nil, errNoCgo }

// Init fails: this build has no PKCS #11 support.
func Init(cfg Config) (tok *Token, created bool, err error) { return nil, false, errNoCgo }

// KeyID returns "".
func (t *Token) KeyID() string { return "" }

// Wrap fails: this build has no PKCS #11 support.
func (t *Token) Wrap(ctx context.Context, dataKey []byte) ([]byte, error) { return nil, errNoCgo }

// Unwrap fails: this build has no PKCS #11 support.
func (t *Token) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) { return nil, errNoCgo }

// Healthy fails: this build has no PKCS #11 support.
func (t *Token) Healthy(ctx context.Context) error { return errNoCgo }

// Status reports StateFailed: this build has no PKCS #11 support.
func (t *Token) Status() Status { return Status{State: StateFailed, Err: errNoCgo} }

// Close does nothing.
func (t *Token) Close() error { return nil }

// Destroy reports that this build has no PKCS #11 support.
func (t *Token) Destroy(ctx context.Context) error { return errNoCgo }

// A Signer would be a private key in a PKCS #11 token. This build has no
// PKCS #11 support (it needs cgo on Linux): OpenSigner fails, and a
// provisioner must use a key file instead. Its methods are safe for
// concurrent use.
type Signer struct{}

// OpenSigner fails: this build has no PKCS #11 support.
func OpenSigner(cfg Config) (*Signer, error) { return nil, errNoCgo }

// Public returns nil.
func (s *Signer) Public() crypto.PublicKey { return nil }

// Sign fails: this build has no PKCS #11 support.
func (s *Signer) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, errNoCgo }

// Close does nothing.
func (s *Signer) Close() error { return nil }
