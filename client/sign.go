package client

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/agent/wire"
)

// Signing through the agent (docs/signing.md): the agent holds the
// exchange API secret, checks each request against policy and returns
// what to add to it. The process never sees the secret.

// A SignRequest is an exchange request as the process will send it,
// without its authentication.
type SignRequest struct {
	Method string // GET, POST, PUT, DELETE, or WS for a WebSocket login or request
	Host   string // the API host, e.g. api.binance.com
	Path   string // e.g. /api/v3/order; for WS the login or method name
	Query  string // the raw query string, without '?'
	Body   []byte // the raw body
	// RecvWindow is how long the exchange accepts the request after its
	// timestamp (Binance and Bybit, whole milliseconds); 0: the default.
	RecvWindow time.Duration
	// Version is the credential's version to sign with; 0: the current.
	Version uint32
}

// A Field is a header or a WebSocket message parameter.
type Field struct {
	Name  string
	Value string
}

// Signed is what the process sends: its request with these headers set,
// and Query and Body in place of its own.
type Signed struct {
	Version  uint32 // the credential's version that signed
	Exchange string
	APIKey   string  // the API key id (public)
	Headers  []Field // set these, in order, replacing headers of the same name
	Query    string  // the final query string, without '?'
	Body     []byte  // the final body
	Params   []Field // WS: the parameters of the login or request message
	// Expires is when the exchange stops accepting the request; zero
	// when it does not say (Kraken: until a higher nonce is used).
	Expires time.Time
}

// Sign asks the agent to sign r with the credential name. A request the
// policy does not allow fails with [ErrDenied]; one the agent cannot read
// unambiguously with [ErrBadRequest] (the error says why); one over a
// per-key budget with [ErrRateLimited].
func (c *Client) Sign(ctx context.Context, name string, r SignRequest) (*Signed, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if len(r.Query) > wire.MaxSignPart || len(r.Body) > wire.MaxSignPart {
		return nil, fmt.Errorf("%w: query or body larger than %d bytes", ErrBadRequest, wire.MaxSignPart)
	}
	if r.RecvWindow < 0 || r.RecvWindow > time.Hour {
		return nil, fmt.Errorf("%w: receive window %v", ErrBadRequest, r.RecvWindow)
	}
	req := &wire.Sign{Name: name, Version: r.Version, Method: r.Method, Host: r.Host, Path: r.Path,
		Query: []byte(r.Query), Body: r.Body, RecvWindowMS: uint32(r.RecvWindow / time.Millisecond)}
	var s *Signed
	err := c.do(ctx, req, func(m wire.Message) error {
		a, ok := m.(*wire.Signed)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to sign", ErrProtocol, m)
		}
		s = &Signed{Version: a.Version, Exchange: a.Exchange, APIKey: a.APIKey, Headers: fields(a.Headers),
			Query: string(a.Query), Body: bytes.Clone(a.Body), Params: fields(a.Params)}
		if a.ExpiresMS != 0 {
			s.Expires = time.UnixMilli(a.ExpiresMS)
		}
		return nil
	})
	return s, err
}

func fields(in []wire.Field) []Field {
	out := make([]Field, len(in))
	for i, f := range in {
		out[i] = Field(f)
	}
	return out
}

// An Encoding is how [Client.HMAC] writes the MAC.
type Encoding uint8

// Encodings of a MAC.
const (
	Hex    = Encoding(wire.EncodingHex)    // lower-case hexadecimal
	Base64 = Encoding(wire.EncodingBase64) // standard base64 with padding
)

// HMAC returns the HMAC of message under the secret name (a plain secret,
// or an HMAC credential's secret), with h (crypto.SHA256 or
// crypto.SHA512), written in enc: for an exchange the agent has no
// signing scheme for. It needs the hmac permission.
func (c *Client) HMAC(ctx context.Context, name string, h crypto.Hash, enc Encoding, message []byte) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	req := &wire.HMAC{Name: name, Encoding: wire.MACEncoding(enc), Message: message}
	switch h {
	case crypto.SHA256:
		req.Hash = wire.HashSHA256
	case crypto.SHA512:
		req.Hash = wire.HashSHA512
	default:
		return "", fmt.Errorf("%w: hash %v (SHA-256 or SHA-512)", ErrBadRequest, h)
	}
	if enc != Hex && enc != Base64 || len(message) > wire.MaxSignPart {
		return "", fmt.Errorf("%w: encoding %d or a message of %d bytes", ErrBadRequest, enc, len(message))
	}
	var mac string
	err := c.do(ctx, req, func(m wire.Message) error {
		a, ok := m.(*wire.MAC)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to hmac", ErrProtocol, m)
		}
		mac = a.MAC
		return nil
	})
	return mac, err
}

// A Credential is what is not secret of an exchange credential.
type Credential struct {
	Version  uint32
	Exchange string
	APIKey   string // the API key id, which some libraries want up front
	KeyType  string // "hmac", "ed25519", "ecdsa-p256" or "rsa"
}

// Describe returns the public attributes of the credential name. It needs
// the sign or hmac permission on it.
func (c *Client) Describe(ctx context.Context, name string) (*Credential, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var cr *Credential
	err := c.do(ctx, &wire.Describe{Name: name}, func(m wire.Message) error {
		a, ok := m.(*wire.Described)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to describe", ErrProtocol, m)
		}
		cr = &Credential{Version: a.Version, Exchange: a.Exchange, APIKey: a.APIKey, KeyType: a.KeyType}
		return nil
	})
	return cr, err
}

// Transport is an [http.RoundTripper] that has each request signed by the
// agent with the credential Name before Base sends it, so that a Go bot
// signs by using an http.Client:
//
//	hc := &http.Client{Transport: &client.Transport{Client: c, Name: "binance/mm-prod"}}
//	resp, err := hc.Post("https://api.binance.com/api/v3/order",
//		"application/x-www-form-urlencoded", strings.NewReader(order))
//
// The request goes out as the process wrote it, without the exchange's
// authentication (no API key, timestamp, nonce or signature: the agent
// adds them, and refuses a request that has them). A request the policy
// refuses returns an error wrapping [ErrDenied] and is never sent.
type Transport struct {
	Client *Client
	Name   string
	// Base sends the signed request; nil means [http.DefaultTransport].
	Base http.RoundTripper
}

// RoundTrip signs req and sends it with Base. It does not change req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	signed, err := t.Client.Sign(req.Context(), t.Name, SignRequest{
		Method: req.Method,
		Host:   strings.ToLower(req.URL.Hostname()),
		Path:   req.URL.EscapedPath(),
		Query:  req.URL.RawQuery,
		Body:   body,
	})
	if err != nil {
		return nil, fmt.Errorf("keyward: signing %s %s: %w", req.Method, req.URL.Path, err)
	}
	out := req.Clone(req.Context())
	for _, h := range signed.Headers {
		out.Header.Set(h.Name, h.Value)
	}
	out.URL.RawQuery = signed.Query
	out.Body = io.NopCloser(bytes.NewReader(signed.Body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(signed.Body)), nil }
	out.ContentLength = int64(len(signed.Body))
	if len(signed.Body) == 0 {
		out.Body, out.GetBody = http.NoBody, nil
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(out)
}

// readBody reads and closes req's body, bounded by what the agent signs.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, wire.MaxSignPart+1))
	if err != nil {
		return nil, fmt.Errorf("keyward: reading the request body: %w", err)
	}
	if len(b) > wire.MaxSignPart {
		return nil, fmt.Errorf("%w: a request body over %d bytes", ErrBadRequest, wire.MaxSignPart)
	}
	return b, nil
}
