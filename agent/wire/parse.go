package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors wrapped by [*ParseError]; test for them with [errors.Is].
var (
	// ErrFrameTooSmall means a length field below 5.
	ErrFrameTooSmall = errors.New("wire: frame too small")

	// ErrFrameTooLarge means a length field above the reader's limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")

	// ErrUnknownType means a type byte this version does not define. The
	// frame itself was intact, so the agent answers and keeps the
	// connection.
	ErrUnknownType = errors.New("wire: unknown message type")

	// ErrMalformed means a frame or body that breaks the format: truncated,
	// trailing bytes, a count or flag out of range.
	ErrMalformed = errors.New("wire: malformed message")
)

// A ParseError reports a frame or body that is not valid protocol. Its text
// describes the shape of the input, never its contents.
type ParseError struct {
	err error
}

// Error returns a description of the problem.
func (e *ParseError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error, which wraps one of [ErrFrameTooSmall],
// [ErrFrameTooLarge], [ErrUnknownType] or [ErrMalformed].
func (e *ParseError) Unwrap() error { return e.err }

// checkLength validates a frame's length field against max.
func checkLength(n uint32, max int) error {
	switch {
	case n < headerSize-4:
		return &ParseError{fmt.Errorf("%w: length %d, minimum 5", ErrFrameTooSmall, n)}
	case uint64(n) > uint64(max):
		return &ParseError{fmt.Errorf("%w: length %d, limit %d", ErrFrameTooLarge, n, max)}
	}
	return nil
}

// Parse decodes one whole frame, length prefix included. It is strict: the
// length must be in range and match len(frame) exactly, and the body must be
// valid for its type with no trailing bytes, so Marshal(id, m) reproduces
// frame byte for byte.
//
// On failure m is nil and err is a [*ParseError]. If only the body is bad, or
// the type unknown, id is still the frame's id so that an [Error] response
// can be addressed; otherwise it is 0. The message does not alias frame.
func Parse(frame []byte) (id uint32, m Message, err error) {
	if len(frame) < 4 {
		return 0, nil, &ParseError{fmt.Errorf("%w: %d bytes, no length prefix", ErrMalformed, len(frame))}
	}
	n := binary.BigEndian.Uint32(frame)
	if err := checkLength(n, MaxFrameSize); err != nil {
		return 0, nil, err
	}
	if uint64(n) != uint64(len(frame)-4) {
		return 0, nil, &ParseError{fmt.Errorf("%w: length %d, but %d bytes follow", ErrMalformed, n, len(frame)-4)}
	}
	id = binary.BigEndian.Uint32(frame[5:])
	m, err = ParseBody(Type(frame[4]), frame[headerSize:])
	return id, m, err
}

// ParseBody decodes the body of a frame of type t, for callers that split
// frames themselves, as a [Reader] does. It is as strict as [Parse], and the
// message does not alias body.
func ParseBody(t Type, body []byte) (Message, error) {
	d := decoder{t: t, b: body}
	var m Message
	switch t {
	case TypeHello:
		m = d.hello()
	case TypeGet:
		m = &Get{Name: d.str8("name"), Version: d.u32("version")}
	case TypeList:
		m = &List{}
	case TypeStatus:
		m = &Status{}
	case TypeReload:
		m = &Reload{Name: d.str8("name")}
	case TypeReloaded:
		m = &Reloaded{Version: d.u32("version")}
	case TypeWatch:
		m = d.watch()
	case TypeWatching:
		m = d.watching()
	case TypeChanged:
		m = &Changed{Name: d.str8("name"), Version: d.u32("version")}
	case TypeHelloOK:
		m = &HelloOK{Version: d.u16("version"), Agent: d.str8("agent")}
	case TypeSecret:
		m = &Secret{
			Name:    d.str8("name"),
			Version: d.u32("version"),
			Expires: int64(d.u64("expires")),
			Value:   d.bytes32("value", MaxSecretSize),
		}
	case TypeNames:
		m = d.names()
	case TypeStatusOK:
		m = &StatusOK{
			Healthy:  d.bool("healthy"),
			Backend:  d.str8("backend"),
			Secrets:  d.u32("secrets"),
			UptimeMS: d.u64("uptime_ms"),
			Agent:    d.str8("agent"),
		}
	case TypeError:
		m = &Error{Code: Code(d.u16("code")), Message: d.str16("message")}
	default:
		return nil, &ParseError{fmt.Errorf("%w: %v", ErrUnknownType, t)}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// A decoder reads fields from the front of b. The first failure sticks in
// err; later reads return zero values.
type decoder struct {
	t   Type
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = &ParseError{fmt.Errorf("%w: %v: "+format, append([]any{ErrMalformed, d.t}, args...)...)}
	}
}

func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("%s truncated", field)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8(field string) uint8 {
	if p := d.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if p := d.take(2, field); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if p := d.take(4, field); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if p := d.take(8, field); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) bool(field string) bool {
	switch v := d.u8(field); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("%s is %d, want 0 or 1", field, v)
		return false
	}
}

func (d *decoder) str8(field string) string {
	n := d.u8(field)
	return string(d.take(int(n), field))
}

func (d *decoder) str16(field string) string {
	n := d.u16(field)
	return string(d.take(int(n), field))
}

// bytes32 returns a copy, so that a secret value never aliases a reused
// read buffer.
func (d *decoder) bytes32(field string, max int) []byte {
	n := d.u32(field)
	if d.err == nil && uint64(n) > uint64(max) {
		d.fail("%s length %d, limit %d", field, n, max)
	}
	p := d.take(int(n), field)
	if d.err != nil {
		return nil
	}
	v := make([]byte, len(p))
	copy(v, p)
	return v
}

func (d *decoder) hello() *Hello {
	n := d.u8("count")
	if d.err == nil && (n < 1 || n > maxVersions) {
		d.fail("%d versions, want 1 to %d", n, maxVersions)
	}
	if d.err != nil {
		return nil
	}
	m := &Hello{Versions: make([]uint16, n)}
	for i := range m.Versions {
		m.Versions[i] = d.u16("version")
	}
	return m
}

func (d *decoder) watch() *Watch {
	n := d.u8("count")
	if d.err == nil && (n < 1 || n > MaxWatch) {
		d.fail("%d names, want 1 to %d", n, MaxWatch)
	}
	if d.err != nil {
		return nil
	}
	m := &Watch{Names: make([]string, n)}
	for i := range m.Names {
		m.Names[i] = d.str8("name")
	}
	return m
}

func (d *decoder) watching() *Watching {
	n := d.u8("count")
	if d.err == nil && (n < 1 || n > MaxWatch) {
		d.fail("%d versions, want 1 to %d", n, MaxWatch)
	}
	if d.err != nil {
		return nil
	}
	m := &Watching{Versions: make([]uint32, n)}
	for i := range m.Versions {
		m.Versions[i] = d.u32("version")
	}
	return m
}

func (d *decoder) names() *Names {
	n := d.u32("count")
	// Each name takes at least its length byte: bound n by what is left
	// before allocating for it.
	if d.err == nil && uint64(n) > uint64(len(d.b)) {
		d.fail("count %d, but %d bytes follow", n, len(d.b))
	}
	if d.err != nil {
		return nil
	}
	m := &Names{Names: make([]string, n)}
	for i := range m.Names {
		m.Names[i] = d.str8("name")
		if d.err != nil {
			break
		}
	}
	return m
}
