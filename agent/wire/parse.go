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
	i := byType[t]
	if i < 0 {
		return nil, &ParseError{fmt.Errorf("%w: %v", ErrUnknownType, t)}
	}
	m := types[i].new()
	c := codecs.Get().(*codec)
	defer codecs.Put(c)
	*c = codec{mode: modeDecode, in: body, t: t}
	m.fields(c)
	if c.err == nil && len(c.in) > 0 {
		c.fail("%d trailing bytes", len(c.in))
	}
	err := c.err
	*c = codec{}
	if err != nil {
		return nil, err
	}
	return m, nil
}
