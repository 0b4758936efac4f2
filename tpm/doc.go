// Package tpm seals keyward's data keys, and other secrets of up to 128
// bytes, with a TPM 2.0, so that they unseal only on this TPM and only
// while the PCRs the operator chose hold the values they had at sealing
// time (default PCR 7, the Secure Boot state). A [*Device] satisfies the
// store package's Backend interface. It uses go-tpm's tpm2 API on any
// transport: /dev/tpmrm0 or a swtpm socket ([OpenDevice]), or a simulator.
//
// # Security model
//
// [Open] creates the standard ECC P-256 storage root key (SRK) under the
// owner hierarchy once and keeps it loaded (or uses a persistent one,
// Config.PersistentSRK). The SRK is derived from the TPM's owner seed: it
// is the same after every boot, and its Name gives the [Device.KeyID].
//
// [Device.Seal] creates a keyed-hash sealed data object under the SRK with
// the attributes fixedTPM and fixedParent (it can never be duplicated to
// another TPM or parent), adminWithPolicy and not userWithAuth (no
// password or HMAC session can use it: only a policy session), and the
// auth policy TPM2_PolicyPCR(selection, digest of the current values),
// followed by TPM2_PolicyAuthValue when a PIN is configured, in which
// case the PIN is the object's auth value and failures count towards the
// TPM's dictionary-attack lockout (objects without a PIN are noDA). The
// policy digest is computed in software (tpm2.PolicyCalculator); the tests
// check it against a trial session. [Device.Unseal] loads the object and
// unseals it through a policy session.
//
// Both commands that carry secrets run in sessions salted with the SRK
// and AES-128-CFB parameter encryption: TPM2_Create encrypts the data and
// the PIN on their way in, TPM2_Unseal encrypts the data on its way out,
// and the PIN itself never crosses the bus (only an HMAC keyed with it and
// the salted session key, which a bus observer cannot compute, so it
// cannot guess the PIN offline either). Every session and transient
// object is flushed on every path.
//
// The blob Seal returns (see [Blob] and docs/tpm.md) is not secret: the
// object's sensitive part is encrypted and integrity-protected under the
// SRK. It also records the PCR values at sealing time and the SRK's Name,
// so that a failure names the PCRs that changed ([*PolicyError]) or says
// that the blob comes from another TPM ([*NotThisTPMError]). keyward
// checks those records against the object's policy before using the TPM,
// so a modified blob is an [*IntegrityError] or a [*ParseError].
//
// Whoever can run code as the keyward user on the host in the sealed
// boot state can unseal, as keyward does: the TPM binds secrets to a
// machine and its boot state, not to a process. An attacker who copies the
// disk, boots another kernel or edits Secure Boot variables gets blobs
// that do not unseal.
//
// # Concurrency and lifetime
//
// A Device runs one TPM command sequence at a time and is safe for
// concurrent use. When the TPM is reset under a running Device (swtpm
// restarted, a resume without resource manager) and the SRK handle goes
// stale, the Device creates the SRK again, checks that its Name is
// unchanged, and retries once. Commands the TPM answers with
// TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING are resent after a pause.
//
// # Limitations
//
//   - Only the SHA-256 PCR bank, PCRs 0 to 23.
//   - The SRK's public key, which salts the sessions, is trusted as the
//     TPM reports it at Open: an active attacker on the TPM bus at that
//     moment could substitute their own. The KeyID recorded in every
//     envelope changes then, and the store refuses to unwrap.
//   - go-tpm keeps transient copies of the data and the PIN in buffers it
//     does not clear; keyward clears its own copies.
//   - Seal holds at most 128 bytes: a longer secret (an HSM PIN over 128
//     bytes) cannot be sealed directly.
//   - The owner hierarchy must have an empty password unless
//     Config.PersistentSRK names a storage key made beforehand.
package tpm
