package exchange

import (
	"strconv"
	"time"
)

// OKX v5 signs timestamp + METHOD + requestPath + body, where the timestamp
// is ISO 8601 UTC with milliseconds and requestPath includes "?query" for
// a GET: the path is signed. The base64 HMAC-SHA256 goes in OK-ACCESS-SIGN,
// the key id, passphrase and timestamp in OK-ACCESS-KEY,
// OK-ACCESS-PASSPHRASE and OK-ACCESS-TIMESTAMP. The passphrase travels in
// clear text: the process learns it, which is harmless without the secret.
// The agent changes neither query nor body.
//
// The WebSocket login signs timestamp (in seconds) + "GET" +
// "/users/self/verify".
//
//   - https://www.okx.com/docs-v5/en/#overview-rest-authentication-making-requests
//   - https://www.okx.com/docs-v5/en/#overview-websocket-login
//   - https://www.okx.com/docs-v5/en/#funding-account-rest-api-withdrawal
//   - https://www.okx.com/docs-v5/en/#funding-account-rest-api-funds-transfer
var okx = &scheme{
	info: Info{
		Exchange:    OKX,
		SymbolParam: "instId",
		SignsPath:   true,
		SignsParams: true,
		FundParams:  []string{"amt", "dest", "rcvrInfo", "subAcct", "toAddr", "toAddrType"},
		KeyTypes:    []KeyType{HMACKey},
		Methods:     []string{GET, POST, WS},
		Docs: []string{
			"https://www.okx.com/docs-v5/en/#overview-rest-authentication-making-requests",
			"https://www.okx.com/docs-v5/en/#overview-websocket-login",
			"https://www.okx.com/docs-v5/en/#funding-account-rest-api-withdrawal",
			"https://www.okx.com/docs-v5/en/#funding-account-rest-api-funds-transfer",
		},
	},
	check:     func(p *Parsed) error { return checkPlacement(p, "/api/v5/") },
	bodyJSON:  func(*Parsed) bool { return true },
	arrayBody: true,
	sign:      okxSign,
}

// okxWindow is how far from the server's clock OKX accepts a timestamp.
const okxWindow = 30 * time.Second

func okxSign(s *Signed, k *Key, p *Parsed, now time.Time, _ uint64) error {
	s.Expires = now.Add(okxWindow)
	m := s.mark()
	if p.Method == WS {
		s.buf = strconv.AppendInt(s.buf, now.Unix(), 10)
	} else {
		s.buf = time.UnixMilli(now.UnixMilli()).UTC().AppendFormat(s.buf, "2006-01-02T15:04:05.000Z")
	}
	ts := s.since(m)
	msg := append(s.msg, ts...)
	if p.Method == WS {
		msg = append(msg, "GET/users/self/verify"...)
	} else {
		msg = append(msg, p.Method...)
		msg = append(msg, p.Path...)
		if p.query != "" {
			msg = append(msg, '?')
			msg = append(msg, p.query...)
		}
		msg = append(msg, p.body...)
	}
	sig, err := s.seal(k, msg, true)
	if err != nil {
		return err
	}
	id := s.str(k.id)
	m = s.mark()
	s.buf = append(s.buf, k.passphrase...)
	pass := s.since(m)
	if p.Method == WS {
		s.param("apiKey", id)
		s.param("passphrase", pass)
		s.param("timestamp", ts)
		s.param("sign", sig)
		return nil
	}
	s.header("OK-ACCESS-KEY", id)
	s.header("OK-ACCESS-PASSPHRASE", pass)
	s.header("OK-ACCESS-TIMESTAMP", ts)
	if p.Method != GET {
		s.header("Content-Type", s.str("application/json"))
	}
	s.header("OK-ACCESS-SIGN", sig)
	s.Query = append(s.Query, p.query...)
	s.Body = append(s.Body, p.body...)
	return nil
}
