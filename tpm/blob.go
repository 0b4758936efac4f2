package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Blob format, version 1. All integers are big-endian; see docs/tpm.md.
//
//	version   1 byte   0x01
//	pcrs      6 bytes  TPMS_PCR_SELECTION: hash 0x000B (SHA-256), size 3, 3-byte bitmap
//	values    32 bytes per selected PCR, ascending: the values at sealing time
//	srkName   TPM2B_NAME: the Name of the storage key the object was sealed under
//	public    TPM2B_PUBLIC of the sealed data object
//	private   TPM2B_PRIVATE of the sealed data object
const (
	// BlobVersion is the first byte of every sealed blob.
	BlobVersion = 0x01

	// MaxBlobSize bounds the size of a sealed blob: every PCR selected and
	// the largest name, public and private areas accepted.
	MaxBlobSize = 1 + selectionSize + (MaxPCR+1)*sha256.Size + 2 + maxNameSize + 2 + maxPublicSize + 2 + maxPrivateSize

	selectionSize  = 2 + 1 + pcrSelectSize
	maxNameSize    = 2 + 64
	maxPublicSize  = 512
	maxPrivateSize = 512
)

// A Blob is a parsed sealed blob: a TPM sealed data object and the PCR
// state it was sealed to. Values and Public are not secret; Private is
// encrypted by the storage key. A Blob is a plain value: not safe for
// concurrent modification.
type Blob struct {
	// PCRs is the selection the object's policy is bound to.
	PCRs Selection
	// Values holds the SHA-256 value of each PCR of PCRs, in ascending PCR
	// order, when the blob was sealed. They let an error name the PCRs
	// that changed; the TPM does not trust them.
	Values [][]byte
	// SRKName is the TPM Name of the storage key that sealed the object.
	SRKName []byte
	// Public is the marshalled TPMT_PUBLIC of the sealed data object.
	Public []byte
	// Private is the TPM2B_PRIVATE buffer of the sealed data object.
	Private []byte

	pub *tpm2.TPMTPublic // Public, parsed
}

// ParseBlob parses a sealed blob strictly: known version, SHA-256
// selection, exact sizes, a canonical keyed-hash public area, no trailing
// bytes. It returns a [*ParseError] on failure. For every b it accepts,
// Marshal returns b.
func ParseBlob(b []byte) (*Blob, error) {
	r := reader{b: b}
	foreign := func(format string, args ...any) (*Blob, error) {
		return nil, &ParseError{Offset: r.off, Reason: fmt.Sprintf(format, args...), Foreign: true}
	}
	bad := func(format string, args ...any) (*Blob, error) {
		return nil, &ParseError{Offset: r.off, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(b) == 0:
		return foreign("it is empty")
	case b[0] != BlobVersion:
		return foreign("format byte is 0x%02x, want 0x%02x", b[0], BlobVersion)
	case len(b) < 1+selectionSize:
		return foreign("it is %d bytes long", len(b))
	case b[1] != 0x00 || b[2] != byte(tpm2.TPMAlgSHA256) || b[3] != pcrSelectSize:
		r.off = 1
		return foreign("no SHA-256 PCR selection after the format byte")
	case len(b) > MaxBlobSize:
		return bad("it is %d bytes long, more than %d", len(b), MaxBlobSize)
	}
	r.off = 4
	bl := &Blob{PCRs: selectionFromBitmap(r.next(pcrSelectSize))}
	if bl.PCRs.IsZero() {
		r.off = 4
		return bad("the PCR selection is empty")
	}
	for range bl.PCRs.Len() {
		v := r.next(sha256.Size)
		if v == nil {
			return bad("truncated in the PCR values")
		}
		bl.Values = append(bl.Values, bytes.Clone(v))
	}

	name, ok := r.sized()
	if !ok {
		return bad("truncated in the storage key name")
	}
	if len(name) < 2 {
		return bad("storage key name is %d bytes", len(name))
	}
	alg := tpm2.TPMAlgID(binary.BigEndian.Uint16(name))
	if want, known := digestSizes[alg]; !known || len(name) != 2+want {
		return bad("storage key name of %d bytes with hash algorithm 0x%04x", len(name), uint16(alg))
	}
	bl.SRKName = bytes.Clone(name)

	pubOff := r.off + 2
	pub, ok := r.sized()
	if !ok {
		return bad("truncated in the public area")
	}
	if len(pub) == 0 || len(pub) > maxPublicSize {
		r.off = pubOff - 2
		return bad("public area of %d bytes", len(pub))
	}
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil || !bytes.Equal(tpm2.Marshal(*p), pub) {
		r.off = pubOff
		return bad("public area is not a canonical TPMT_PUBLIC")
	}
	if p.Type != tpm2.TPMAlgKeyedHash {
		r.off = pubOff
		return bad("public area is of type 0x%04x, not a sealed data object", uint16(p.Type))
	}
	bl.Public, bl.pub = bytes.Clone(pub), p

	priv, ok := r.sized()
	if !ok {
		return bad("truncated in the private area")
	}
	if len(priv) == 0 || len(priv) > maxPrivateSize {
		r.off -= len(priv) + 2
		return bad("private area of %d bytes", len(priv))
	}
	bl.Private = bytes.Clone(priv)
	if r.off != len(b) {
		return bad("%d trailing bytes", len(b)-r.off)
	}
	return bl, nil
}

// Marshal returns the blob's encoding.
func (bl *Blob) Marshal() []byte {
	out := make([]byte, 0, 1+selectionSize+len(bl.Values)*sha256.Size+6+len(bl.SRKName)+len(bl.Public)+len(bl.Private))
	out = append(out, BlobVersion, 0x00, byte(tpm2.TPMAlgSHA256), pcrSelectSize)
	out = append(out, bl.PCRs.bitmap()...)
	for _, v := range bl.Values {
		out = append(out, v...)
	}
	for _, f := range [][]byte{bl.SRKName, bl.Public, bl.Private} {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
		out = append(out, f...)
	}
	return out
}

// digestSizes are the Name algorithms a storage key may use.
var digestSizes = map[tpm2.TPMAlgID]int{
	tpm2.TPMAlgSHA1:   20,
	tpm2.TPMAlgSHA256: 32,
	tpm2.TPMAlgSHA384: 48,
	tpm2.TPMAlgSHA512: 64,
}

// reader reads a blob front to back.
type reader struct {
	b   []byte
	off int
}

// next returns the next n bytes, or nil if fewer remain.
func (r *reader) next(n int) []byte {
	if len(r.b)-r.off < n {
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

// sized returns the contents of the next TPM2B (uint16 size, then data).
func (r *reader) sized() ([]byte, bool) {
	h := r.next(2)
	if h == nil {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(h))
	v := r.next(n)
	if v == nil && n > 0 {
		r.off -= 2
		return nil, false
	}
	return v, true
}
