package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
)

// Version1 is the protocol version this package implements, as offered in
// [Hello] and chosen in [HelloOK].
const Version1 = 1

// Size limits. Frame limits apply to the length field, which counts the
// type, id and body bytes but not itself.
const (
	// MaxFrameSize is the largest length either side accepts.
	MaxFrameSize = 1 << 20

	// MaxRequestSize is the largest length the agent accepts in a request:
	// room for a Put of the largest secret value. Most requests are far
	// smaller, and a reader's buffer grows only for a frame that needs it.
	MaxRequestSize = 80 << 10

	// smallFrame is the size a Reader's buffer starts at, and returns to
	// after a larger frame.
	smallFrame = 4096

	// MaxSecretSize is the largest secret value, in bytes.
	MaxSecretSize = 65536

	// MaxStr8Len is the longest string a str8 field holds: a secret name
	// on the wire, or a short text. The agent accepts secret names of at
	// most 128 bytes and checks its naming rule itself.
	MaxStr8Len = 255

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
	TypeHello         Type = 0x01
	TypeGet           Type = 0x02
	TypeList          Type = 0x03
	TypeStatus        Type = 0x04
	TypeReload        Type = 0x05
	TypeWatch         Type = 0x06
	TypeHealth        Type = 0x07
	TypePut           Type = 0x08
	TypeRemove        Type = 0x09
	TypePrune         Type = 0x0A
	TypeSign          Type = 0x0B
	TypeHMAC          Type = 0x0C
	TypePutCredential Type = 0x0D
	TypeDescribe      Type = 0x0E
	TypeHelloOK       Type = 0x81
	TypeSecret        Type = 0x82
	TypeNames         Type = 0x83
	TypeStatusOK      Type = 0x84
	TypeReloaded      Type = 0x85
	TypeWatching      Type = 0x86
	TypeChanged       Type = 0x87
	TypeHealthOK      Type = 0x88
	TypeStored        Type = 0x89
	TypeRemoved       Type = 0x8A
	TypePruned        Type = 0x8B
	TypeSigned        Type = 0x8C
	TypeMAC           Type = 0x8D
	TypeDescribed     Type = 0x8E
	TypeError         Type = 0xFF
)

// types lists every message type: its name, and how to make an empty
// message of it for decoding.
var types = [...]struct {
	t    Type
	name string
	new  func() Message
}{
	{TypeHello, "hello", func() Message { return new(Hello) }},
	{TypeGet, "get", func() Message { return new(Get) }},
	{TypeList, "list", func() Message { return new(List) }},
	{TypeStatus, "status", func() Message { return new(Status) }},
	{TypeReload, "reload", func() Message { return new(Reload) }},
	{TypeWatch, "watch", func() Message { return new(Watch) }},
	{TypeHelloOK, "hello_ok", func() Message { return new(HelloOK) }},
	{TypeSecret, "secret", func() Message { return new(Secret) }},
	{TypeNames, "names", func() Message { return new(Names) }},
	{TypeStatusOK, "status_ok", func() Message { return new(StatusOK) }},
	{TypeReloaded, "reloaded", func() Message { return new(Reloaded) }},
	{TypeWatching, "watching", func() Message { return new(Watching) }},
	{TypeChanged, "changed", func() Message { return new(Changed) }},
	{TypeHealth, "health", func() Message { return new(Health) }},
	{TypeHealthOK, "health_ok", func() Message { return new(HealthOK) }},
	{TypePut, "put", func() Message { return new(Put) }},
	{TypeStored, "stored", func() Message { return new(Stored) }},
	{TypeRemove, "remove", func() Message { return new(Remove) }},
	{TypeRemoved, "removed", func() Message { return new(Removed) }},
	{TypePrune, "prune", func() Message { return new(Prune) }},
	{TypePruned, "pruned", func() Message { return new(Pruned) }},
	{TypeSign, "sign", func() Message { return new(Sign) }},
	{TypeSigned, "signed", func() Message { return new(Signed) }},
	{TypeHMAC, "hmac", func() Message { return new(HMAC) }},
	{TypeMAC, "mac", func() Message { return new(MAC) }},
	{TypePutCredential, "put_credential", func() Message { return new(PutCredential) }},
	{TypeDescribe, "describe", func() Message { return new(Describe) }},
	{TypeDescribed, "described", func() Message { return new(Described) }},
	{TypeError, "error", func() Message { return new(Error) }},
}

// byType indexes types by type byte.
var byType = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i, e := range types {
		idx[e.t] = int8(i)
	}
	return idx
}()

// String returns the snake_case name of t, or "Type(0x..)" for a type this
// package does not know.
func (t Type) String() string {
	if i := byType[t]; i >= 0 {
		return types[i].name
	}
	return fmt.Sprintf("Type(%#02x)", uint8(t))
}

// Request reports whether t is a request type (0x01–0x7F).
func (t Type) Request() bool { return t >= 0x01 && t <= 0x7F }

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
// implement it with pointer receivers, and [Parse] returns pointers; no
// other package can implement it.
type Message interface {
	// Type returns the frame type of the message.
	Type() Type

	// fields walks the body with c (see codec.go).
	fields(c *codec)
}

// AppendFrame appends the frame carrying m with the given id to dst and
// returns the extended buffer. It sizes the frame first and grows dst at
// most once, so no stray copy of a secret value is left by append growth;
// passing a reused buffer, such as buf[:0], makes encoding
// allocation-free.
//
// AppendFrame panics if m breaks a limit of its type, which is a
// programming error: callers check input from outside (names against
// [MaxStr8Len], values against [MaxSecretSize]) first. It does not check
// the total size: a frame is valid only if its length field, len(frame)-4,
// is at most [MaxFrameSize], which matters for a [Names] holding many names.
func AppendFrame(dst []byte, id uint32, m Message) []byte {
	c := codecs.Get().(*codec)
	defer codecs.Put(c)
	*c = codec{mode: modeSize}
	m.fields(c)
	n := headerSize - 4 + c.size
	if n > math.MaxUint32 {
		panic("wire: frame longer than 4 GiB")
	}
	dst = slices.Grow(dst, 4+n)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, byte(m.Type()))
	dst = binary.BigEndian.AppendUint32(dst, id)
	*c = codec{mode: modeEncode, out: dst}
	m.fields(c)
	dst, c.out = c.out, nil
	return dst
}

// codecs recycles codecs: passed through the Message interface, a codec
// escapes to the heap, and encoding an answer must not allocate.
var codecs = sync.Pool{New: func() any { return new(codec) }}

// Marshal returns the frame carrying m with the given id. It panics where
// [AppendFrame] does.
func Marshal(id uint32, m Message) []byte {
	return AppendFrame(nil, id, m)
}
