package exchange

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"time"
)

// Kraken signs the path and the body: API-Sign is the base64
// HMAC-SHA512, under the base64-decoded secret, of the URI path followed
// by SHA-256(nonce + POST data). The nonce is a body parameter that must
// grow with every request on a key; the agent puts it first in the body,
// as ccxt does: "nonce=N&…" in a form body, {"nonce":"N",…} in a JSON one
// (Kraken's batch endpoints). The key id goes in API-Key.
//
// A signed Kraken request does not expire: it stays valid until the key
// has used a higher nonce.
//
//   - https://docs.kraken.com/api/docs/guides/spot-rest-auth
//   - https://docs.kraken.com/api-reference/funding/withdraw-funds
//   - https://docs.kraken.com/api-reference/funding/request-wallet-transfer
//   - https://docs.kraken.com/api-reference/subaccounts/account-transfer
var kraken = &scheme{
	info: Info{
		Exchange:    Kraken,
		SymbolParam: "pair",
		SignsPath:   true,
		SignsParams: true,
		FundParams:  []string{"address", "amount", "key", "max_fee", "to"},
		KeyTypes:    []KeyType{HMACKey},
		Methods:     []string{POST},
		// Kraken refuses a nonce not above the last one it saw for the
		// key (spot-rest-auth).
		IncreasingNonce: true,
		Docs: []string{
			"https://docs.kraken.com/api/docs/guides/spot-rest-auth",
			"https://docs.kraken.com/api-reference/funding/withdraw-funds",
			"https://docs.kraken.com/api-reference/funding/request-wallet-transfer",
			"https://docs.kraken.com/api-reference/subaccounts/account-transfer",
		},
	},
	reserved:   []string{"nonce"},
	check:      krakenCheck,
	bodyJSON:   func(p *Parsed) bool { return strings.HasPrefix(p.body, "{") },
	batchParam: "orders",
	sign:       krakenSign,
}

func krakenCheck(p *Parsed) error {
	switch {
	case !strings.HasPrefix(p.Path, "/0/private/") || len(p.Path) == len("/0/private/"):
		return reqErr(p.Exchange, "path", ErrUnsupported, "%q: kraken signed paths start with /0/private/", p.Path)
	case p.query != "":
		return reqErr(p.Exchange, "query", ErrMalformed, "kraken does not sign the query; put the parameters in the body")
	}
	return nil
}

func krakenSign(s *Signed, k *Key, p *Parsed, _ time.Time, nonce uint64) error {
	body := s.Body
	m := s.mark()
	s.buf = strconv.AppendUint(s.buf, nonce, 10)
	n := s.since(m)
	if p.json {
		body = append(body, `{"nonce":"`...)
		body = append(body, n...)
		body = append(body, '"')
		if len(p.Params) > 0 {
			body = append(body, ',')
		}
		body = append(body, p.body[1:]...)
	} else {
		body = append(body, "nonce="...)
		body = append(body, n...)
		if p.body != "" {
			body = append(body, '&')
			body = append(body, p.body...)
		}
	}
	s.Body = body

	msg := append(s.msg, n...)
	msg = append(msg, body...)
	inner := sha256.Sum256(msg)
	msg = append(msg[:0], p.Path...)
	msg = append(msg, inner[:]...)
	sig, err := s.seal(k, msg, true)
	if err != nil {
		return err
	}
	s.header("API-Key", s.str(k.id))
	s.header("API-Sign", sig)
	if p.json {
		s.header("Content-Type", s.str("application/json"))
	} else {
		s.header("Content-Type", s.str("application/x-www-form-urlencoded"))
	}
	return nil
}
