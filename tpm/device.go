package tpm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const (
	// DataKeySize is the only data key size Wrap accepts: an AES-256 key.
	DataKeySize = 32

	// MaxSealSize is the most bytes Seal accepts (a TPM keyed-hash object
	// holds at most 128).
	MaxSealSize = 128

	// MaxPINLen is the longest PIN accepted, in bytes: a TPM limits an
	// object's auth value to the size of its name hash (SHA-256).
	MaxPINLen = 32

	// nonceSize is the caller nonce size of every session.
	nonceSize = 32
)

// A Config says which TPM a [Device] uses and how it seals. The zero value
// of each optional field means its default.
type Config struct {
	// TPM is an open transport to the TPM (required): [OpenDevice] for
	// /dev/tpmrm0 or a swtpm socket, or a simulator in tests. The Device
	// does not close it; close it after the Device.
	TPM transport.TPM

	// PCRs is the SHA-256 PCR selection new blobs are sealed to. The zero
	// Selection means [DefaultPCRs] (PCR 7, the Secure Boot state).
	PCRs Selection

	// PIN, when not empty, is required besides the PCR state to unseal
	// what this Device seals: it becomes the sealed objects' auth value
	// and the policy adds TPM2_PolicyAuthValue. Wrong PINs count towards
	// the TPM's dictionary-attack lockout. At most [MaxPINLen] bytes, not
	// ending in a zero byte (the TPM strips trailing zeros). Open copies
	// it and clears its copy at Close; the caller should clear its own.
	PIN []byte

	// PersistentSRK is the persistent handle (0x81000000 to 0x81ffffff)
	// of an existing storage primary key with an empty auth value, for
	// TPMs whose owner hierarchy has a password. 0 means: create the
	// standard ECC P-256 SRK (tpm2.ECCSRKTemplate) under the owner
	// hierarchy at Open, with an empty owner password.
	PersistentSRK uint32
}

// A Device seals data keys and other small secrets with a TPM 2.0, bound
// to its storage key and to the state of the configured PCRs. It satisfies
// the store package's Backend interface.
//
// A Device is safe for concurrent use: it runs one TPM command sequence
// at a time (a TPM is serial anyway). Every method that talks to the TPM,
// except Close, takes a context: it gives up waiting for its turn when the
// context is done, and a sequence already started runs to its end (TPM
// commands cannot be cancelled). The caller must not send other
// commands on the same transport while the Device is open. Methods called
// after Close return [ErrClosed].
type Device struct {
	tpm        transport.TPM
	sel        Selection
	persistent bool
	srkName    []byte // Name of the storage key; fixed at Open
	keyID      string

	sem chan struct{} // one slot: held while talking to the TPM

	// Guarded by sem.
	closed bool
	pin    []byte
	srk    tpm2.TPMHandle
	srkPub tpm2.TPMTPublic
}

// Open loads the storage key (creating the SRK, or reading
// Config.PersistentSRK) once, for the Device's life, and returns the
// Device. It fails with an error wrapping [ErrLockout] when the owner
// hierarchy is locked out, and says what to do when the owner hierarchy
// has a password.
func Open(cfg Config) (*Device, error) {
	if cfg.TPM == nil {
		return nil, errors.New("tpm: Config.TPM is required: open the TPM with OpenDevice first")
	}
	if n := len(cfg.PIN); n > MaxPINLen {
		return nil, fmt.Errorf("tpm: Config.PIN is %d bytes, longer than %d", n, MaxPINLen)
	} else if n > 0 && cfg.PIN[n-1] == 0 {
		return nil, errors.New("tpm: Config.PIN ends with a zero byte, which the TPM would ignore")
	}
	if h := cfg.PersistentSRK; h != 0 && (h < 0x81000000 || h > 0x81ffffff) {
		return nil, fmt.Errorf("tpm: Config.PersistentSRK 0x%08x is not a persistent handle (0x81000000 to 0x81ffffff)", h)
	}
	d := &Device{
		tpm:        retryTPM{cfg.TPM},
		sel:        cfg.PCRs,
		persistent: cfg.PersistentSRK != 0,
		sem:        make(chan struct{}, 1),
	}
	if d.sel.IsZero() {
		d.sel = mustParseSelection(DefaultPCRs)
	}
	name, err := d.loadSRK(cfg.PersistentSRK)
	if err != nil {
		return nil, err
	}
	d.srkName = name
	d.keyID = keyIDOf(name)
	if len(cfg.PIN) > 0 {
		d.pin = bytes.Clone(cfg.PIN)
	}
	return d, nil
}

// keyIDOf returns the KeyID of a storage key with the given Name.
func keyIDOf(name []byte) string {
	return "tpm:" + hex.EncodeToString(name[:min(8, len(name))])
}

// loadSRK reads the persistent storage key at handle, or creates the ECC
// SRK when handle is 0, and sets d.srk and d.srkPub. It returns the key's
// Name, which it checks against its public area.
func (d *Device) loadSRK(handle uint32) ([]byte, error) {
	if handle != 0 {
		rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm: read the storage key at persistent handle 0x%08x "+
				"(list them with `tpm2_getcap handles-persistent`; or set PersistentSRK to 0 to create an SRK): %w", handle, err)
		}
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			return nil, fmt.Errorf("tpm: parse the public area of 0x%08x: %w", handle, err)
		}
		a := pub.ObjectAttributes
		if !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM || !a.FixedParent ||
			(pub.Type != tpm2.TPMAlgECC && pub.Type != tpm2.TPMAlgRSA) {
			return nil, fmt.Errorf("tpm: the key at persistent handle 0x%08x is not a storage key "+
				"(want an RSA or ECC key that is restricted, decrypt-only, fixedTPM and fixedParent)", handle)
		}
		name, err := checkName(pub, rsp.Name)
		if err != nil {
			return nil, err
		}
		d.srk, d.srkPub = tpm2.TPMHandle(handle), *pub
		return name, nil
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(d.tpm)
	switch {
	case errors.Is(err, tpm2.TPMRCLockout):
		return nil, fmt.Errorf("%w: the owner hierarchy is locked out after wrong owner passwords; "+
			"wait, or clear it with `tpm2_dictionarylockout --clear-lockout`: %w", ErrLockout, err)
	case errors.Is(err, tpm2.TPMRCBadAuth), errors.Is(err, tpm2.TPMRCAuthFail):
		return nil, fmt.Errorf("tpm: create the storage key: the TPM owner hierarchy has a password; "+
			"make a persistent SRK (`tpm2_createprimary -C o -P OWNERPW -G ecc -c srk.ctx && "+
			"tpm2_evictcontrol -C o -P OWNERPW -c srk.ctx 0x81000001`) and set PersistentSRK to 0x81000001: %w", err)
	case err != nil:
		return nil, fmt.Errorf("tpm: create the storage key: %w", err)
	}
	flush := func() { tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(d.tpm) }
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush()
		return nil, fmt.Errorf("tpm: parse the storage key's public area: %w", err)
	}
	name, err := checkName(pub, rsp.Name)
	if err != nil {
		flush()
		return nil, err
	}
	d.srk, d.srkPub = rsp.ObjectHandle, *pub
	return name, nil
}

// checkName returns the Name of pub, and fails if the TPM reported another.
func checkName(pub *tpm2.TPMTPublic, got tpm2.TPM2BName) ([]byte, error) {
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: compute a storage key name: %w", err)
	}
	if len(name.Buffer) < 8 || !bytes.Equal(name.Buffer, got.Buffer) {
		return nil, errors.New("tpm: the TPM reported a storage key name that does not match its public area")
	}
	return name.Buffer, nil
}

// do runs fn with exclusive use of the TPM, unless ctx is done before its
// turn comes. When fn fails because the created SRK is no longer loaded
// (the TPM was reset under a running Device), do creates it again, checks
// that its Name did not change, and runs fn once more.
func (d *Device) do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tpm: %w", err)
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("tpm: waiting for the TPM: %w", ctx.Err())
	}
	defer func() { <-d.sem }()
	if d.closed {
		return ErrClosed
	}
	err := fn()
	if err == nil || d.persistent || d.srkLoaded() {
		return err
	}
	stale := d.srk
	name, rerr := d.loadSRK(0)
	if rerr != nil {
		return fmt.Errorf("%w (and the storage key, no longer loaded, could not be created again: %v)", err, rerr)
	}
	if !bytes.Equal(name, d.srkName) {
		tpm2.FlushContext{FlushHandle: d.srk}.Execute(d.tpm)
		d.srk = stale
		return fmt.Errorf("%w: the TPM's storage key changed while keyward ran (owner hierarchy cleared?); it is now %s, was %s",
			ErrNotThisTPM, keyIDOf(name), d.keyID)
	}
	return fn()
}

// srkLoaded reports whether d.srk still names the storage key.
func (d *Device) srkLoaded() bool {
	rsp, err := tpm2.ReadPublic{ObjectHandle: d.srk}.Execute(d.tpm)
	return err == nil && bytes.Equal(rsp.Name.Buffer, d.srkName)
}

// KeyID returns "tpm:" and the hex of the first 8 bytes of the storage
// key's Name (its name algorithm and the start of its public area's
// hash). It is stable for one TPM and storage key: it changes when the
// owner hierarchy is cleared. It contains no secret.
func (d *Device) KeyID() string { return d.keyID }

// PCRSelection returns the selection new blobs are sealed to.
func (d *Device) PCRSelection() Selection { return d.sel }

// Wrap seals dataKey, which must be [DataKeySize] bytes; see [Device.Seal].
func (d *Device) Wrap(ctx context.Context, dataKey []byte) ([]byte, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("tpm: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	return d.Seal(ctx, dataKey)
}

// Unwrap unseals a blob made by Wrap; see [Device.Unseal]. It also fails
// when the blob holds anything but a [DataKeySize]-byte key.
func (d *Device) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	k, err := d.Unseal(ctx, wrapped)
	if err != nil {
		return nil, err
	}
	if len(k) != DataKeySize {
		clear(k)
		return nil, fmt.Errorf("tpm: the blob holds %d bytes, not a %d-byte data key", len(k), DataKeySize)
	}
	return k, nil
}

// Seal seals 1 to [MaxSealSize] bytes of data to this TPM's storage key and
// the current values of the Device's PCR selection (and its PIN, if any),
// and returns the blob (format in docs/tpm.md). The data crosses the bus
// encrypted by a session salted with the storage key.
func (d *Device) Seal(ctx context.Context, data []byte) ([]byte, error) {
	if len(data) == 0 || len(data) > MaxSealSize {
		return nil, fmt.Errorf("tpm: cannot seal %d bytes; want 1 to %d", len(data), MaxSealSize)
	}
	var blob []byte
	err := d.do(ctx, func() (err error) {
		blob, err = d.sealLocked(data, d.sel)
		return err
	})
	return blob, err
}

// Unseal returns the data sealed in blob. It fails with a [*ParseError]
// for a blob that is not a TPM-sealed blob, [*IntegrityError] for a
// modified one, [*NotThisTPMError] for one sealed by another TPM,
// [*PolicyError] when its PCRs changed, and errors wrapping [ErrBadPIN] or
// [ErrLockout]. The data crosses the bus encrypted by a session salted
// with the storage key. The caller should clear the result after use.
func (d *Device) Unseal(ctx context.Context, blob []byte) ([]byte, error) {
	bl, needPIN, err := d.parse(blob)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = d.do(ctx, func() (err error) {
		out, err = d.unsealLocked(bl, needPIN)
		return err
	})
	return out, err
}

// Reseal unseals blob under its policy, which must still hold, and seals
// the data again to the current values of sel (the zero Selection: the
// blob's own selection) and the Device's PIN. Run it before a planned
// change of the measured boot state, with a selection that the change
// leaves alone, and again after it, with the selection wanted; see
// docs/tpm.md. The data never leaves the Device.
func (d *Device) Reseal(ctx context.Context, blob []byte, sel Selection) ([]byte, error) {
	bl, needPIN, err := d.parse(blob)
	if err != nil {
		return nil, err
	}
	if sel.IsZero() {
		sel = bl.PCRs
	}
	var out []byte
	err = d.do(ctx, func() error {
		data, err := d.unsealLocked(bl, needPIN)
		if err != nil {
			return err
		}
		defer clear(data)
		out, err = d.sealLocked(data, sel)
		return err
	})
	return out, err
}

// PCRs returns the current SHA-256 values of the PCRs of sel (the zero
// Selection: the Device's selection), by PCR index.
func (d *Device) PCRs(ctx context.Context, sel Selection) (map[int][]byte, error) {
	if sel.IsZero() {
		sel = d.sel
	}
	var vals [][]byte
	err := d.do(ctx, func() (err error) {
		vals, err = d.readPCRs(sel)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[int][]byte, len(vals))
	for i, p := range sel.PCRs() {
		out[p] = vals[i]
	}
	return out, nil
}

// Check returns the PCRs of blob's selection whose values differ now from
// those at sealing time, ascending; none means the PCR policy holds. It
// fails like Unseal for a blob that is malformed, modified, or sealed by
// another TPM, but does not unseal.
func (d *Device) Check(ctx context.Context, blob []byte) (changed []int, err error) {
	bl, _, err := d.parse(blob)
	if err != nil {
		return nil, err
	}
	err = d.do(ctx, func() (err error) {
		changed, err = d.changed(bl)
		return err
	})
	return changed, err
}

// Healthy checks that the TPM answers and holds the storage key, without
// a cryptographic operation; it is cheap enough for a watchdog. A storage
// key lost to a TPM reset is created again.
func (d *Device) Healthy(ctx context.Context) error {
	return d.do(ctx, func() error {
		if !d.srkLoaded() {
			return errors.New("tpm: the storage key is not loaded")
		}
		return nil
	})
}

// Close flushes the storage key (unless it is persistent) and clears the
// PIN. It does not close the transport. Further calls return nil.
func (d *Device) Close() error {
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	if d.closed {
		return nil
	}
	d.closed = true
	clear(d.pin)
	d.pin = nil
	if d.persistent {
		return nil
	}
	if _, err := (tpm2.FlushContext{FlushHandle: d.srk}).Execute(d.tpm); err != nil {
		return fmt.Errorf("tpm: flush the storage key: %w", err)
	}
	return nil
}

// parse parses blob and checks it against this Device before any TPM
// command: its PCR values must match the object's policy, its attributes
// must be those Seal sets, and its storage key must be this Device's. It
// reports whether the blob needs the PIN.
func (d *Device) parse(blob []byte) (*Blob, bool, error) {
	bl, err := ParseBlob(blob)
	if err != nil {
		return nil, false, err
	}
	integrity := func(reason string) (*Blob, bool, error) {
		return nil, false, &IntegrityError{KeyID: d.keyID, Reason: reason}
	}
	pub := bl.pub
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return integrity("the sealed object's name algorithm is not SHA-256")
	}
	var needPIN bool
	switch pol := pub.AuthPolicy.Buffer; {
	case bytes.Equal(pol, policyDigest(bl.PCRs, bl.Values, false)):
	case bytes.Equal(pol, policyDigest(bl.PCRs, bl.Values, true)):
		needPIN = true
	default:
		return integrity("the recorded PCR selection and values do not match the sealed object's policy")
	}
	if !bytes.Equal(tpm2.Marshal(pub.ObjectAttributes), tpm2.Marshal(sealAttributes(needPIN))) {
		return integrity("the sealed object's attributes are not those keyward seals with")
	}
	if kh, err := pub.Parameters.KeyedHashDetail(); err != nil || kh.Scheme.Scheme != tpm2.TPMAlgNull {
		return integrity("the sealed object has a signing or derivation scheme")
	}
	if !bytes.Equal(bl.SRKName, d.srkName) {
		return nil, false, &NotThisTPMError{Sealed: keyIDOf(bl.SRKName), This: d.keyID}
	}
	return bl, needPIN, nil
}
