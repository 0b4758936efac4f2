package hsm

import "errors"

// Errors callers branch on. Every error this package returns for these
// conditions wraps one of them (test with errors.Is); the message around
// it says what to do.
var (
	// ErrModuleNotFound: the PKCS #11 module file is missing, is not a
	// loadable shared library for this machine, or the URI names none.
	ErrModuleNotFound = errors.New("hsm: PKCS #11 module not found")

	// ErrTokenNotFound: no token matches the URI; the message lists the
	// tokens the module offers.
	ErrTokenNotFound = errors.New("hsm: token not found")

	// ErrBadPIN: the token rejected the PIN (CKR_PIN_INCORRECT,
	// CKR_PIN_LEN_RANGE). Repeated failures lock the PIN.
	ErrBadPIN = errors.New("hsm: incorrect PIN")

	// ErrPINLocked: the token locked the user PIN after too many failures
	// (CKR_PIN_LOCKED); its security officer must unlock it.
	ErrPINLocked = errors.New("hsm: PIN locked")

	// ErrKeyNotFound: the token has no AES key matching the URI.
	ErrKeyNotFound = errors.New("hsm: key not found")

	// ErrMechanism: the token lacks a mechanism keyward needs
	// (CKM_AES_GCM, or CKM_AES_KEY_GEN for Init).
	ErrMechanism = errors.New("hsm: mechanism not supported by this token")

	// ErrIntegrity: a wrapped key was modified, truncated, or was made by
	// another key. The error is an [*IntegrityError].
	ErrIntegrity = errors.New("hsm: integrity check failed")

	// ErrUnavailable: the token stopped answering (removed, reset,
	// unreachable, hung) or came back changed. The Token retries by
	// itself: it re-initialises the module with backoff and, once the
	// same key answers again, operations succeed without reopening it.
	// Meanwhile operations fail fast with this error; keyward keeps
	// serving the secrets it has already unwrapped.
	ErrUnavailable = errors.New("hsm: token unreachable; keyward keeps serving what it holds and retries")

	// ErrKeyChanged: the token that came back, or the key on it, is not
	// the one the Token opened (another serial number, or a key under the
	// same label and id that cannot decrypt what the original encrypted).
	// The Token refuses it, so that nothing is wrapped under a key that
	// cannot unwrap the store, and keeps retrying in case the original
	// returns. Errors wrapping it also wrap [ErrUnavailable].
	ErrKeyChanged = errors.New("hsm: the token holds a different key")

	// ErrClosed: the Token was used after Close.
	ErrClosed = errors.New("hsm: token closed")
)

// An IntegrityError reports that Unwrap was given a blob that was modified
// or was not produced by this token's key. errors.Is(err, [ErrIntegrity])
// is true for it, and it has the method IntegrityFailure that the store
// package looks for. It never carries blob contents.
type IntegrityError struct {
	// KeyID is the KeyID of the token key that refused the blob.
	KeyID string
	// Reason says what was wrong, e.g. "authentication failed".
	Reason string
	// Err is the module's return code, when the token reported the
	// failure, else nil.
	Err error
}

// Error implements error.
func (e *IntegrityError) Error() string {
	return "hsm: integrity check failed: " + e.Reason + " (the wrapped key was modified or was made by a key other than " + e.KeyID + ")"
}

// IntegrityFailure reports true: the blob, not the token, is at fault.
func (e *IntegrityError) IntegrityFailure() bool { return true }

// Is makes errors.Is(err, ErrIntegrity) true.
func (e *IntegrityError) Is(target error) bool { return target == ErrIntegrity }

// Unwrap returns the module's return code, if any.
func (e *IntegrityError) Unwrap() error { return e.Err }
