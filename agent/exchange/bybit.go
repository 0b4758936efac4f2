package exchange

import (
	"strconv"
	"time"
)

// Bybit v5 signs timestamp + api key + recv_window + payload, where the
// payload is the query string of a GET and the JSON body of a POST: the
// path is not signed. The signature is hex HMAC-SHA256, or base64
// RSASSA-PKCS1-v1_5 SHA-256 for RSA keys, in X-BAPI-SIGN; the key id,
// timestamp and receive window travel in X-BAPI-API-KEY, X-BAPI-TIMESTAMP
// and X-BAPI-RECV-WINDOW. The agent changes neither query nor body.
//
// The WebSocket login ("auth") signs "GET/realtime" followed by an expiry
// time in milliseconds.
//
//   - https://bybit-exchange.github.io/docs/v5/guide#authentication
//   - https://bybit-exchange.github.io/docs/v5/ws/connect#authentication
//   - https://bybit-exchange.github.io/docs/v5/asset/withdraw
//   - https://bybit-exchange.github.io/docs/v5/asset/transfer/unitransfer
//   - https://bybit-exchange.github.io/docs/v5/asset/transfer/create-inter-transfer
var bybit = &scheme{
	info: Info{
		Exchange:    Bybit,
		SymbolParam: "symbol",
		SignsPath:   false,
		SignsParams: true,
		FundParams:  []string{"address", "amount", "beneficiary", "fromMemberId", "tag", "toMemberId", "transferId"},
		KeyTypes:    []KeyType{HMACKey, RSAKey},
		Methods:     []string{GET, POST, WS},
		RecvWindow:  5 * time.Second,
		Docs: []string{
			"https://bybit-exchange.github.io/docs/v5/guide#authentication",
			"https://bybit-exchange.github.io/docs/v5/ws/connect#authentication",
			"https://bybit-exchange.github.io/docs/v5/asset/withdraw",
			"https://bybit-exchange.github.io/docs/v5/asset/transfer/unitransfer",
			"https://bybit-exchange.github.io/docs/v5/asset/transfer/create-inter-transfer",
		},
	},
	wsRecvWindow: 10 * time.Second,
	check:        func(p *Parsed) error { return checkPlacement(p, "/v5/") },
	bodyJSON:     func(*Parsed) bool { return true },
	batchParam:   "request",
	sign:         bybitSign,
}

// checkPlacement checks a request whose GET carries its parameters in the
// query and whose other methods carry them in a JSON body, under the path
// prefix pre; or a WS login.
func checkPlacement(p *Parsed, pre string) error {
	x := p.Exchange
	if p.Method == WS {
		if p.Path != "login" {
			return reqErr(x, "path", ErrMalformed, "%q: for a WS login the path is \"login\"", p.Path)
		}
		if p.query != "" || p.body != "" {
			return reqErr(x, "query", ErrMalformed, "a WS login takes no parameters")
		}
		return nil
	}
	switch {
	case len(p.Path) <= len(pre) || p.Path[:len(pre)] != pre:
		return reqErr(x, "path", ErrUnsupported, "%q: %s signed paths start with %s", p.Path, x, pre)
	case p.Method == GET && p.body != "":
		return reqErr(x, "body", ErrMalformed, "a GET carries its parameters in the query, not the body")
	case p.Method != GET && p.query != "":
		return reqErr(x, "query", ErrMalformed, "a %s carries its parameters in the JSON body, not the query", p.Method)
	}
	return nil
}

func bybitSign(s *Signed, k *Key, p *Parsed, now time.Time, _ uint64) error {
	window := p.RecvWindow.Milliseconds()
	if p.Method == WS {
		if k.typ != HMACKey {
			return reqErr(p.Exchange, "key", ErrUnsupported, "the WS login is signed with HMAC keys only; this is an %s key", k.typ)
		}
		expires := now.UnixMilli() + window
		s.Expires = time.UnixMilli(expires)
		msg := append(s.msg, "GET/realtime"...)
		msg = strconv.AppendInt(msg, expires, 10)
		sig, err := s.seal(k, msg, false) // hex HMAC: the key is HMAC
		if err != nil {
			return err
		}
		s.param("apiKey", s.str(k.id))
		m := s.mark()
		s.buf = strconv.AppendInt(s.buf, expires, 10)
		s.param("expires", s.since(m))
		s.param("signature", sig)
		return nil
	}

	s.Expires = time.UnixMilli(now.UnixMilli() + window)
	m := s.mark()
	s.buf = appendMillis(s.buf, now)
	ts := s.since(m)
	m = s.mark()
	s.buf = strconv.AppendInt(s.buf, window, 10)
	win := s.since(m)

	msg := append(s.msg, ts...)
	msg = append(msg, k.id...)
	msg = append(msg, win...)
	if p.Method == GET {
		msg = append(msg, p.query...)
	} else {
		msg = append(msg, p.body...)
	}
	sig, err := s.seal(k, msg, false)
	if err != nil {
		return err
	}
	s.header("Content-Type", s.str("application/json"))
	s.header("X-BAPI-API-KEY", s.str(k.id))
	s.header("X-BAPI-TIMESTAMP", ts)
	s.header("X-BAPI-RECV-WINDOW", win)
	s.header("X-BAPI-SIGN", sig)
	s.Query = append(s.Query, p.query...)
	s.Body = append(s.Body, p.body...)
	return nil
}
