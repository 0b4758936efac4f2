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
// context per module file, shared by every Token on it and finalised when
// the last one closes. Login state is per process and token, so once one
// Token is logged in the token no longer checks PINs; Open therefore
// compares a second Token's PIN with the first's itself.
//
// A Token is safe for concurrent use. It keeps a pool of at most
// Config.MaxSessions logged-in read/write sessions; operations wait for a
// free one, or for their context. A session the module reports dead
// (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_TOKEN_NOT_PRESENT,
// CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR, CKR_USER_NOT_LOGGED_IN) is dropped,
// never reused; the operation is retried once on a fresh session, which
// logs in again and looks the key up again, because a module may renumber
// object handles after a logout. [Token.Healthy] is a cheap liveness check
// for a watchdog.
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
package hsm
