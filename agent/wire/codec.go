package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// A codec walks a message body field by field in one of three modes: it
// counts the body's size, appends its encoding, or decodes it. Each
// message describes its body once, in its fields method, so that the three
// cannot disagree: every frame that parses re-encodes to the same bytes,
// and a buffer sized by the size pass is never regrown by the encoding
// pass (append growth would leave stray copies of secret values).
type codec struct {
	mode codecMode
	size int    // modeSize: bytes counted
	out  []byte // modeEncode: the body appended so far
	in   []byte // modeDecode: what is left to read
	t    Type   // modeDecode: for error messages
	err  error  // modeDecode: the first failure; later reads give zero values
}

type codecMode uint8

const (
	modeSize codecMode = iota
	modeEncode
	modeDecode
)

func (c *codec) decoding() bool { return c.mode == modeDecode }

// fail records a decoding failure, which sticks.
func (c *codec) fail(format string, args ...any) {
	if c.err == nil {
		c.err = &ParseError{fmt.Errorf("%w: %v: "+format, append([]any{ErrMalformed, c.t}, args...)...)}
	}
}

// take returns the next n bytes to decode, or nil after a failure.
func (c *codec) take(n int, field string) []byte {
	if c.err != nil {
		return nil
	}
	if len(c.in) < n {
		c.fail("%s truncated", field)
		return nil
	}
	p := c.in[:n:n]
	c.in = c.in[n:]
	return p
}

func (c *codec) u8(v *uint8, field string) {
	switch c.mode {
	case modeSize:
		c.size++
	case modeEncode:
		c.out = append(c.out, *v)
	case modeDecode:
		if p := c.take(1, field); p != nil {
			*v = p[0]
		}
	}
}

func (c *codec) u16(v *uint16, field string) {
	switch c.mode {
	case modeSize:
		c.size += 2
	case modeEncode:
		c.out = binary.BigEndian.AppendUint16(c.out, *v)
	case modeDecode:
		if p := c.take(2, field); p != nil {
			*v = binary.BigEndian.Uint16(p)
		}
	}
}

func (c *codec) u32(v *uint32, field string) {
	switch c.mode {
	case modeSize:
		c.size += 4
	case modeEncode:
		c.out = binary.BigEndian.AppendUint32(c.out, *v)
	case modeDecode:
		if p := c.take(4, field); p != nil {
			*v = binary.BigEndian.Uint32(p)
		}
	}
}

func (c *codec) u64(v *uint64, field string) {
	switch c.mode {
	case modeSize:
		c.size += 8
	case modeEncode:
		c.out = binary.BigEndian.AppendUint64(c.out, *v)
	case modeDecode:
		if p := c.take(8, field); p != nil {
			*v = binary.BigEndian.Uint64(p)
		}
	}
}

func (c *codec) i64(v *int64, field string) {
	u := uint64(*v)
	c.u64(&u, field)
	*v = int64(u)
}

// boolean is one byte, exactly 0 or 1.
func (c *codec) boolean(v *bool, field string) {
	var b uint8
	if *v {
		b = 1
	}
	c.u8(&b, field)
	if c.decoding() && c.err == nil {
		switch b {
		case 0, 1:
			*v = b == 1
		default:
			c.fail("%s is %d, want 0 or 1", field, b)
		}
	}
}

// bytes is an n-byte field after its length, which the caller has coded;
// decoding copies, so that nothing aliases a reused read buffer (a secret
// value above all).
func (c *codec) bytes(v *[]byte, n int, field string) {
	switch c.mode {
	case modeSize:
		c.size += n
	case modeEncode:
		c.out = append(c.out, *v...)
	case modeDecode:
		if p := c.take(n, field); p != nil {
			*v = append([]byte{}, p...)
		}
	}
}

// length codes the length of a variable field as width bytes, checking it
// against max: encoding panics above max (a programming error: callers
// check input from outside first), decoding fails.
func (c *codec) length(n int, width int, max uint64, field string) int {
	if !c.decoding() && uint64(n) > max {
		panic("wire: " + field + " is longer than " + strconv.FormatUint(max, 10))
	}
	v := uint64(n)
	switch width {
	case 1:
		b := uint8(v)
		c.u8(&b, field)
		v = uint64(b)
	case 2:
		b := uint16(v)
		c.u16(&b, field)
		v = uint64(b)
	case 4:
		b := uint32(v)
		c.u32(&b, field)
		v = uint64(b)
	}
	if c.decoding() && c.err == nil && v > max {
		c.fail("%s length %d, limit %d", field, v, max)
	}
	if c.err != nil {
		return 0
	}
	return int(v)
}

// str8 is a u8 length and that many bytes.
func (c *codec) str8(v *string, field string) { c.str(v, 1, MaxStr8Len, field) }

// str16 is a u16 length and that many bytes.
func (c *codec) str16(v *string, field string) { c.str(v, 2, math.MaxUint16, field) }

func (c *codec) str(v *string, width int, max uint64, field string) {
	n := c.length(len(*v), width, max, field)
	switch c.mode {
	case modeSize:
		c.size += n
	case modeEncode:
		c.out = append(c.out, *v...)
	case modeDecode:
		if p := c.take(n, field); p != nil {
			*v = string(p)
		}
	}
}

// bytes32 is a u32 length of at most max and that many bytes.
func (c *codec) bytes32(v *[]byte, max int, field string) {
	n := c.length(len(*v), 4, uint64(max), field)
	c.bytes(v, n, field)
}

// list8 codes a list of min to max elements after a u8 count.
func list8[T any](c *codec, s *[]T, min, max int, field string, elem func(*codec, *T)) {
	if !c.decoding() && (len(*s) < min || len(*s) > max) {
		panic("wire: " + field + " must hold " + strconv.Itoa(min) + " to " + strconv.Itoa(max) + " entries, not " + strconv.Itoa(len(*s)))
	}
	n := uint8(len(*s))
	c.u8(&n, field)
	if c.decoding() && c.err == nil && (int(n) < min || int(n) > max) {
		c.fail("%d %s, want %d to %d", n, field, min, max)
	}
	list(c, s, int(n), elem)
}

// list32 codes a list after a u32 count. Each element takes at least one
// byte, so a count larger than the bytes left is refused before anything
// is allocated for it.
func list32[T any](c *codec, s *[]T, field string, elem func(*codec, *T)) {
	if uint64(len(*s)) > math.MaxUint32 {
		panic("wire: too many " + field)
	}
	n := uint32(len(*s))
	c.u32(&n, field)
	if c.decoding() && c.err == nil && uint64(n) > uint64(len(c.in)) {
		c.fail("count %d, but %d bytes follow", n, len(c.in))
	}
	if c.err != nil {
		return
	}
	list(c, s, int(n), elem)
}

func list[T any](c *codec, s *[]T, n int, elem func(*codec, *T)) {
	if c.decoding() {
		if c.err != nil {
			return
		}
		*s = make([]T, n)
	}
	for i := range *s {
		elem(c, &(*s)[i])
		if c.err != nil {
			return
		}
	}
}

// Element coders for lists.
func str8Elem(field string) func(*codec, *string) {
	return func(c *codec, v *string) { c.str8(v, field) }
}
func u16Elem(field string) func(*codec, *uint16) {
	return func(c *codec, v *uint16) { c.u16(v, field) }
}
func u32Elem(field string) func(*codec, *uint32) {
	return func(c *codec, v *uint32) { c.u32(v, field) }
}
