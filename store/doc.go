// Package store keeps secrets at rest: one envelope file per secret
// version, AES-256-GCM under a fresh data key, the data key wrapped by a
// [Backend] whose root key never leaves the hardware (an HSM key, or a
// store key the TPM keeps sealed; package store/backend opens them). It
// owns the on-disk format, the directory's transactions, the naming of
// files, and the secret lifecycle (which version is served until when).
//
// # On disk
//
// A store is a directory (default /var/lib/keyward, 0700, owned by the
// agent's user):
//
//	binance+mm-prod@3.kwe       an envelope (envelope.go, docs/envelope.md): header + ciphertext;
//	                            '/' in a name is '+', the version follows '@'
//	binance+mm-prod@3.kwe.kwr   its data key sealed to the recovery kit (recoverykit.go)
//	binance+mm-prod@3.kwe.kwf   its data key sealed to the fleet recovery kit
//	recovery.kit                the kit's public part; recovery.kit.binding: its hash, wrapped by the backend
//	fleet.kit                   the fleet kit the .kwf files are sealed to (the configuration names it)
//	import-key                  the host's import key for fleet bundles (importkey.go): its seed wrapped by the backend
//	import-counters             the counter of the last bundle imported for each secret (import.go)
//	root-key, tpm-store-key     key records (keyfile.go): which root key the envelopes are under
//	nonces/                     nonce marks (nonce.go): per API key, above every nonce the agent issued
//	.lock                       the flock every writer takes
//	.tmp-*                      a writer's temporary file, removed at the next lock
//	*.next, .rewrap-committed   a transaction in progress (rewrap.go)
//
// An envelope's header is the AAD of its ciphertext and binds the name,
// version, times, backend key id and host (a hash of the machine id), so a
// file renamed, replayed or copied to another host does not decrypt.
//
// # Writes, locks and transactions
//
// Reads take no lock. Every write takes the store's exclusive flock
// (Store.lock), which first removes stale temporary files and finishes or
// discards an interrupted transaction. A new envelope is written to a
// temporary file, synced, linked into place (never replacing anything) and
// the directory synced: a crash leaves the old state or the new one. Only
// the directory's owner may write (checkWriter): files root wrote would be
// unreadable to the agent.
//
// A change to many files — every envelope re-wrapped (Rewrap, RewrapTo),
// restored (Restore), a recovery kit made (InitRecovery), a fleet kit
// adopted (AdoptFleetKit), a batch of bundles imported (Import) — is one
// transaction: the new files are written beside the old as .next, then the
// commit marker, then each .next renamed over its file. Killed before the
// marker, the old store stands (the .next files go at the next lock);
// killed after it, the next lock finishes it. Key records move in the same
// transaction as the envelopes they open, and [ReadKeyRecord] finishes a
// committed transaction before it reads one.
//
// # Lifecycle
//
// [Store.Secrets] groups the envelopes by secret and computes, once, each
// version's end ([VersionInfo.Until]) and its [State] at a time: the
// current version, one in the grace period its successor's rotation gave
// it, retired, expired, or damaged (unreadable, or from another host). A
// version never outlives its successor, and under a damaged successor it
// is not served (its grace is unknown). The agent's cache, keyward list
// and status, and [Store.Prune] all use this one computation.
//
// # Files
//
//	store.go       Store, New, Init, Put, Open, List, Remove, RemoveVersion, names and locks
//	envelope.go    the envelope format: Parse, Marshal, Header
//	seal.go        seal and open one envelope with a backend
//	lifecycle.go   Secrets, SecretInfo, VersionInfo, State, Prune
//	rewrap.go      transactions: Rewrap, RewrapTo, FinishPending
//	keyfile.go     key records
//	recoverykit.go the recovery kits: InitRecovery, Kit, AdoptFleetKit, RecoveryKit, Restore
//	nonce.go       NonceMark, SetNonceMark: exchange nonces that grow across restarts
//	importkey.go   the host's import key: Enroll, ImportKey
//	import.go      bundles made into versions: Import, ImportInbox, the replay counters
//	secret.go      Secret: plaintext in locked memory
//	host.go        the host binding
//	backend.go     the Backend contract
//
// Subpackages: backend (opens the configured backend), recovery (the kit's
// cryptography), fleet (recipient files, bundles and provisioner keys),
// storetest (the conformance suite and test stores).
//
// A Store is safe for concurrent use by goroutines and by processes.
package store
