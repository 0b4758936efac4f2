package wire

import (
	"fmt"
	"log/slog"
	"strconv"
)

// Each message below is its type byte, its Go type and its body, described
// once by its fields method (see codec.go). Requests come first, each
// followed by its answer.

// Hello opens a connection and offers the protocol versions the client
// speaks. It must be the first frame on a connection.
type Hello struct {
	Versions []uint16 `json:"versions"` // 1 to 16 versions, in any order
}

// HelloOK accepts a [Hello] with the version the agent chose.
type HelloOK struct {
	Version uint16 `json:"version"`
	Agent   string `json:"agent"` // software name and version, such as "keyward 0.1.0"
}

// Type returns [TypeHello].
func (*Hello) Type() Type { return TypeHello }

// Type returns [TypeHelloOK].
func (*HelloOK) Type() Type { return TypeHelloOK }

func (m *Hello) fields(c *codec) {
	list8(c, &m.Versions, 1, maxVersions, "versions", u16Elem("version"))
}

func (m *HelloOK) fields(c *codec) {
	c.u16(&m.Version, "version")
	c.str8(&m.Agent, "agent")
}

// Get asks for a secret by name.
type Get struct {
	Name    string `json:"name"`    // at most MaxStr8Len bytes; the agent validates it further
	Version uint32 `json:"version"` // 0 asks for the current version
}

// Secret answers a [Get]. Its value is redacted when the message is
// formatted with fmt or logged with log/slog; only its length shows.
type Secret struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"` // the version served, never 0
	Expires int64  `json:"expires"` // unix seconds after which the value must not be used; 0 means never
	Value   []byte `json:"value"`   // at most MaxSecretSize bytes
}

// Type returns [TypeGet].
func (*Get) Type() Type { return TypeGet }

// Type returns [TypeSecret].
func (*Secret) Type() Type { return TypeSecret }

func (m *Get) fields(c *codec) {
	c.str8(&m.Name, "name")
	c.u32(&m.Version, "version")
}

func (m *Secret) fields(c *codec) {
	c.str8(&m.Name, "name")
	c.u32(&m.Version, "version")
	c.i64(&m.Expires, "expires")
	c.bytes32(&m.Value, MaxSecretSize, "value")
}

// List asks for the names of the secrets the caller may get.
type List struct{}

// Names answers a [List].
type Names struct {
	Names []string `json:"names"` // each at most MaxStr8Len bytes; the frame must fit MaxFrameSize
}

// Type returns [TypeList].
func (*List) Type() Type { return TypeList }

// Type returns [TypeNames].
func (*Names) Type() Type { return TypeNames }

func (*List) fields(*codec) {}

func (m *Names) fields(c *codec) { list32(c, &m.Names, "names", str8Elem("name")) }

// Status asks for the agent's health.
type Status struct{}

// StatusOK answers a [Status].
type StatusOK struct {
	Healthy  bool   `json:"healthy"`
	Backend  string `json:"backend"`   // the kind of key backend, such as "pkcs11" or "tpm"
	Secrets  uint32 `json:"secrets"`   // number of secrets loaded
	UptimeMS uint64 `json:"uptime_ms"` // milliseconds since the agent started
	Agent    string `json:"agent"`     // software name and version
}

// Type returns [TypeStatus].
func (*Status) Type() Type { return TypeStatus }

// Type returns [TypeStatusOK].
func (*StatusOK) Type() Type { return TypeStatusOK }

func (*Status) fields(*codec) {}

func (m *StatusOK) fields(c *codec) {
	c.boolean(&m.Healthy, "healthy")
	c.str8(&m.Backend, "backend")
	c.u32(&m.Secrets, "secrets")
	c.u64(&m.UptimeMS, "uptime_ms")
	c.str8(&m.Agent, "agent")
}

// Reload asks the agent to re-read one secret from its store (after a
// rotation or a removal) and answers once the agent serves what is on
// disk. It needs the admin permission on the name.
type Reload struct {
	Name string `json:"name"`
}

// Reloaded answers a Reload with the version now current, 0 when the
// secret is gone.
type Reloaded struct {
	Version uint32 `json:"version"`
}

// Type returns [TypeReload].
func (*Reload) Type() Type { return TypeReload }

// Type returns [TypeReloaded].
func (*Reloaded) Type() Type { return TypeReloaded }

func (m *Reload) fields(c *codec)   { c.str8(&m.Name, "name") }
func (m *Reloaded) fields(c *codec) { c.u32(&m.Version, "version") }

// Watch subscribes the connection to changes of the current version of
// each name (1 to [MaxWatch] names). It needs the watch permission on
// every name. After [Watching], the agent sends a [Changed] with id 0
// whenever a watched name gets another current version.
type Watch struct {
	Names []string `json:"names"`
}

// Watching answers a Watch with the current version of each name, in
// order; 0 when the name is not served.
type Watching struct {
	Versions []uint32 `json:"versions"`
}

// Changed tells a watching connection, unasked and with id 0, that name
// has a new current version (0: it is no longer served).
type Changed struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"`
}

// Type returns [TypeWatch].
func (*Watch) Type() Type { return TypeWatch }

// Type returns [TypeWatching].
func (*Watching) Type() Type { return TypeWatching }

// Type returns [TypeChanged].
func (*Changed) Type() Type { return TypeChanged }

func (m *Watch) fields(c *codec) { list8(c, &m.Names, 1, MaxWatch, "names", str8Elem("name")) }

func (m *Watching) fields(c *codec) {
	list8(c, &m.Versions, 1, MaxWatch, "versions", u32Elem("version"))
}

func (m *Changed) fields(c *codec) {
	c.str8(&m.Name, "name")
	c.u32(&m.Version, "version")
}

// Error answers any request that failed. It is also the Go error for that
// failure.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"` // human text, at most 65535 bytes; peers branch on Code only
}

// Type returns [TypeError].
func (*Error) Type() Type { return TypeError }

func (m *Error) fields(c *codec) {
	code := uint16(m.Code)
	c.u16(&code, "code")
	m.Code = Code(code)
	c.str16(&m.Message, "message")
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

// Health asks for the agent's health in detail: the backend's state and
// the secrets not served from their newest version. Like Status it is open
// to every caller; secrets and their problems are told only to callers
// the policy names.
type Health struct{}

// HealthOK answers a [Health].
type HealthOK struct {
	BackendOK    bool    `json:"backend_ok"`    // the last backend check passed
	BackendSince int64   `json:"backend_since"` // unix seconds when the backend last changed state; 0: not since start
	LastOK       int64   `json:"last_ok"`       // unix seconds of the last check that passed; 0: none yet
	Secrets      uint32  `json:"secrets"`       // number of secrets loaded
	Problems     []Issue `json:"problems"`      // the caller's secrets not served from their newest version
}

// An Issue is a secret that the agent does not serve from its newest
// version, in a [HealthOK].
type Issue struct {
	Name    string     `json:"name"`
	State   IssueState `json:"state"`
	Serving uint32     `json:"serving"` // the version a request for the current one gets; 0: none
	Newest  uint32     `json:"newest"`  // the newest version in the store
}

// An IssueState says why a secret is not served from its newest version.
type IssueState uint8

// The states of an [Issue].
const (
	IssueStale       IssueState = 1 // the newest version did not load (backend); an older one is served within its grace
	IssueUnavailable IssueState = 2 // the newest version did not load (backend); nothing is served
	IssueDamaged     IssueState = 3 // the newest version's envelope is damaged; a copy loaded before may be served
)

var issueNames = [...]string{IssueStale: "stale", IssueUnavailable: "unavailable", IssueDamaged: "damaged"}

// String returns "stale", "unavailable" or "damaged".
func (s IssueState) String() string {
	if s > 0 && int(s) < len(issueNames) {
		return issueNames[s]
	}
	return "IssueState(" + strconv.Itoa(int(s)) + ")"
}

// Type returns [TypeHealth].
func (*Health) Type() Type { return TypeHealth }

// Type returns [TypeHealthOK].
func (*HealthOK) Type() Type { return TypeHealthOK }

func (*Health) fields(*codec) {}

func (m *HealthOK) fields(c *codec) {
	c.boolean(&m.BackendOK, "backend_ok")
	c.i64(&m.BackendSince, "backend_since")
	c.i64(&m.LastOK, "last_ok")
	c.u32(&m.Secrets, "secrets")
	list32(c, &m.Problems, "problems", func(c *codec, p *Issue) {
		c.str8(&p.Name, "name")
		st := uint8(p.State)
		c.u8(&st, "state")
		p.State = IssueState(st)
		c.u32(&p.Serving, "serving")
		c.u32(&p.Newest, "newest")
	})
}

// Put stores a secret value through the agent, which seals it with the
// backend session it holds and serves it before answering, so that an
// administrator needs neither the backend's PIN nor the store's owner. It
// needs the admin permission on the name.
type Put struct {
	Name    string   `json:"name"`
	Flags   PutFlags `json:"flags"`
	Expires int64    `json:"expires"` // unix seconds when the version stops being served; 0: never
	Grace   uint32   `json:"grace"`   // seconds the previous version stays served; 0: retired at once
	Value   []byte   `json:"value"`   // 1 to MaxSecretSize bytes
}

// PutFlags modify a [Put]. Undefined bits must be zero.
type PutFlags uint8

const (
	// PutNewVersion allows adding a version to an existing secret.
	PutNewVersion PutFlags = 1 << iota
	// PutMustExist refuses a secret that has no version yet (a rotation:
	// a typo must not create a secret).
	PutMustExist

	putFlagsDefined = PutNewVersion | PutMustExist
)

// Stored answers a [Put] with the version stored, now served.
type Stored struct {
	Version   uint32 `json:"version"`
	PrevUntil int64  `json:"prev_until"` // unix seconds when the previous version stops being served; 0: at once, or none
}

// Type returns [TypePut].
func (*Put) Type() Type { return TypePut }

// Type returns [TypeStored].
func (*Stored) Type() Type { return TypeStored }

func (m *Put) fields(c *codec) {
	c.str8(&m.Name, "name")
	putOptions(c, &m.Flags, &m.Expires, &m.Grace)
	c.bytes32(&m.Value, MaxSecretSize, "value")
}

// putOptions codes the flags, expiry and grace of a [Put] or a
// [PutCredential].
func putOptions(c *codec, flags *PutFlags, expires *int64, grace *uint32) {
	f := uint8(*flags)
	c.u8(&f, "flags")
	if c.decoding() && c.err == nil && PutFlags(f)&^putFlagsDefined != 0 {
		c.fail("flags %#02x has undefined bits", f)
	}
	*flags = PutFlags(f)
	c.i64(expires, "expires")
	c.u32(grace, "grace")
}

func (m *Stored) fields(c *codec) {
	c.u32(&m.Version, "version")
	c.i64(&m.PrevUntil, "prev_until")
}

// String describes m with its value redacted.
func (m Put) String() string {
	return "Put{Name: " + strconv.Quote(m.Name) + ", Flags: " + strconv.Itoa(int(m.Flags)) +
		", Expires: " + strconv.FormatInt(m.Expires, 10) + ", Grace: " + strconv.FormatUint(uint64(m.Grace), 10) +
		", Value: <redacted, " + strconv.Itoa(len(m.Value)) + " bytes>}"
}

// Format prints [Put.String] for every verb, so no fmt verb can print the
// value.
func (m Put) Format(f fmt.State, _ rune) { fmt.Fprint(f, m.String()) }

// LogValue implements [slog.LogValuer] without the value.
func (m Put) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", m.Name), slog.Int("value_len", len(m.Value)))
}

// Remove deletes a version of a secret, or all of them (version 0), and
// stops serving it. It needs the admin permission on the name.
type Remove struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"`
}

// Removed answers a [Remove] with how many versions were deleted.
type Removed struct {
	Count uint32 `json:"count"`
}

// Type returns [TypeRemove].
func (*Remove) Type() Type { return TypeRemove }

// Type returns [TypeRemoved].
func (*Removed) Type() Type { return TypeRemoved }

func (m *Remove) fields(c *codec) {
	c.str8(&m.Name, "name")
	c.u32(&m.Version, "version")
}

func (m *Removed) fields(c *codec) { c.u32(&m.Count, "count") }

// Prune deletes the versions past their grace period or expiry, of the
// secrets the caller has the admin permission on.
type Prune struct{}

// Pruned answers a [Prune] with the versions deleted.
type Pruned struct {
	Versions []PrunedVersion `json:"versions"`
}

// A PrunedVersion is one version deleted by a [Prune].
type PrunedVersion struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"`
	Retired int64  `json:"retired"` // unix seconds when it stopped being served
}

// Type returns [TypePrune].
func (*Prune) Type() Type { return TypePrune }

// Type returns [TypePruned].
func (*Pruned) Type() Type { return TypePruned }

func (*Prune) fields(*codec) {}

func (m *Pruned) fields(c *codec) {
	list32(c, &m.Versions, "versions", func(c *codec, v *PrunedVersion) {
		c.str8(&v.Name, "name")
		c.u32(&v.Version, "version")
		c.i64(&v.Retired, "retired")
	})
}

// Sign asks the agent to sign an exchange request with the API
// credential it holds under Name (docs/signing.md): the caller gets what
// to send, never the secret. It needs the sign permission on the name,
// for this request (policy scopes).
type Sign struct {
	Name         string `json:"name"`
	Version      uint32 `json:"version"`        // 0: the current version
	Method       string `json:"method"`         // GET, POST, PUT, DELETE, or WS for a WebSocket login
	Host         string `json:"host"`           // e.g. api.binance.com
	Path         string `json:"path"`           // e.g. /api/v3/order; for WS the login or method name
	Query        []byte `json:"query"`          // the raw query, without '?', as it will be sent
	Body         []byte `json:"body"`           // the raw body
	RecvWindowMS uint32 `json:"recv_window_ms"` // Binance and Bybit; 0: the exchange's default
}

// Signed answers a [Sign] with exactly what the caller sends: the headers
// to set, the query and body to send instead of its own, and for a
// WebSocket login the parameters of the login message.
type Signed struct {
	Version   uint32  `json:"version"`    // the credential's version used
	Exchange  string  `json:"exchange"`   // e.g. binance
	APIKey    string  `json:"api_key"`    // the API key id (public)
	Headers   []Field `json:"headers"`    // set these, in order
	Query     []byte  `json:"query"`      // the final query string, without '?'
	Body      []byte  `json:"body"`       // the final body
	Params    []Field `json:"params"`     // WS: the login message's parameters
	ExpiresMS int64   `json:"expires_ms"` // Unix milliseconds after which the exchange refuses it; 0: none
}

// A Field is a name and a value: an HTTP header, or a parameter of a
// WebSocket message.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Type returns [TypeSign].
func (*Sign) Type() Type { return TypeSign }

// Type returns [TypeSigned].
func (*Signed) Type() Type { return TypeSigned }

// MaxSignPart bounds the query and the body of a Sign: together they must
// also fit in a request frame ([MaxRequestSize]).
const MaxSignPart = 64 << 10

func (m *Sign) fields(c *codec) {
	c.str8(&m.Name, "name")
	c.u32(&m.Version, "version")
	c.str8(&m.Method, "method")
	c.str8(&m.Host, "host")
	c.str16(&m.Path, "path")
	c.bytes32(&m.Query, MaxSignPart, "query")
	c.bytes32(&m.Body, MaxSignPart, "body")
	c.u32(&m.RecvWindowMS, "recv_window_ms")
}

func fieldElem(c *codec, f *Field) {
	c.str8(&f.Name, "name")
	c.str16(&f.Value, "value")
}

func (m *Signed) fields(c *codec) {
	c.u32(&m.Version, "version")
	c.str8(&m.Exchange, "exchange")
	c.str16(&m.APIKey, "api_key")
	list8(c, &m.Headers, 0, 255, "headers", fieldElem)
	c.bytes32(&m.Query, MaxSignPart*2, "query")
	c.bytes32(&m.Body, MaxSignPart*2, "body")
	list8(c, &m.Params, 0, 255, "params", fieldElem)
	c.i64(&m.ExpiresMS, "expires_ms")
}

// HMAC asks the agent for the HMAC of Message under the secret it holds
// under Name, for an exchange without a signing scheme. It needs the hmac
// permission on the name, which is granted apart from sign.
type HMAC struct {
	Name     string      `json:"name"`
	Version  uint32      `json:"version"` // 0: the current version
	Hash     HMACHash    `json:"hash"`
	Encoding MACEncoding `json:"encoding"`
	Message  []byte      `json:"message"` // at most MaxSignPart bytes
}

// MAC answers an [HMAC] with the encoded MAC.
type MAC struct {
	Version uint32 `json:"version"` // the secret's version used
	MAC     string `json:"mac"`
}

// An HMACHash is the hash of an [HMAC].
type HMACHash uint8

// An MACEncoding is how a [MAC] is written.
type MACEncoding uint8

// Hashes and encodings of an HMAC.
const (
	HashSHA256 HMACHash = 1
	HashSHA512 HMACHash = 2

	EncodingHex    MACEncoding = 1
	EncodingBase64 MACEncoding = 2
)

// Type returns [TypeHMAC].
func (*HMAC) Type() Type { return TypeHMAC }

// Type returns [TypeMAC].
func (*MAC) Type() Type { return TypeMAC }

func (m *HMAC) fields(c *codec) {
	c.str8(&m.Name, "name")
	c.u32(&m.Version, "version")
	h, e := uint8(m.Hash), uint8(m.Encoding)
	c.u8(&h, "hash")
	c.u8(&e, "encoding")
	if c.decoding() && c.err == nil && (h < 1 || h > 2 || e < 1 || e > 2) {
		c.fail("hash %d or encoding %d out of range", h, e)
	}
	m.Hash, m.Encoding = HMACHash(h), MACEncoding(e)
	c.bytes32(&m.Message, MaxSignPart, "message")
}

func (m *MAC) fields(c *codec) {
	c.u32(&m.Version, "version")
	c.str16(&m.MAC, "mac")
}

// PutCredential stores an exchange API credential through the agent, like
// [Put] (same flags), with its non-secret attributes: the exchange and the
// API key id. The value is the secret (an HMAC secret, Kraken's base64
// secret or a PEM private key; for OKX, a newline and the passphrase
// follow). The agent checks that the exchange takes it before storing.
type PutCredential struct {
	Name     string   `json:"name"`
	Flags    PutFlags `json:"flags"`
	Expires  int64    `json:"expires"`
	Grace    uint32   `json:"grace"`
	Exchange string   `json:"exchange"`
	APIKey   string   `json:"api_key"`
	Value    []byte   `json:"value"`
}

// Type returns [TypePutCredential].
func (*PutCredential) Type() Type { return TypePutCredential }

func (m *PutCredential) fields(c *codec) {
	c.str8(&m.Name, "name")
	putOptions(c, &m.Flags, &m.Expires, &m.Grace)
	c.str8(&m.Exchange, "exchange")
	c.str16(&m.APIKey, "api_key")
	c.bytes32(&m.Value, MaxSecretSize, "value")
}

// String describes m with its value redacted.
func (m PutCredential) String() string {
	return "PutCredential{Name: " + strconv.Quote(m.Name) + ", Exchange: " + strconv.Quote(m.Exchange) +
		", APIKey: " + strconv.Quote(m.APIKey) + ", Value: <redacted, " + strconv.Itoa(len(m.Value)) + " bytes>}"
}

// Format prints [PutCredential.String] for every verb.
func (m PutCredential) Format(f fmt.State, _ rune) { fmt.Fprint(f, m.String()) }

// LogValue implements [slog.LogValuer] without the value.
func (m PutCredential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", m.Name), slog.String("exchange", m.Exchange), slog.Int("value_len", len(m.Value)))
}

// Describe asks what is not secret of an exchange credential: the
// exchange, the API key id and the key type, for a client that needs the
// key id (ccxt's apiKey) without the secret. It needs the sign or hmac
// permission on the name.
type Describe struct {
	Name string `json:"name"`
}

// Described answers a [Describe].
type Described struct {
	Version  uint32 `json:"version"`
	Exchange string `json:"exchange"`
	APIKey   string `json:"api_key"`
	KeyType  string `json:"key_type"`
}

// Type returns [TypeDescribe].
func (*Describe) Type() Type { return TypeDescribe }

// Type returns [TypeDescribed].
func (*Described) Type() Type { return TypeDescribed }

func (m *Describe) fields(c *codec) { c.str8(&m.Name, "name") }

func (m *Described) fields(c *codec) {
	c.u32(&m.Version, "version")
	c.str8(&m.Exchange, "exchange")
	c.str16(&m.APIKey, "api_key")
	c.str8(&m.KeyType, "key_type")
}
