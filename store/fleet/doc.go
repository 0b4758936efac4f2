// Package fleet is keyward's provisioning format: how a workstation with no
// HSM seals a secret for many hosts, and how a host checks what it is given.
// It holds the host's public [Recipient] file, the [ImportKey] it is made
// from, the signed import [Bundle], and the provisioners' signing keys
// ([ProvisionerKey], [ParsePrivateKeyFile]). It knows nothing of the store:
// the store keeps the import key (wrapped by its backend) and turns a bundle
// into an envelope (store/importkey.go, store/import.go).
//
// # Model
//
// Each host has an import key: a hybrid post-quantum HPKE key pair
// (RFC 9180, base mode; KEM MLKEM768-X25519, KDF HKDF-SHA256, AEAD
// AES-256-GCM: the suite of the recovery kit, package store/recovery),
// derived by [NewImportKey] from a 32-byte seed and bound to the host: the
// derivation takes the host id and the key's creation time, so the same
// seed on another host is another key. The seed is what the host's backend
// wraps, like a data key. The host publishes a [Recipient]: its public key,
// host id, hostname, backend key id and creation time.
//
// A provisioner (an SRE's workstation) seals a value to a recipient with
// [Seal], which gives a [Bundle]: the header (host, recipient key, the
// provisioner's public key, a counter, the secret's name, expiry and
// exchange-credential attributes), the HPKE ciphertext of the value with
// the header as additional data, and the provisioner's signature over all
// of it (Ed25519, or ECDSA P-256 over SHA-256 as r||s). The host checks
// the addressee, that the provisioner is one it lists, and the signature
// ([Bundle.Verify]), then opens the value with its import key
// ([ImportKey.Open]). The counter orders the bundles of one secret (the
// sealing time in nanoseconds): the store refuses one that is not newer
// than the last it imported for the name, so an old bundle replayed later
// changes nothing.
//
// # Trust
//
// HPKE base mode does not authenticate the sender: anyone can seal to a
// public key. The signature does, so what a host accepts is what a listed
// provisioner sealed for it. A recipient file is a public key the
// provisioner must know to be genuine: collect it over an authenticated
// channel (SSH with known host keys, as Ansible does) and compare its
// fingerprint ([Recipient.ID]) with what keyward enroll printed on the host.
// Whoever holds a provisioner key can sign bundles for every host that
// lists it, but cannot open bundles or envelopes: a workstation holds no
// import key. Bundles, like envelopes, are safe to copy and keep.
//
// # Limits
//
// Values are at most [MaxValueSize] bytes; a bundle at most [MaxBundleSize]
// bytes, a recipient file [MaxRecipientSize]; every parser is strict
// (Marshal(Parse(b)) == b) and fuzzed. A counter is a clock reading: a
// workstation whose clock is behind the last one that sealed a secret for a
// host makes bundles the host refuses as older. Memory holding the import
// key's seed is cleared where this package owns it; copies inside
// crypto/hpke cannot be.
//
// # Files
//
//	importkey.go    ImportKey, NewImportKey, the HPKE suite
//	recipient.go    Recipient, ParseRecipient
//	provisioner.go  ProvisionerKey, signatures, private key files
//	bundle.go       Bundle, Seal, ParseBundle, Verify, Open
//
// Values of the package's types are safe for concurrent use once made.
package fleet
