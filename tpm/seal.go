package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// sealAttributes returns the attributes of every sealed data object:
// fixedTPM and fixedParent (it can be neither duplicated nor moved), and
// adminWithPolicy without userWithAuth, so that only a policy session
// satisfying its PCR policy can use it. Without a PIN there is no auth
// value to guess, so failures must not feed the dictionary-attack counter
// (noDA); with a PIN they must.
func sealAttributes(pin bool) tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:        true,
		FixedParent:     true,
		AdminWithPolicy: true,
		NoDA:            !pin,
	}
}

// policyDigest computes, in software, the policy digest of
// TPM2_PolicyPCR(sel, SHA-256 of the concatenated values), followed by
// TPM2_PolicyAuthValue when pin is set. A trial session on a TPM gives the
// same digest (see the tests).
func policyDigest(sel Selection, values [][]byte, pin bool) []byte {
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		panic(err) // SHA-256 is always available
	}
	if err := (tpm2.PolicyPCR{Pcrs: sel.tpml(), PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}}).Update(calc); err != nil {
		panic(err)
	}
	if pin {
		if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
			panic(err)
		}
	}
	return calc.Hash().Digest
}

// sealLocked seals data to the current values of sel. The caller holds
// d.sem.
func (d *Device) sealLocked(data []byte, sel Selection) (blob []byte, err error) {
	values, err := d.readPCRs(sel)
	if err != nil {
		return nil, err
	}
	pin := len(d.pin) > 0
	tmpl := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: sealAttributes(pin),
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: policyDigest(sel, values, pin)},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
	// The session is salted with the SRK, so only the TPM learns its key,
	// and encrypts the first command parameter, inSensitive: the data and
	// the PIN never cross the bus in clear.
	sess, closeSess, err := tpm2.HMACSession(d.tpm, tpm2.TPMAlgSHA256, nonceSize,
		tpm2.Salted(d.srk, d.srkPub), tpm2.AESEncryption(128, tpm2.EncryptIn))
	if err != nil {
		return nil, fmt.Errorf("tpm: start a session salted with the storage key: %w", err)
	}
	defer flushed(&err, closeSess, "session")
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: d.srk, Name: tpm2.TPM2BName{Buffer: d.srkName}, Auth: sess},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: d.pin},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data}),
		}},
		InPublic: tpm2.New2B(tmpl),
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: create the sealed object: %w", err)
	}
	bl := &Blob{
		PCRs:    sel,
		Values:  values,
		SRKName: d.srkName,
		Public:  rsp.OutPublic.Bytes(),
		Private: rsp.OutPrivate.Buffer,
	}
	blob = bl.Marshal()
	got, err := ParseBlob(blob)
	if err != nil {
		return nil, fmt.Errorf("tpm: the TPM returned an object keyward cannot read back: %w", err)
	}
	if !bytes.Equal(got.pub.AuthPolicy.Buffer, tmpl.AuthPolicy.Buffer) ||
		!bytes.Equal(tpm2.Marshal(got.pub.ObjectAttributes), tpm2.Marshal(tmpl.ObjectAttributes)) {
		return nil, errors.New("tpm: the TPM returned a sealed object with another policy or attributes than requested")
	}
	return blob, nil
}

// unsealLocked loads bl under the storage key and unseals it through a
// policy session. The caller holds d.sem and has checked bl with d.parse.
func (d *Device) unsealLocked(bl *Blob, needPIN bool) (data []byte, err error) {
	defer func() {
		if err != nil { // a flush failed after the unseal
			clear(data)
			data = nil
		}
	}()
	if needPIN && len(d.pin) == 0 {
		return nil, fmt.Errorf("%w: the secret was sealed with a PIN and none is configured", ErrBadPIN)
	}
	lrsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: d.srk, Name: tpm2.TPM2BName{Buffer: d.srkName}, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: bl.Private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](bl.Public),
	}.Execute(d.tpm)
	if err != nil {
		var f1 tpm2.TPMFmt1Error
		if errors.As(err, &f1) {
			if isParam, _ := f1.Parameter(); isParam {
				return nil, &IntegrityError{KeyID: d.keyID, Reason: "the TPM refused to load the sealed object", Err: err}
			}
		}
		return nil, fmt.Errorf("tpm: load the sealed object: %w", err)
	}
	defer flushed(&err, func() error {
		_, err := tpm2.FlushContext{FlushHandle: lrsp.ObjectHandle}.Execute(d.tpm)
		return err
	}, "sealed object")
	name, err := tpm2.ObjectName(bl.pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: compute the sealed object's name: %w", err)
	}
	if !bytes.Equal(lrsp.Name.Buffer, name.Buffer) {
		return nil, errors.New("tpm: the TPM loaded an object with another name than the blob's")
	}

	// Salted with the SRK, and encrypting the response parameter (the
	// data) under the session key, which with a PIN also depends on it.
	opts := []tpm2.AuthOption{tpm2.Salted(d.srk, d.srkPub), tpm2.AESEncryption(128, tpm2.EncryptOut)}
	if needPIN {
		opts = append(opts, tpm2.Auth(d.pin))
	}
	sess, closeSess, err := tpm2.PolicySession(d.tpm, tpm2.TPMAlgSHA256, nonceSize, opts...)
	if err != nil {
		return nil, fmt.Errorf("tpm: start a policy session salted with the storage key: %w", err)
	}
	defer flushed(&err, closeSess, "policy session")
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: bl.PCRs.tpml()}).Execute(d.tpm); err != nil {
		return nil, fmt.Errorf("tpm: PolicyPCR: %w", err)
	}
	if needPIN {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(d.tpm); err != nil {
			return nil, fmt.Errorf("tpm: PolicyAuthValue: %w", err)
		}
	}
	ursp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: lrsp.ObjectHandle, Name: *name, Auth: sess}}.Execute(d.tpm)
	if err != nil {
		return nil, d.unsealError(bl, needPIN, err)
	}
	data = bytes.Clone(ursp.OutData.Buffer)
	clear(ursp.OutData.Buffer)
	return data, nil
}

// flushed runs flush, and reports its failure in *err unless *err is
// already set. swtpm and TPMs used without a resource manager have no one
// else to flush handles.
func flushed(err *error, flush func() error, what string) {
	if ferr := flush(); ferr != nil && *err == nil {
		*err = fmt.Errorf("tpm: flush the %s: %w", what, ferr)
	}
}

// unsealError translates the TPM's refusal to unseal.
func (d *Device) unsealError(bl *Blob, needPIN bool, err error) error {
	switch {
	case errors.Is(err, tpm2.TPMRCPolicyFail):
		changed, _ := d.changed(bl)
		return &PolicyError{Sealed: bl.PCRs, Changed: changed, Err: err}
	case errors.Is(err, tpm2.TPMRCLockout):
		return d.lockoutError(err)
	case needPIN && (errors.Is(err, tpm2.TPMRCAuthFail) || errors.Is(err, tpm2.TPMRCBadAuth)):
		msg := "the TPM refused the PIN of this sealed secret"
		if da, ok := d.daState(); ok && da.maxTries > 0 {
			switch left := int64(da.maxTries) - int64(da.counter); {
			case left <= 0:
				msg += "; the TPM is now in dictionary-attack lockout"
			case left == 1:
				msg += "; one more failure puts the TPM into dictionary-attack lockout"
			default:
				msg += fmt.Sprintf("; %d more failures put the TPM into dictionary-attack lockout", left)
			}
		}
		return fmt.Errorf("%w: %s: %w", ErrBadPIN, msg, err)
	default:
		return fmt.Errorf("tpm: unseal: %w", err)
	}
}

// lockoutError describes TPM_RC_LOCKOUT with what the TPM says about its
// recovery.
func (d *Device) lockoutError(err error) error {
	msg := "the TPM refuses PIN-protected objects after too many wrong PINs"
	if da, ok := d.daState(); ok {
		switch {
		case da.interval == 0:
			msg += "; it does not recover by itself (lockout interval 0)"
		case da.counter >= da.maxTries:
			wait := time.Duration(da.counter-da.maxTries+1) * time.Duration(da.interval) * time.Second
			msg += fmt.Sprintf("; it forgives one failure every %s and accepts a PIN again in about %s", time.Duration(da.interval)*time.Second, wait)
		}
	}
	msg += "; an administrator can clear the lockout with `tpm2_dictionarylockout --clear-lockout` (needs the lockout password); check the PIN source before retrying"
	return fmt.Errorf("%w: %s: %w", ErrLockout, msg, err)
}

// daParams are the TPM's dictionary-attack parameters.
type daParams struct {
	counter, maxTries, interval, recovery uint32
}

// daState reads the dictionary-attack counter and parameters.
func (d *Device) daState() (daParams, bool) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 4,
	}.Execute(d.tpm)
	if err != nil {
		return daParams{}, false
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return daParams{}, false
	}
	var p daParams
	found := 0
	for _, tp := range props.TPMProperty {
		switch tp.Property {
		case tpm2.TPMPTLockoutCounter:
			p.counter = tp.Value
		case tpm2.TPMPTMaxAuthFail:
			p.maxTries = tp.Value
		case tpm2.TPMPTLockoutInterval:
			p.interval = tp.Value
		case tpm2.TPMPTLockoutRecovery:
			p.recovery = tp.Value
		default:
			continue
		}
		found++
	}
	return p, found == 4
}

// changed returns the PCRs of bl's selection whose current values differ
// from those recorded in it. The caller holds d.sem.
func (d *Device) changed(bl *Blob) ([]int, error) {
	now, err := d.readPCRs(bl.PCRs)
	if err != nil {
		return nil, err
	}
	var changed []int
	for i, p := range bl.PCRs.PCRs() {
		if !bytes.Equal(now[i], bl.Values[i]) {
			changed = append(changed, p)
		}
	}
	return changed, nil
}

// readPCRs returns the SHA-256 values of the PCRs of sel, in ascending PCR
// order. It reads them again when a PCR was extended while they were read,
// up to 5 times. The caller holds d.sem.
func (d *Device) readPCRs(sel Selection) ([][]byte, error) {
	for range 5 {
		values, ok, err := d.readOnce(sel)
		if err != nil || ok {
			return values, err
		}
	}
	return nil, fmt.Errorf("tpm: read PCRs %s: they kept changing while being read", sel)
}

// readOnce reads the values of sel, in ascending PCR order. A TPM returns
// at most 8 values per TPM2_PCR_Read, so it reads until it has all; ok is
// false when the TPM's PCR update counter moved between two reads, that
// is, when the values may come from different states.
func (d *Device) readOnce(sel Selection) (values [][]byte, ok bool, err error) {
	byPCR := make(map[int][]byte, sel.Len())
	var counter uint32
	for remaining, reads := sel, 0; !remaining.IsZero(); reads++ {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: remaining.tpml()}.Execute(d.tpm)
		if err != nil {
			return nil, false, fmt.Errorf("tpm: read PCRs %s: %w", remaining, err)
		}
		if reads > 0 && rsp.PCRUpdateCounter != counter {
			return nil, false, nil
		}
		counter = rsp.PCRUpdateCounter
		got, err := returnedSelection(remaining, rsp)
		if err != nil {
			return nil, false, err
		}
		for i, p := range got.PCRs() {
			v := rsp.PCRValues.Digests[i].Buffer
			if len(v) != sha256.Size {
				return nil, false, fmt.Errorf("tpm: read PCR %d: the TPM returned %d bytes for a SHA-256 value", p, len(v))
			}
			byPCR[p] = bytes.Clone(v)
		}
		remaining.mask &^= got.mask
	}
	values = make([][]byte, 0, sel.Len())
	for _, p := range sel.PCRs() {
		values = append(values, byPCR[p])
	}
	return values, true, nil
}

// returnedSelection returns the SHA-256 PCRs whose values rsp holds, a
// non-empty part of asked, and checks that rsp holds one value for each.
func returnedSelection(asked Selection, rsp *tpm2.PCRReadResponse) (Selection, error) {
	var got Selection
	for _, s := range rsp.PCRSelectionOut.PCRSelections {
		if s.Hash != tpm2.TPMAlgSHA256 {
			continue
		}
		for i, b := range s.PCRSelect {
			if i < pcrSelectSize {
				got.mask |= uint32(b) << (8 * i)
			} else if b != 0 {
				return Selection{}, fmt.Errorf("tpm: read PCRs %s: the TPM returned PCRs beyond %d", asked, MaxPCR)
			}
		}
	}
	if got.IsZero() {
		return Selection{}, fmt.Errorf("tpm: read PCRs %s: the TPM returned no SHA-256 values; "+
			"enable its SHA-256 PCR bank (`tpm2_pcrallocate sha256:all`, then reboot)", asked)
	}
	if got.mask&^asked.mask != 0 || len(rsp.PCRValues.Digests) != got.Len() {
		return Selection{}, fmt.Errorf("tpm: read PCRs %s: the TPM returned %s and %d values", asked, got, len(rsp.PCRValues.Digests))
	}
	return got, nil
}

// retryTPM resends a command the TPM answered with TPM_RC_RETRY,
// TPM_RC_YIELDED or TPM_RC_TESTING: the TPM did not execute it and asks
// for it again, which tpm2-tss does too. Sessions are unaffected, since
// the TPM did not see the command.
type retryTPM struct{ t transport.TPM }

// retryDelays are the pauses before each resend.
var retryDelays = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}

// Send implements transport.TPM.
func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	for i := 0; ; i++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < 10 || i == len(retryDelays) {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(retryDelays[i])
		default:
			return rsp, err
		}
	}
}
