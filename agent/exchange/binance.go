package exchange

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Binance signs the parameters, not the path: the signature payload is the
// query string followed by the body ("totalParams"), with timestamp and
// recvWindow among the parameters; the signature is appended as the last
// parameter, signature=…: hex HMAC-SHA256, or base64 Ed25519 or
// RSASSA-PKCS1-v1_5 SHA-256, percent-encoded. The key id goes in the
// X-MBX-APIKEY header.
//
// Where the agent's parameters go is where ccxt puts them: timestamp first,
// then the request's parameters, then recvWindow, then signature; in the
// query for GET and DELETE, in the body for POST and PUT (in the query for
// a POST or PUT that has its parameters in the query and no body).
//
// The WebSocket API signs the method's parameters with apiKey and timestamp
// added, sorted by name, values not encoded.
//
//   - https://github.com/binance/binance-spot-api-docs/blob/master/rest-api.md#signed-endpoint-security
//   - https://github.com/binance/binance-spot-api-docs/blob/master/web-socket-api.md#signed-request-security
//   - https://github.com/binance/binance-spot-api-docs/blob/master/web-socket-api.md#log-in-with-api-key-signed
//   - https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info#signed-trade-and-user_data-endpoint-security
var binance = &scheme{
	info: Info{
		Exchange:    Binance,
		SymbolParam: "symbol",
		SignsPath:   false,
		SignsParams: true,
		FundParams:  []string{"address", "addressTag", "amount", "asset", "email", "fromEmail", "questionnaire", "toEmail"},
		KeyTypes:    []KeyType{HMACKey, Ed25519Key, RSAKey},
		Methods:     []string{GET, POST, PUT, DELETE, WS},
		RecvWindow:  10 * time.Second,
		Docs: []string{
			"https://github.com/binance/binance-spot-api-docs/blob/master/rest-api.md#signed-endpoint-security",
			"https://github.com/binance/binance-spot-api-docs/blob/master/web-socket-api.md#signed-request-security",
			"https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info",
			"https://developers.binance.com/docs/wallet/capital/withdraw",
			"https://developers.binance.com/docs/sub_account/asset-management/Universal-Transfer",
		},
	},
	reserved:   []string{"timestamp", "signature", "recvWindow"},
	wsReserved: []string{"timestamp", "signature", "recvWindow", "apiKey"},
	check:      binanceCheck,
	bodyJSON:   func(*Parsed) bool { return false },
	batchParam: "batchOrders",
	sign:       binanceSign,
}

// maxBinanceWSParams bounds a WS request's parameters: with the four the
// agent adds (apiKey, timestamp, recvWindow, signature), [Signed.Params]
// holds at most MaxSignedParams.
const maxBinanceWSParams = MaxSignedParams - 4

var binancePrefixes = []string{"/api/", "/sapi/", "/fapi/", "/dapi/", "/papi/", "/eapi/"}

func binanceCheck(p *Parsed) error {
	x := p.Exchange
	if p.Method == WS {
		if !wsMethodName(p.Path) {
			return reqErr(x, "path", ErrMalformed, "%q: for WS, the path is the WebSocket API method, such as session.logon or order.place", p.Path)
		}
		if p.body != "" {
			return reqErr(x, "body", ErrMalformed, "a WS request carries its parameters in Query")
		}
		if len(p.Params) > maxBinanceWSParams {
			return reqErr(x, "query", ErrMalformed, "%d parameters; a WS request takes at most %d", len(p.Params), maxBinanceWSParams)
		}
		for _, prm := range p.Params {
			if strings.ContainsAny(prm.Value, "&=") {
				return reqErr(x, "query", ErrAmbiguous, "parameter %q contains '&' or '=', which the WebSocket signature payload does not escape", prm.Name)
			}
		}
		return nil
	}
	if !slices.ContainsFunc(binancePrefixes, func(pre string) bool { return strings.HasPrefix(p.Path, pre) }) {
		return reqErr(x, "path", ErrUnsupported, "%q: binance signed paths start with one of %v", p.Path, binancePrefixes)
	}
	switch {
	case (p.Method == GET || p.Method == DELETE) && p.body != "":
		return reqErr(x, "body", ErrMalformed, "a %s carries its parameters in the query, not the body", p.Method)
	case p.query != "" && p.body != "":
		return reqErr(x, "query", ErrAmbiguous, "parameters in both the query and the body: binance signs them concatenated without a separator; put them all in the body")
	}
	return nil
}

// wsMethodName reports whether m looks like a WebSocket API method name.
func wsMethodName(m string) bool {
	if m == "" || len(m) > 64 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !nameChar(c) {
			return false
		}
	}
	return true
}

func binanceSign(s *Signed, k *Key, p *Parsed, now time.Time, _ uint64) error {
	window := p.RecvWindow.Milliseconds()
	s.Expires = time.UnixMilli(now.UnixMilli() + window)
	if p.Method == WS {
		return binanceSignWS(s, k, p, now, window)
	}
	client, inQuery := p.body, false
	if p.Method == GET || p.Method == DELETE || (p.body == "" && p.query != "") {
		client, inQuery = p.query, true
	}
	msg := append(s.msg, "timestamp="...)
	msg = appendMillis(msg, now)
	if client != "" {
		msg = append(msg, '&')
		msg = append(msg, client...)
	}
	msg = append(msg, "&recvWindow="...)
	msg = strconv.AppendInt(msg, window, 10)
	sig, err := s.seal(k, msg, false)
	if err != nil {
		return err
	}
	out := append(s.Query, msg...)
	out = append(out, "&signature="...)
	out = appendURIComponent(out, sig) // base64's '+', '/', '='; hex is unchanged
	s.header("X-MBX-APIKEY", s.str(k.id))
	if inQuery {
		s.Query = out
		return nil
	}
	s.Query, s.Body = s.Body[:0], out
	s.header("Content-Type", s.str("application/x-www-form-urlencoded"))
	return nil
}

func binanceSignWS(s *Signed, k *Key, p *Parsed, now time.Time, window int64) error {
	if p.Path == "session.logon" && k.typ != Ed25519Key {
		return reqErr(p.Exchange, "key", ErrUnsupported, "session.logon takes only Ed25519 keys; this is an %s key", k.typ)
	}
	for _, prm := range p.Params {
		s.param(prm.Name, s.str(prm.Value))
	}
	s.param("apiKey", s.str(k.id))
	m := s.mark()
	s.buf = appendMillis(s.buf, now)
	s.param("timestamp", s.since(m))
	m = s.mark()
	s.buf = strconv.AppendInt(s.buf, window, 10)
	s.param("recvWindow", s.since(m))
	slices.SortFunc(s.Params, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })

	msg := s.msg
	for i, f := range s.Params {
		if i > 0 {
			msg = append(msg, '&')
		}
		msg = append(msg, f.Name...)
		msg = append(msg, '=')
		msg = append(msg, f.Value...)
	}
	sig, err := s.seal(k, msg, false)
	if err != nil {
		return err
	}
	s.param("signature", sig)
	return nil
}
