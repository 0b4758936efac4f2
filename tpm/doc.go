// Package tpm protects keyward's data keys, and other secrets of up to 128
// bytes, with a TPM 2.0, so that they can be read only on this TPM and
// only while the PCRs the operator chose hold the values they had at
// sealing time (default PCR 7, the Secure Boot state). It uses go-tpm's
// tpm2 API on any transport: /dev/tpmrm0 or a swtpm socket
// ([OpenDevice]), or a simulator.
//
// Two types satisfy the store package's Backend interface. A [*StoreKey]
// seals one store key with the TPM and wraps data keys under it in
// software: opening it costs the same few TPM commands however many
// secrets the store holds. A [*Device] seals every data key as its own TPM
// object (the per-secret scheme), which costs one unseal per secret
// version at start; it stays so that stores made that way can be read and
// moved to a StoreKey, and it seals small secrets such as an HSM PIN.
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
// # Store key
//
// [NewStoreKey] generates a 256-bit AES key with crypto/rand, the store
// key, and seals it with [Device.Seal] like any other secret: to the
// Device's PCR selection and PIN, under its storage key, behind a label
// that keeps it apart from the Device's other sealed secrets. Only the
// sealed blob is saved. [OpenStoreKey] unseals it once, with
// [Device.Unseal]; after that [StoreKey.Wrap] and [StoreKey.Unwrap] use
// AES-256-GCM in software (random 96-bit nonce, 128-bit tag, a fixed
// format byte and label as additional data; format in docs/tpm.md), and
// the TPM is not used again until [StoreKey.Reseal] or [StoreKey.Check].
// A wrapped data key that was modified, truncated or wrapped under
// another store key fails to authenticate: an [*IntegrityError].
//
// What this trades against the per-secret scheme:
//
//   - The store key never touches the disk unsealed. A stolen disk image,
//     or the disk booted into another state, still needs this TPM in this
//     boot state (and the PIN), as before.
//   - The running agent holds the store key in memory. It already holds
//     every plaintext secret there, so whoever can read its memory loses
//     nothing more today. What they gain is the power to read secrets put
//     into a copy of the store later, until the store is moved to a new
//     store key; under the per-secret scheme they would need the TPM again.
//   - The key is kept in a locked buffer (internal/locked: outside the Go
//     heap, mlocked where RLIMIT_MEMLOCK allows, left out of core dumps)
//     and cleared by [StoreKey.Close]. crypto/aes and crypto/hmac keep
//     state derived from it (the AES key schedule, from which the key can
//     be recomputed) on the Go heap, which keyward can neither lock nor
//     clear; the store's data keys have the same limit.
//   - The TPM checks nothing per data key: fixedTPM and the PCR policy
//     guard the store key, the GCM tag guards each wrapped key.
//   - Random nonces are safe for far more wraps (2^32) than a store makes.
//
// # Concurrency and lifetime
//
// A Device runs one TPM command sequence at a time and is safe for
// concurrent use; so is a StoreKey, whose Wrap and Unwrap run in parallel
// without the TPM. When the TPM is reset under a running Device (swtpm
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
