// Package hsm keeps keyward's root key in a PKCS #11 token (an HSM, a
// smart card, SoftHSM) and uses it to wrap and unwrap data keys. A
// [*Token] satisfies the store package's Backend interface.
//
// The token, the key and the module are named by a PKCS #11 URI (RFC 7512,
// [ParseURI]):
//
//	pkcs11:token=prod;object=keyward-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin
//
// # Security model
//
// The root key is an AES-256 secret key generated inside the token by
// [Init] with CKA_SENSITIVE=true and CKA_EXTRACTABLE=false, so its value
// can be neither read nor wrapped out; [Open] refuses a key that lacks
// either property. It may only encrypt and decrypt (CKA_WRAP, CKA_UNWRAP,
// CKA_SIGN, CKA_VERIFY and CKA_DERIVE are false). Only 32-byte data keys
// cross the PKCS #11 boundary: [Token.Wrap] encrypts one with CKM_AES_GCM
// under a fresh random 96-bit IV and the additional data
// "keyward data-key v1", and returns [FormatV1] || IV || ciphertext || tag
// ([WrappedSize] bytes). Unwrap checks size and format before asking the
// token, and reports a blob that was modified or made under another key as
// an [*IntegrityError] ([ErrIntegrity]). Random IVs bound a key to about
// 2^32 wraps (NIST SP 800-38D); keyward wraps a data key per secret, far
// below that.
//
// Whoever can run code as the keyward user can use the key while the
// agent runs, but cannot take it away: stealing the disk or the process
// memory yields wrapped blobs and, at worst, the PIN, never the root key.
//
// The PIN comes from package internal/pin: a systemd credential, a file, or a
// terminal prompt; never the command line, the environment or the URI
// (pin-value is refused). [Open] keeps a copy in memory outside the Go heap
// (locked, excluded from core dumps) so that it can log in again after a
// session dies, and clears it on Close. miekg/pkcs11's Login takes the PIN
// as a string and copies it into a C buffer it frees without clearing;
// keyward builds that string over its own buffer, but cannot clear the C
// copy. Errors and messages never contain the PIN or key material.
//
// # Modules, sessions and concurrency
//
// A PKCS #11 module is initialised once per process: the package keeps one
// context per module file, shared by every Token on it, re-initialised to
// bring back a lost token, and finalised when the last one closes. Login
// state is per process and token, so once one Token is logged in the
// token no longer checks PINs; Open therefore compares a second Token's
// PIN with the first's itself.
//
// A Token is safe for concurrent use. It keeps a pool of at most
// Config.MaxSessions logged-in read/write sessions; operations wait for a
// free one, or for their context. A session the module reports dead
// (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN)
// is dropped, never reused; the operation is retried once on a fresh
// session, which logs in again and looks the key up again (checking that
// it is the same key, see below), because a module may renumber object
// handles after a logout. [Token.Healthy] is a cheap liveness check for a
// watchdog, and [Token.Status] says whether the token is healthy, lost or
// failed, and since when.
//
// # Failures and recovery
//
// A token can go away while the agent serves: a USB token is pulled, a
// network HSM restarts or becomes unreachable, SoftHSM's token directory
// disappears. keyward keeps serving the secrets it has unwrapped; the
// Token notices the loss and recovers by itself, without a restart and
// without the caller opening it again.
//
// The operation or health check that meets the loss notices it:
// CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT,
// CKR_TOKEN_NOT_RECOGNIZED, CKR_SLOT_ID_INVALID,
// CKR_CRYPTOKI_NOT_INITIALIZED, or CKR_GENERAL_ERROR from any call but
// C_Decrypt (where SoftHSM uses it for a failed AES-GCM tag); a session
// that dies again right after it was opened; a key that cannot be found
// again; a token that no longer answers C_GetTokenInfo; a health check
// unanswered for a second. The Token is then lost ([StateLost]): Wrap
// and Unwrap fail at once with an error wrapping [ErrUnavailable] instead
// of calling the module, and so does Healthy unless a recovery attempt it
// runs succeeds.
//
// Recovery re-initialises the module (C_Finalize, C_Initialize): SoftHSM
// reads its token directory only in C_Initialize, and a network HSM's
// client library may keep a broken connection until then. Healthy starts
// an attempt and waits for it (within its context); an operation starts
// one and fails without waiting. At most one attempt runs per module: the
// first at once, then after 0.5 s, doubling to 5 s while they fail. An
// attempt waits until no call is in flight on the module (C_Finalize is
// undefined while another thread is inside it), and afterwards re-attaches
// every Token open on the module, lost or not, since all their sessions
// are gone: each selects its token again by the URI's attributes and the
// serial number it had (slot ids can change), refuses to log in if the
// PIN is locked or on its last attempt, logs in with the PIN it keeps,
// finds the key by the label and id it had, and decrypts its canary, a
// random data key it wrapped at Open, to prove the key is the same key.
// Under a different key AES-GCM would only refuse old blobs, but new
// wraps would be made under a key that cannot unwrap the store: so a
// token that comes back with another serial number, or with another key
// under the same label and id, is refused with [ErrKeyChanged]. The Token
// stays lost and keeps trying, in case the original returns. KeyID never
// changes.
//
// A token that refuses the PIN once it is back (CKR_PIN_INCORRECT,
// CKR_PIN_LOCKED, CKR_PIN_EXPIRED) leaves the Token failed
// ([StateFailed]): it does not try again, since every attempt counts
// towards locking the PIN. Logins are serialised per module, so a burst
// of sessions that find themselves logged out spends one attempt.
//
// Methods that take a context return by its end. A module call that
// hangs cannot be interrupted; it runs in a goroutine its caller stops
// waiting for, at most Config.MaxSessions operations and one health check
// per Token. A re-initialisation waits for them to return, and so does
// Close.
//
// # Limitations
//
//   - cgo is required (the module is loaded with dlopen), on Linux with
//     glibc; other builds compile but Open and Init fail.
//   - The token must offer CKM_AES_GCM for C_Encrypt and C_Decrypt
//     (otherwise [ErrMechanism] lists the AES mechanisms it has), and
//     CKM_AES_KEY_GEN for Init.
//   - Tokens with a PIN pad (protected authentication path) and
//     context-specific logins are not supported.
//   - SoftHSM reports a failed GCM tag as CKR_GENERAL_ERROR, so that code
//     from C_Decrypt counts as an integrity failure.
//   - Two Init calls racing on one token can create two keys with the same
//     label; Open then asks for id= in the URI.
//   - Open does not log in automatically when the token reports that one
//     PIN attempt is left ([ErrPINLocked]): a restart loop must not lock
//     the token.
//   - Re-initialising a module disturbs every Token on it: their
//     operations wait for the attempt, and a Token lost for good (say,
//     its key was deleted) makes the others re-attach every 5 s.
//   - When something else in the process initialised the module
//     (CKR_CRYPTOKI_ALREADY_INITIALIZED at Open), recovery may not call
//     C_Finalize: it only opens new sessions, which does not bring back a
//     SoftHSM token directory.
//   - A module call that never returns keeps recovery, and Close, waiting
//     for it; only a restart of the process helps then.
package hsm
