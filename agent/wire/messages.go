package wire

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"strconv"
)

// Hello opens a connection and offers the protocol versions the client
// speaks. It must be the first frame on a connection.
type Hello struct {
	Versions []uint16 // 1 to 16 versions, in any order
}

// Get asks for a secret by name.
type Get struct {
	Name    string // at most MaxNameLen bytes; the agent validates it further
	Version uint32 // 0 asks for the current version
}

// List asks for the names of the secrets the caller may get.
type List struct{}

// Status asks for the agent's health.
type Status struct{}

// HelloOK accepts a [Hello] with the version the agent chose.
type HelloOK struct {
	Version uint16
	Agent   string // software name and version, such as "keyward 0.1.0"
}

// Secret answers a [Get]. Its value is redacted when the message is
// formatted with fmt or logged with log/slog; only its length shows.
type Secret struct {
	Name    string
	Version uint32 // the version served, never 0
	Expires int64  // unix seconds after which the value must not be used; 0 means never
	Value   []byte // at most MaxSecretSize bytes
}

// Names answers a [List].
type Names struct {
	Names []string // each at most MaxNameLen bytes; the frame must fit MaxFrameSize
}

// StatusOK answers a [Status].
type StatusOK struct {
	Healthy  bool
	Backend  string // the kind of key backend, such as "pkcs11" or "tpm"
	Secrets  uint32 // number of secrets loaded
	UptimeMS uint64 // milliseconds since the agent started
	Agent    string // software name and version
}

// Error answers any request that failed. It is also the Go error for that
// failure.
type Error struct {
	Code    Code
	Message string // human text, at most 65535 bytes; peers branch on Code only
}

// Error returns the code's name and the message, or the code's default
// message when Message is empty.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code.Message()
	}
	return "agent: " + e.Code.String() + ": " + msg
}

// Type returns [TypeHello].
func (*Hello) Type() Type { return TypeHello }

// Type returns [TypeGet].
func (*Get) Type() Type { return TypeGet }

// Type returns [TypeList].
func (*List) Type() Type { return TypeList }

// Type returns [TypeStatus].
func (*Status) Type() Type { return TypeStatus }

// Type returns [TypeHelloOK].
func (*HelloOK) Type() Type { return TypeHelloOK }

// Type returns [TypeSecret].
func (*Secret) Type() Type { return TypeSecret }

// Type returns [TypeNames].
func (*Names) Type() Type { return TypeNames }

// Reload asks the agent to re-read one secret from its store (after a
// rotation or a removal) and answers once the agent serves what is on
// disk. It needs the admin permission on the name.
type Reload struct {
	Name string
}

// Reloaded answers a Reload with the version now current, 0 when the
// secret is gone.
type Reloaded struct {
	Version uint32
}

// Type returns [TypeReload].
func (*Reload) Type() Type { return TypeReload }

// Type returns [TypeReloaded].
func (*Reloaded) Type() Type { return TypeReloaded }

// AppendBody appends the body of m. It panics if Name is longer than
// [MaxNameLen].
func (m *Reload) AppendBody(b []byte) []byte { return appendStr8(b, m.Name, "Reload.Name") }

// AppendBody appends the body of m.
func (m *Reloaded) AppendBody(b []byte) []byte { return binary.BigEndian.AppendUint32(b, m.Version) }

func (m *Reload) bodySize() int { return 1 + len(m.Name) }
func (*Reloaded) bodySize() int { return 4 }

// Watch subscribes the connection to changes of the current version of
// each name (1 to [MaxWatch] names). It needs the watch permission on
// every name. After [Watching], the agent sends a [Changed] with id 0
// whenever a watched name gets another current version.
type Watch struct {
	Names []string
}

// Watching answers a Watch with the current version of each name, in
// order; 0 when the name is not served.
type Watching struct {
	Versions []uint32
}

// Changed tells a watching connection, unasked and with id 0, that name
// has a new current version (0: it is no longer served).
type Changed struct {
	Name    string
	Version uint32
}

// Type returns [TypeWatch].
func (*Watch) Type() Type { return TypeWatch }

// Type returns [TypeWatching].
func (*Watching) Type() Type { return TypeWatching }

// Type returns [TypeChanged].
func (*Changed) Type() Type { return TypeChanged }

// AppendBody appends the body of m. It panics unless m has 1 to
// [MaxWatch] names of at most [MaxNameLen] bytes.
func (m *Watch) AppendBody(b []byte) []byte {
	if len(m.Names) < 1 || len(m.Names) > MaxWatch {
		panic("wire: Watch.Names must hold 1 to " + strconv.Itoa(MaxWatch) + " names")
	}
	b = append(b, byte(len(m.Names)))
	for _, n := range m.Names {
		b = appendStr8(b, n, "Watch.Names")
	}
	return b
}

// AppendBody appends the body of m. It panics unless m has 1 to
// [MaxWatch] versions.
func (m *Watching) AppendBody(b []byte) []byte {
	if len(m.Versions) < 1 || len(m.Versions) > MaxWatch {
		panic("wire: Watching.Versions must hold 1 to " + strconv.Itoa(MaxWatch) + " versions")
	}
	b = append(b, byte(len(m.Versions)))
	for _, v := range m.Versions {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// AppendBody appends the body of m. It panics if Name is longer than
// [MaxNameLen].
func (m *Changed) AppendBody(b []byte) []byte {
	b = appendStr8(b, m.Name, "Changed.Name")
	return binary.BigEndian.AppendUint32(b, m.Version)
}

func (m *Watch) bodySize() int {
	n := 1
	for _, s := range m.Names {
		n += 1 + len(s)
	}
	return n
}
func (m *Watching) bodySize() int { return 1 + 4*len(m.Versions) }
func (m *Changed) bodySize() int  { return 1 + len(m.Name) + 4 }

// Type returns [TypeStatusOK].
func (*StatusOK) Type() Type { return TypeStatusOK }

// Type returns [TypeError].
func (*Error) Type() Type { return TypeError }

// AppendBody appends the body of m. It panics unless m offers 1 to 16
// versions.
func (m *Hello) AppendBody(b []byte) []byte {
	if len(m.Versions) < 1 || len(m.Versions) > maxVersions {
		panic("wire: Hello must offer 1 to 16 versions, not " + strconv.Itoa(len(m.Versions)))
	}
	b = append(b, byte(len(m.Versions)))
	for _, v := range m.Versions {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

// AppendBody appends the body of m. It panics if the name is longer than
// [MaxNameLen].
func (m *Get) AppendBody(b []byte) []byte {
	b = appendStr8(b, m.Name, "Get.Name")
	return binary.BigEndian.AppendUint32(b, m.Version)
}

// AppendBody appends nothing: a List has an empty body.
func (*List) AppendBody(b []byte) []byte { return b }

// AppendBody appends nothing: a Status has an empty body.
func (*Status) AppendBody(b []byte) []byte { return b }

// AppendBody appends the body of m. It panics if Agent is longer than
// [MaxNameLen].
func (m *HelloOK) AppendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, m.Version)
	return appendStr8(b, m.Agent, "HelloOK.Agent")
}

// AppendBody appends the body of m, including the secret value. It panics if
// the name is longer than [MaxNameLen] or the value than [MaxSecretSize].
func (m *Secret) AppendBody(b []byte) []byte {
	if len(m.Value) > MaxSecretSize {
		panic("wire: Secret.Value longer than MaxSecretSize")
	}
	b = appendStr8(b, m.Name, "Secret.Name")
	b = binary.BigEndian.AppendUint32(b, m.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Expires))
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Value)))
	return append(b, m.Value...)
}

// AppendBody appends the body of m. It panics if a name is longer than
// [MaxNameLen].
func (m *Names) AppendBody(b []byte) []byte {
	if uint64(len(m.Names)) > math.MaxUint32 {
		panic("wire: too many names")
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Names)))
	for _, n := range m.Names {
		b = appendStr8(b, n, "Names.Names")
	}
	return b
}

// AppendBody appends the body of m. It panics if Backend or Agent is longer
// than [MaxNameLen].
func (m *StatusOK) AppendBody(b []byte) []byte {
	var healthy byte
	if m.Healthy {
		healthy = 1
	}
	b = append(b, healthy)
	b = appendStr8(b, m.Backend, "StatusOK.Backend")
	b = binary.BigEndian.AppendUint32(b, m.Secrets)
	b = binary.BigEndian.AppendUint64(b, m.UptimeMS)
	return appendStr8(b, m.Agent, "StatusOK.Agent")
}

// AppendBody appends the body of m. It panics if the message is longer than
// 65535 bytes.
func (m *Error) AppendBody(b []byte) []byte {
	if len(m.Message) > math.MaxUint16 {
		panic("wire: Error.Message longer than 65535 bytes")
	}
	b = binary.BigEndian.AppendUint16(b, uint16(m.Code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Message)))
	return append(b, m.Message...)
}

func appendStr8(b []byte, s, field string) []byte {
	if len(s) > MaxNameLen {
		panic("wire: " + field + " longer than MaxNameLen")
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func (m *Hello) bodySize() int    { return 1 + 2*len(m.Versions) }
func (m *Get) bodySize() int      { return 1 + len(m.Name) + 4 }
func (*List) bodySize() int       { return 0 }
func (*Status) bodySize() int     { return 0 }
func (m *HelloOK) bodySize() int  { return 2 + 1 + len(m.Agent) }
func (m *Secret) bodySize() int   { return 1 + len(m.Name) + 4 + 8 + 4 + len(m.Value) }
func (m *StatusOK) bodySize() int { return 1 + 1 + len(m.Backend) + 4 + 8 + 1 + len(m.Agent) }
func (m *Error) bodySize() int    { return 2 + 2 + len(m.Message) }
func (m *Names) bodySize() int {
	n := 4
	for _, s := range m.Names {
		n += 1 + len(s)
	}
	return n
}

// String describes s with its value redacted:
//
//	Secret{Name: "binance/mm-prod", Version: 3, Expires: 0, Value: <redacted, 32 bytes>}
func (s Secret) String() string {
	return "Secret{Name: " + strconv.Quote(s.Name) +
		", Version: " + strconv.FormatUint(uint64(s.Version), 10) +
		", Expires: " + strconv.FormatInt(s.Expires, 10) +
		", Value: <redacted, " + strconv.Itoa(len(s.Value)) + " bytes>}"
}

// Format prints [Secret.String] for every verb and flag, prefixed "wire."
// for %#v, so no fmt verb can print the value. String, Format and LogValue
// have value receivers so that a Secret redacts itself as a value, a
// pointer or a struct field.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, "wire.")
	}
	fmt.Fprint(f, s.String())
}

// LogValue implements [slog.LogValuer]: the name, version, expiry and value
// length, never the value.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", s.Name),
		slog.Uint64("version", uint64(s.Version)),
		slog.Int64("expires", s.Expires),
		slog.Int("value_len", len(s.Value)),
	)
}
