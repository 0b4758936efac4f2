package tpm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors callers branch on. Every error this package returns for these
// conditions wraps one of them (test with errors.Is); the message around
// it says what to do. TPM response codes are translated here, at the
// boundary; the original tpm2.TPMRC stays reachable with errors.Is.
var (
	// ErrNoDevice: the TPM device file is missing or not accessible
	// ([OpenDevice]).
	ErrNoDevice = errors.New("tpm: no TPM device")

	// ErrLockout: the TPM is in dictionary-attack lockout after too many
	// wrong PINs (TPM_RC_LOCKOUT) and refuses PIN-protected objects until
	// it recovers or its lockout is cleared.
	ErrLockout = errors.New("tpm: dictionary-attack lockout")

	// ErrPolicy: the PCRs a blob was sealed to changed since it was sealed
	// (TPM_RC_POLICY_FAIL). The error is a [*PolicyError] naming them.
	ErrPolicy = errors.New("tpm: boot state changed since sealing")

	// ErrBadPIN: the TPM rejected the PIN (TPM_RC_AUTH_FAIL,
	// TPM_RC_BAD_AUTH), or a blob sealed with a PIN was given to a Device
	// without one. Failures count towards dictionary-attack lockout.
	ErrBadPIN = errors.New("tpm: incorrect PIN")

	// ErrNotThisTPM: the blob was sealed under another storage key: another
	// TPM, the same TPM before its owner hierarchy was cleared, or another
	// Config.PersistentSRK. For a blob, the error is a [*NotThisTPMError].
	ErrNotThisTPM = errors.New("tpm: sealed by another TPM")

	// ErrIntegrity: the blob was modified: its records contradict its
	// policy, or the TPM refused to load it; or a data key wrapped by a
	// [StoreKey] does not authenticate under it. The error is an
	// [*IntegrityError].
	ErrIntegrity = errors.New("tpm: integrity check failed")

	// ErrClosed: a Device or StoreKey was used after Close.
	ErrClosed = errors.New("tpm: used after Close")
)

// An IntegrityError reports that a sealed blob was modified: its fields
// contradict each other, or the TPM refused to load it under the storage
// key that sealed it; or that a data key wrapped by a [StoreKey] is
// malformed, modified, or wrapped by another store key. errors.Is(err,
// [ErrIntegrity]) is true for it, and it
// has the method IntegrityFailure that the store package looks for. It
// never carries blob contents.
type IntegrityError struct {
	// KeyID is the KeyID of the Device or StoreKey that refused the blob.
	KeyID string
	// Reason says what was wrong.
	Reason string
	// Err is the TPM's response code when the TPM refused the blob.
	Err error
}

// Error implements error.
func (e *IntegrityError) Error() string {
	return "tpm: integrity check failed: " + e.Reason + " (the blob was modified or does not belong to this key; restore it from a backup and investigate)"
}

// IntegrityFailure reports true: the blob, not the TPM, is at fault.
func (e *IntegrityError) IntegrityFailure() bool { return true }

// Is makes errors.Is(err, ErrIntegrity) true.
func (e *IntegrityError) Is(target error) bool { return target == ErrIntegrity }

// Unwrap returns the TPM's response code, if any.
func (e *IntegrityError) Unwrap() error { return e.Err }

// A NotThisTPMError reports that a blob names another storage key than
// the Device's: it was sealed on another TPM, before this TPM's owner
// hierarchy was cleared (which changes its storage key), or under another
// Config.PersistentSRK. errors.Is(err, [ErrNotThisTPM]) is true for it. It
// also reports IntegrityFailure, as the store contract asks of a blob "not
// produced by this root key".
type NotThisTPMError struct {
	// Sealed is the KeyID the blob was sealed under.
	Sealed string
	// This is the Device's KeyID.
	This string
}

// Error implements error.
func (e *NotThisTPMError) Error() string {
	return fmt.Sprintf("tpm: sealed by another TPM: the blob was sealed under storage key %s and this TPM's is %s "+
		"(another machine, a TPM whose owner hierarchy was cleared, or another persistent SRK); "+
		"unseal it on the TPM that sealed it, or recover the secret with the break-glass kit", e.Sealed, e.This)
}

// IntegrityFailure reports true: the blob was not produced by this root key.
func (e *NotThisTPMError) IntegrityFailure() bool { return true }

// Is makes errors.Is(err, ErrNotThisTPM) true.
func (e *NotThisTPMError) Is(target error) bool { return target == ErrNotThisTPM }

// A PolicyError reports that the TPM refused to unseal a blob because PCRs
// it was sealed to no longer hold the values they had at sealing time.
// errors.Is(err, [ErrPolicy]) is true for it, and so is
// errors.Is(err, tpm2.TPMRCPolicyFail).
type PolicyError struct {
	// Sealed is the blob's PCR selection.
	Sealed Selection
	// Changed lists the PCRs of Sealed whose values differ now, ascending.
	// It is empty in the rare case where the PCRs changed and the TPM
	// refused the policy, but read back as sealed (for example a PCR
	// extended between the refusal and the read).
	Changed []int
	// Err is the TPM's response code.
	Err error
}

// Error implements error.
func (e *PolicyError) Error() string {
	const todo = "; before a planned firmware, kernel or Secure Boot change, re-seal with `keyward reseal`; " +
		"after an unplanned one, restore the previous boot configuration or recover the secret with the break-glass kit"
	if len(e.Changed) == 0 {
		return "tpm: boot state changed since sealing: the TPM refused the PCR policy of " + e.Sealed.String() + todo
	}
	s := make([]string, len(e.Changed))
	for i, p := range e.Changed {
		s[i] = strconv.Itoa(p)
	}
	if len(s) == 1 {
		return "tpm: boot state changed since sealing: PCR " + s[0] + " (sha256) no longer has the value it had when the secret was sealed" + todo
	}
	return "tpm: boot state changed since sealing: PCRs " + strings.Join(s, ", ") + " (sha256) no longer have the values they had when the secret was sealed" + todo
}

// Is makes errors.Is(err, ErrPolicy) true.
func (e *PolicyError) Is(target error) bool { return target == ErrPolicy }

// Unwrap returns the TPM's response code.
func (e *PolicyError) Unwrap() error { return e.Err }

// A ParseError reports a blob that is not a well-formed TPM-sealed blob:
// data from another backend (an HSM-wrapped key), another format version,
// or a modified or truncated blob. It has the method IntegrityFailure, so
// the store reports it as a damaged envelope. It never carries blob
// contents.
type ParseError struct {
	// Offset is the byte offset where parsing failed.
	Offset int
	// Reason says what was wrong.
	Reason string
	// Foreign is true when the data does not start like a TPM-sealed blob
	// at all.
	Foreign bool
}

// Error implements error.
func (e *ParseError) Error() string {
	if e.Foreign {
		return "tpm: not a TPM-sealed blob: " + e.Reason + " (was it wrapped by another backend, such as an HSM?)"
	}
	return fmt.Sprintf("tpm: malformed TPM-sealed blob at byte %d: %s", e.Offset, e.Reason)
}

// IntegrityFailure reports true: the blob, not the TPM, is at fault.
func (e *ParseError) IntegrityFailure() bool { return true }
