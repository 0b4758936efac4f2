package wire

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
)

// Version1 is the protocol version this package implements, as offered in
// [Hello] and chosen in [HelloOK].
const Version1 = 1

// Size limits. Frame limits apply to the length field, which counts the
// type, id and body bytes but not itself.
const (
	// MaxFrameSize is the largest length either side accepts.
	MaxFrameSize = 1 << 20

	// MaxRequestSize is the largest length the agent accepts in a request.
	MaxRequestSize = 4096

	// MaxSecretSize is the largest secret value, in bytes.
	MaxSecretSize = 65536

	// MaxNameLen is the longest name or short text a str8 field can hold.
	// The agent accepts shorter secret names than this; it checks them
	// itself.
	MaxNameLen = 255

	// headerSize is the length prefix, type and id.
	headerSize = 4 + 1 + 4

	// maxVersions is the most versions a Hello may offer.
	maxVersions = 16

	// MaxWatch is the most names one Watch request may name.
	MaxWatch = 64
)

// A Type is the type byte of a frame. Requests are 0x01–0x7F, responses
// 0x80–0xFF.
type Type uint8

// Message types of protocol version 1.
const (
	TypeHello    Type = 0x01
	TypeGet      Type = 0x02
	TypeList     Type = 0x03
	TypeStatus   Type = 0x04
	TypeReload   Type = 0x05
	TypeWatch    Type = 0x06
	TypeHelloOK  Type = 0x81
	TypeSecret   Type = 0x82
	TypeNames    Type = 0x83
	TypeStatusOK Type = 0x84
	TypeReloaded Type = 0x85
	TypeWatching Type = 0x86
	TypeChanged  Type = 0x87
	TypeError    Type = 0xFF
)

// String returns the snake_case name of t, or "Type(0x..)" for a type this
// package does not know.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeGet:
		return "get"
	case TypeList:
		return "list"
	case TypeStatus:
		return "status"
	case TypeReload:
		return "reload"
	case TypeWatch:
		return "watch"
	case TypeHelloOK:
		return "hello_ok"
	case TypeSecret:
		return "secret"
	case TypeNames:
		return "names"
	case TypeStatusOK:
		return "status_ok"
	case TypeReloaded:
		return "reloaded"
	case TypeWatching:
		return "watching"
	case TypeChanged:
		return "changed"
	case TypeError:
		return "error"
	}
	return "Type(0x" + strconv.FormatUint(uint64(t)>>4, 16) + strconv.FormatUint(uint64(t)&0xF, 16) + ")"
}

// A Code is the stable error code of an [Error] response.
type Code uint16

// Error codes. Codes not listed here may appear from a newer agent; they
// parse, and their [Code.Message] is "unknown error".
const (
	CodeNotFound    Code = 1 // the caller may read the name, but there is no such secret or version
	CodeDenied      Code = 2 // policy refuses, or the secret does not exist and the caller may not know
	CodeExpired     Code = 3 // the secret or version is past its expiry or grace period
	CodeUnavailable Code = 4 // the agent cannot serve now; retry later
	CodeBadRequest  Code = 5 // malformed, unknown or out-of-order request
	CodeRateLimited Code = 6 // too many requests from this caller; retry later
	CodeInternal    Code = 7 // the agent failed; details are in its log
)

var codeNames = [...]struct{ name, msg string }{
	CodeNotFound:    {"not_found", "no such secret"},
	CodeDenied:      {"denied", "access denied or no such secret"},
	CodeExpired:     {"expired", "secret expired"},
	CodeUnavailable: {"unavailable", "temporarily unavailable, try again later"},
	CodeBadRequest:  {"bad_request", "bad request"},
	CodeRateLimited: {"rate_limited", "too many requests, try again later"},
	CodeInternal:    {"internal", "internal error"},
}

func (c Code) known() bool { return c >= CodeNotFound && int(c) < len(codeNames) }

// String returns the snake_case name of c, such as "not_found", or
// "Code(n)" for a code this package does not know.
func (c Code) String() string {
	if c.known() {
		return codeNames[c].name
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Message returns the fixed default message for c, or "unknown error".
func (c Code) Message() string {
	if c.known() {
		return codeNames[c].msg
	}
	return "unknown error"
}

// A Message is one protocol message. The message types of this package
// implement it with pointer receivers, and [Parse] returns pointers.
type Message interface {
	// Type returns the frame type of the message.
	Type() Type

	// AppendBody appends the encoded body to b and returns the extended
	// buffer. It panics if the message breaks a limit of its type, which
	// is a programming error: callers check input from outside (names
	// against [MaxNameLen], values against [MaxSecretSize]) first.
	AppendBody(b []byte) []byte
}

// bodySizer is implemented by the messages of this package so that
// [AppendFrame] grows its buffer once: append growth would leave stray
// copies of secret values in memory.
type bodySizer interface{ bodySize() int }

// AppendFrame appends the frame carrying m with the given id to dst and
// returns the extended buffer. Passing a reused buffer, such as buf[:0],
// makes encoding allocation-free.
//
// AppendFrame panics where m.AppendBody does. It does not check the total
// size: a frame is valid only if its length field, len(frame)-4, is at most
// [MaxFrameSize], which matters for a [Names] holding many names.
func AppendFrame(dst []byte, id uint32, m Message) []byte {
	if s, ok := m.(bodySizer); ok {
		dst = slices.Grow(dst, headerSize+s.bodySize())
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(m.Type()))
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = m.AppendBody(dst)
	n := len(dst) - start - 4
	if n > math.MaxUint32 {
		panic("wire: frame longer than 4 GiB")
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst
}

// Marshal returns the frame carrying m with the given id. It panics where
// [AppendFrame] does.
func Marshal(id uint32, m Message) []byte {
	return AppendFrame(nil, id, m)
}
