package exchange

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// An Exchange names a venue whose request signing this package implements.
// The names are ccxt's exchange ids.
type Exchange string

// The exchanges this package signs for.
const (
	// Binance is Binance spot, margin and wallet (api.binance.com, /api and
	// /sapi) and USDⓈ-M and COIN-M futures (fapi, dapi): one scheme.
	Binance Exchange = "binance"
	// Bybit is the Bybit v5 API.
	Bybit Exchange = "bybit"
	// OKX is the OKX v5 API.
	OKX Exchange = "okx"
	// Kraken is the Kraken spot REST API.
	Kraken Exchange = "kraken"
	// Coinbase is Coinbase Advanced Trade with CDP API keys (JWT).
	Coinbase Exchange = "coinbase"
)

// Methods of a [Request]. WS is not an HTTP method: it asks for the
// credentials of a WebSocket login or of a signed WebSocket request.
const (
	GET    = "GET"
	POST   = "POST"
	PUT    = "PUT"
	DELETE = "DELETE"
	WS     = "WS"
)

// Limits on a request. Larger requests are refused with [ErrMalformed].
const (
	MaxQuerySize = 64 << 10 // bytes of Request.Query
	MaxBodySize  = 64 << 10 // bytes of Request.Body
	MaxParams    = 256      // parameters in the query and body, nested JSON members included
	MaxPathSize  = 1024     // bytes of Request.Path
	// MaxSignedParams bounds Signed.Params (a Binance WS request's
	// parameters and the agent's): the agent's answer counts them in a byte.
	MaxSignedParams = 255
	maxJSONDepth    = 16
)

// Errors that [Parse] and [Sign] wrap, for callers to branch on with
// [errors.Is]. Every request error is a *[RequestError] wrapping one of
// ErrMalformed, ErrAmbiguous or ErrUnsupported.
var (
	// ErrMalformed: the request breaks the syntax this package accepts.
	ErrMalformed = errors.New("exchange: malformed request")
	// ErrAmbiguous: the request could be read in more than one way (a
	// duplicate parameter, an escape in a name, a '+' in a value), so what
	// the agent checks might differ from what the exchange executes.
	ErrAmbiguous = errors.New("exchange: ambiguous request")
	// ErrUnsupported: the request is well formed but this exchange, or
	// this key, cannot sign it.
	ErrUnsupported = errors.New("exchange: unsupported request")
	// ErrBadKey: [NewKey] cannot use the credential.
	ErrBadKey = errors.New("exchange: unusable credential")
	// ErrDestroyed: the key was destroyed with [Key.Destroy].
	ErrDestroyed = errors.New("exchange: key destroyed")
)

// A RequestError says which part of a request is wrong, and why. It
// quotes at most [MaxEcho] bytes of any part of the request, so that its
// text stays short whatever the request (the agent sends it back in a
// frame and writes it to the audit trail).
type RequestError struct {
	Exchange Exchange
	Part     string // "method", "host", "path", "query", "body", "recv window", "key"
	Reason   string // what is wrong and what to do instead
	Err      error  // ErrMalformed, ErrAmbiguous or ErrUnsupported
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("exchange: %s request %s: %s", e.Exchange, e.Part, e.Reason)
}

// Unwrap returns ErrMalformed, ErrAmbiguous or ErrUnsupported.
func (e *RequestError) Unwrap() error { return e.Err }

// MaxEcho bounds what a [RequestError] quotes of one part of a request
// (a path, a parameter name or value), in bytes.
const MaxEcho = 128

// reqErr makes a *RequestError, cutting every string it quotes (the part
// included) to MaxEcho bytes.
func reqErr(x Exchange, part string, err error, format string, args ...any) *RequestError {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = echo(s)
		}
	}
	return &RequestError{Exchange: x, Part: echo(part), Reason: fmt.Sprintf(format, args...), Err: err}
}

// echo returns s, or its first MaxEcho bytes (not splitting a UTF-8
// sequence) and "…" if it is longer.
func echo(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	n := MaxEcho
	for n > MaxEcho-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// A Request is what a trading process asks the agent to sign, in the
// process's own bytes: the agent signs it, the process sends it.
type Request struct {
	// Method is GET, POST, PUT, DELETE, or WS for WebSocket credentials.
	Method string
	// Host is the API host the request goes to, in lower case, e.g.
	// "api.binance.com". Coinbase's JWT covers it; other exchanges do not
	// sign it, but policy may match it (testnet or production).
	Host string
	// Path is the HTTP request path, e.g. "/api/v3/order". For WS it names
	// what is signed: Binance's WebSocket API method ("session.logon",
	// "order.place", ...); "login" for OKX, Bybit and Coinbase.
	Path string
	// Query is the raw query string without '?', exactly as the process
	// will send it, without the exchange's authentication parameters. For
	// a Binance WS request it carries the method's parameters.
	Query string
	// Body is the raw request body.
	Body []byte
	// RecvWindow is how long after its timestamp the exchange accepts the
	// request, for Binance and Bybit, in whole milliseconds up to 60s; zero
	// means ccxt's default (Binance 10s, Bybit 5s). Other exchanges take
	// none and refuse a non-zero value.
	RecvWindow time.Duration
}

// A Param is one request parameter as the exchange reads it.
type Param struct {
	// Name is the parameter name, [A-Za-z0-9_.-] only.
	Name string
	// Value is the decoded value of a form parameter or of a JSON string;
	// for other JSON values (numbers, true, false, null, objects and
	// arrays) it is their JSON text, and Raw is true.
	Value string
	Raw   bool
}

// Parsed is a request checked by [Parse]: the agent's view of it for
// policy, and the only input [Sign] accepts, so that what is signed is
// exactly what policy judged. A Parsed is immutable and safe for
// concurrent use.
type Parsed struct {
	Exchange Exchange
	Method   string // GET, POST, PUT, DELETE or WS
	Host     string
	Path     string
	// Params are the top-level parameters of the query, then of the body,
	// in request order.
	Params []Param
	// Items are the parameters of each order of a batch: the elements of a
	// JSON array body (OKX), or of the exchange's batch parameter (Binance
	// batchOrders, Bybit request, Kraken orders).
	Items [][]Param
	// Symbols are the values of the exchange's symbol parameter
	// ([Info].SymbolParam) in Params and Items, in order; each is a string.
	Symbols []string
	// FundParams are the names of fund-movement parameters
	// ([Info].FundParams) present in Params or Items.
	FundParams []string
	// SignsParams says whether the signature covers Params and Items
	// ([Info].SignsParams).
	SignsParams bool
	// RecvWindow is the receive window that Sign will use (the exchange's
	// default when the request gave none), or zero where there is none.
	RecvWindow time.Duration

	query string
	body  string
	json  bool // body is JSON (else form or empty)
}

// Query returns the request's query string, as given.
func (p *Parsed) Query() string { return p.query }

// Body returns the request's body, as given.
func (p *Parsed) Body() string { return p.body }

// A Field is a name and a value the process adds to its request: an HTTP
// header, or a parameter of a WebSocket message.
type Field struct {
	Name  string
	Value []byte
}

// Signed says exactly what the process must send. A Signed reused with
// [SignTo] is overwritten, values included; it is not safe for concurrent
// use.
type Signed struct {
	// Headers are HTTP headers to set, in this order; they replace any
	// header of the same name (Content-Type included).
	Headers []Field
	// Query is the final query string, without '?'; empty means none. It
	// replaces the request's query.
	Query []byte
	// Body is the final body; it replaces the request's body.
	Body []byte
	// Params are, for WS, the parameters of the login or request message,
	// in order (see docs/signing.md for each exchange's message); at most
	// MaxSignedParams.
	Params []Field
	// Digest is the SHA-256 of exactly the bytes the signature covers,
	// for the audit log.
	Digest [32]byte
	// Expires is when the exchange stops accepting the request; zero for
	// Kraken, whose requests stay valid until a higher nonce is used.
	Expires time.Time

	buf []byte   // arena for header and parameter values
	msg []byte   // the payload being signed
	sum [64]byte // MAC output
}

// Info describes what policy needs to know about an exchange's scheme.
type Info struct {
	Exchange Exchange
	// SymbolParam is the parameter that names the instrument: Binance and
	// Bybit "symbol", OKX "instId", Kraken "pair", Coinbase "product_id".
	SymbolParam string
	// SignsPath says whether the signature covers the request path. When
	// it does not (Binance, Bybit), a signature obtained for one path is
	// valid on any other path with the same parameters.
	SignsPath bool
	// SignsParams says whether the signature covers the query and body.
	// Coinbase's JWT covers only the method, host and path: the process
	// can send any parameters with it until it expires.
	SignsParams bool
	// FundParams are parameter names that the exchange's withdrawal and
	// transfer endpoints take and its order endpoints do not, sorted; see
	// docs/signing.md for the endpoints each comes from.
	FundParams []string
	// KeyTypes are the key types the exchange accepts.
	KeyTypes []KeyType
	// Methods are the request methods the scheme signs.
	Methods []string
	// RecvWindow is the default receive window, zero if none.
	RecvWindow time.Duration
	// IncreasingNonce says that the exchange refuses a nonce not greater
	// than the last one it saw for the key (Kraken), so the signer's
	// counter must keep growing across restarts.
	IncreasingNonce bool
	// Docs are the exchange documentation pages the scheme follows.
	Docs []string
}

// Info returns what policy needs to know about x, and false if this
// package does not sign for x.
func (x Exchange) Info() (Info, bool) {
	s, ok := schemes[x]
	if !ok {
		return Info{}, false
	}
	// Copies: a caller editing its Info must not change the agent's.
	i := s.info
	i.FundParams = slices.Clone(i.FundParams)
	i.KeyTypes = slices.Clone(i.KeyTypes)
	i.Methods = slices.Clone(i.Methods)
	i.Docs = slices.Clone(i.Docs)
	return i, true
}

// Exchanges returns the exchanges this package signs for.
func Exchanges() []Exchange {
	xs := make([]Exchange, 0, len(schemes))
	for x := range schemes {
		xs = append(xs, x)
	}
	slices.Sort(xs)
	return xs
}

// IsFundParam reports whether name is one of x's fund-movement parameters,
// ignoring case.
func (i *Info) IsFundParam(name string) bool {
	for _, f := range i.FundParams {
		if strings.EqualFold(f, name) {
			return true
		}
	}
	return false
}

// A scheme is one exchange's request format and signature.
type scheme struct {
	info Info
	// reserved are the parameter names the agent adds (case-insensitive).
	reserved []string
	// wsReserved are those of a WS request, if different.
	wsReserved []string
	// wsRecvWindow is the default receive window of a WS request, if it
	// differs from Info.RecvWindow.
	wsRecvWindow time.Duration
	// check validates the method, path and where the parameters are, once
	// they are parsed.
	check func(p *Parsed) error
	// bodyJSON says whether p's body is JSON (else form-urlencoded).
	bodyJSON func(p *Parsed) bool
	// arrayBody says whether a JSON body may be an array of objects.
	arrayBody bool
	// batchParam is the parameter holding a batch of orders, "" if none.
	batchParam string
	// sign signs p into s.
	sign func(s *Signed, k *Key, p *Parsed, now time.Time, nonce uint64) error
}

var schemes = map[Exchange]*scheme{
	Binance:  binance,
	Bybit:    bybit,
	OKX:      okx,
	Kraken:   kraken,
	Coinbase: coinbase,
}

// Sign signs p with k at time now. nonce is the next value of the
// agent's counter for k: Kraken requires it to grow with every request on
// a key (ccxt uses the time in milliseconds); Coinbase derives the JWT's
// nonce from it and now; the others ignore it. Sign is deterministic:
// ECDSA signatures follow RFC 6979, as ccxt's do.
func Sign(k *Key, p *Parsed, now time.Time, nonce uint64) (*Signed, error) {
	s := new(Signed)
	if err := SignTo(s, k, p, now, nonce); err != nil {
		return nil, err
	}
	return s, nil
}

// SignTo is [Sign] writing into s, reusing its memory: a Signed kept per
// connection makes HMAC signing allocation-free. The previous contents of
// s, including the values of its Headers and Params, are overwritten; after
// an error they are unspecified.
func SignTo(s *Signed, k *Key, p *Parsed, now time.Time, nonce uint64) error {
	if k.destroyed.Load() {
		return ErrDestroyed
	}
	if k.exchange != p.Exchange {
		return reqErr(p.Exchange, "key", ErrUnsupported, "the key is a %s key", k.exchange)
	}
	if now.UnixMilli() <= 0 {
		return reqErr(p.Exchange, "time", ErrUnsupported, "the time %v is before 1970", now)
	}
	s.Headers = s.Headers[:0]
	s.Params = s.Params[:0]
	s.Query = s.Query[:0]
	s.Body = s.Body[:0]
	s.buf = s.buf[:0]
	s.msg = s.msg[:0]
	s.Expires = time.Time{}
	return schemes[p.Exchange].sign(s, k, p, now, nonce)
}

// header appends a header whose value is what f appends to the arena.
func (s *Signed) header(name string, value []byte) {
	s.Headers = append(s.Headers, Field{Name: name, Value: value})
}

// param appends a WS parameter.
func (s *Signed) param(name string, value []byte) {
	s.Params = append(s.Params, Field{Name: name, Value: value})
}

// str copies v into the arena and returns the copy.
func (s *Signed) str(v string) []byte {
	n := len(s.buf)
	s.buf = append(s.buf, v...)
	return s.buf[n:len(s.buf):len(s.buf)]
}

// mark returns the arena's length, for since.
func (s *Signed) mark() int { return len(s.buf) }

// since returns what was appended to the arena after mark m.
func (s *Signed) since(m int) []byte { return s.buf[m:len(s.buf):len(s.buf)] }
