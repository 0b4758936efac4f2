package store

import "context"

// A Backend wraps data keys under a root key that never leaves the hardware.
//
// Data keys are always [DataKeySize] bytes. Implementations must be safe for
// concurrent use.
type Backend interface {
	// Wrap encrypts dataKey under the root key with an authenticated
	// mechanism. The result is opaque and is stored in the envelope header.
	Wrap(ctx context.Context, dataKey []byte) (wrapped []byte, err error)

	// Unwrap reverses Wrap. When wrapped was modified or was not produced
	// by this root key, the error it returns has a method
	// IntegrityFailure() bool that reports true (found with errors.As), so
	// the store can report tampering as [ErrIntegrity] without importing
	// the backend's package.
	Unwrap(ctx context.Context, wrapped []byte) (dataKey []byte, err error)

	// KeyID identifies the root key. It is stable for the life of the key,
	// is written into every envelope header, and has the form
	// "<kind>:<identifier>", where kind names the backend ("pkcs11", "tpm").
	// It contains no secret.
	KeyID() string

	// Close releases the backend. Wrap and Unwrap must not be called after.
	Close() error
}

// DataKeySize is the size in bytes of every data key: an AES-256 key.
const DataKeySize = 32
