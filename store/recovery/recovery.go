// Package recovery implements keyward's break-glass recovery kit: a key pair
// whose public half stays in the store, so that every data key can also be
// sealed to it, and whose private half exists only as shares held by
// custodians, so that the store can be recovered after its HSM or TPM is lost.
//
// # Model
//
// [NewKit] draws a random secret, derives an HPKE key pair from it and splits
// the secret with Shamir's secret sharing into n shares of which any k (the
// threshold) recover it. The [Kit] (public key and parameters) is kept in the
// store; the [Share] values are rendered once as text by [Share.String] for
// the custodians and are never stored. [SealKey] seals a data key to the kit;
// [Combine] recovers the [PrivateKey] from k shares and [OpenKey] opens what
// was sealed.
//
// A fleet kit is the same kit made on a workstation for many hosts: its
// public half travels as text ([Kit.MarshalPublic], [ParsePublic]) to the
// hosts, which seal their data keys to it; its shares are encrypted with
// age to each custodian's age or SSH public key ([ParseRecipient],
// [Share.Encrypt]) instead of being printed. At restore, custodians
// encrypt their share again to a one-time [RestoreKey] that exists only
// in the restoring process, and [ReadShares] reads shares in clear and
// encrypted alike.
//
// # Cryptography
//
//   - HPKE (RFC 9180) base mode, single shot, from crypto/hpke: KEM
//     MLKEM768-X25519 (X-Wing, a hybrid of ML-KEM-768 and X25519, so that
//     sealed keys stay safe unless both are broken), KDF HKDF-SHA256, AEAD
//     AES-256-GCM.
//   - The secret is a uniformly random non-zero Ristretto255 scalar; its
//     32-byte canonical encoding is the input keying material of the KEM's
//     DeriveKeyPair, so the key pair is re-derived after the secret is
//     recovered.
//   - Shamir's secret sharing over the Ristretto255 scalar field, from
//     github.com/cloudflare/circl/secretsharing (constant time for this
//     group). Share i is the random degree k-1 polynomial evaluated at i.
//   - Shares for custodians: age (filippo.io/age) to an X25519, hybrid
//     post-quantum (ML-KEM-768 + X25519) or SSH ed25519/RSA recipient,
//     ASCII-armored. A share's protection in transit is that of the key
//     it is encrypted to: a custodian with a classic key gets no
//     post-quantum protection for their share.
//
// # Limits
//
// k-1 shares reveal nothing about the secret, but k custodians together can
// recover it without anyone else. A share's checksum catches mistyping, not
// forgery: a share altered with a recomputed checksum is caught only by
// [Combine], which identifies it when at least k of the shares given are
// correct. HPKE base mode does not authenticate the sender: anyone who can
// read the kit can seal a key to it, so what [OpenKey] returns is only as
// trustworthy as the store it came from. Whoever can replace the kit in the
// store receives the data keys sealed afterwards; compare [Kit.ID] with the
// kit id written on the shares. Memory holding secrets is cleared where this
// package owns it; copies inside crypto/hpke and circl cannot be cleared.
package recovery

import (
	"crypto/hpke"
	"errors"
	"strconv"
)

// Sentinel errors. Errors returned by this package wrap one of them.
var (
	// ErrBadShare means a share text is malformed or mistyped (its checksum
	// does not match), or a Share value is not one this package produced.
	ErrBadShare = errors.New("recovery: bad share")
	// ErrNotEnoughShares means fewer shares than the kit's threshold were
	// given.
	ErrNotEnoughShares = errors.New("recovery: not enough shares")
	// ErrOtherKit means a share belongs to another recovery kit.
	ErrOtherKit = errors.New("recovery: share from another kit")
	// ErrDuplicateShare means the same share index was given more than once.
	ErrDuplicateShare = errors.New("recovery: duplicate share")
	// ErrWrongShares means shares that pass their checksums do not recover
	// the kit's private key: at least one was altered, or comes from another
	// split of the same kit.
	ErrWrongShares = errors.New("recovery: shares do not recover the kit's key")
	// ErrIntegrity means a sealed key was tampered with, is bound to other
	// info, or was sealed to another kit.
	ErrIntegrity = errors.New("recovery: sealed key failed its integrity check")
)

// Limits on kit parameters.
const (
	// MinThreshold is the smallest threshold: a threshold of 1 would make
	// every share the whole key.
	MinThreshold = 2
	// MaxShares is the largest number of shares in a kit.
	MaxShares = 16
	// DataKeySize is the size of the data keys [SealKey] seals.
	DataKeySize = 32
)

// The HPKE ciphersuite. Its identifiers are recorded in the kit file.
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

const (
	seedSize      = 32   // a canonical Ristretto255 scalar
	publicKeySize = 1216 // ML-KEM-768 encapsulation key (1184) + X25519 point (32)
	encSize       = 1120 // ML-KEM-768 ciphertext (1088) + X25519 point (32)
)

// A ShareError reports a problem with one share, identified by the index
// written on it. Err wraps [ErrBadShare], [ErrOtherKit], [ErrDuplicateShare]
// or [ErrWrongShares].
type ShareError struct {
	Index int // the share's index as written on it (1..MaxShares)
	Err   error
}

// Error returns the message, starting with the share's index.
func (e *ShareError) Error() string {
	return "share " + strconv.Itoa(e.Index) + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ShareError) Unwrap() error { return e.Err }
