//go:build !cgo || !linux

package hsm

import (
	"context"
	"errors"
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
