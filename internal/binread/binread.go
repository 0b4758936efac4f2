// Package binread decodes the big-endian, length-prefixed binary formats
// keyward keeps on disk (envelopes, bundles, key records) the same way
// everywhere: a [Reader] records the first error and, after it, returns
// zeros without allocating, so that a parser reads every field and checks
// Err once, and a corrupt length never makes it allocate.
package binread

import (
	"encoding/binary"
	"fmt"
)

// A Reader reads fields from a byte slice. It is not safe for concurrent
// use.
type Reader struct {
	b   []byte
	off int
	err error
}

// New returns a Reader of b. The slices it returns alias b.
func New(b []byte) *Reader { return &Reader{b: b} }

// Bytes returns the next n bytes. After an error it returns zeros for the
// small fixed-size fields (n <= 16) and an empty slice otherwise.
func (r *Reader) Bytes(n int) []byte {
	if r.err == nil && len(r.b)-r.off < n {
		r.err = fmt.Errorf("truncated at byte %d", len(r.b))
	}
	if r.err != nil {
		var zero [16]byte
		if n <= len(zero) {
			return zero[:n]
		}
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

// U8 reads one byte.
func (r *Reader) U8() uint8 { return r.Bytes(1)[0] }

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 { return binary.BigEndian.Uint16(r.Bytes(2)) }

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 { return binary.BigEndian.Uint32(r.Bytes(4)) }

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 { return binary.BigEndian.Uint64(r.Bytes(8)) }

// Err returns the first error: the input ended before a field.
func (r *Reader) Err() error { return r.err }

// Rest returns how many bytes are left unread.
func (r *Reader) Rest() int { return len(r.b) - r.off }
