package exchange

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Coinbase Advanced Trade authenticates with a JWT in "Authorization:
// Bearer …", signed ES256 (ECDSA P-256 keys) or EdDSA (Ed25519 keys),
// valid for 120 seconds. It covers the method, host and path ("uri":
// "GET api.coinbase.com/api/v3/brokerage/accounts"), not the query or the
// body: the process may send any parameters with it, to that method and
// path, until it expires. The agent changes neither query nor body.
//
// The header and claims are byte for byte those ccxt writes: ES256 with
// iss "coinbase-cloud", aud ["retail_rest_api_proxy"] and uri; EdDSA with
// iss "cdp", aud ["cdp_service"] and uris. The header's nonce, random in
// ccxt, is here the 16 bytes of now (nanoseconds) and the nonce argument,
// in hex: unique as long as the pair is, and reproducible. For WS the JWT
// has no uri (Coinbase's WebSocket JWT).
//
//   - https://docs.cdp.coinbase.com/coinbase-app/authentication-authorization/api-key-authentication
//   - https://docs.cdp.coinbase.com/get-started/authentication/jwt-authentication
//   - https://docs.cdp.coinbase.com/coinbase-business/transfer-apis/send-crypto
//   - https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/portfolios/move-portfolios-funds
var coinbase = &scheme{
	info: Info{
		Exchange:    Coinbase,
		SymbolParam: "product_id",
		SignsPath:   true,
		SignsParams: false,
		FundParams:  []string{"amount", "destination_tag", "funds", "target_portfolio_uuid", "to", "travel_rule_data"},
		KeyTypes:    []KeyType{ECDSAKey, Ed25519Key},
		Methods:     []string{GET, POST, PUT, DELETE, WS},
		Docs: []string{
			"https://docs.cdp.coinbase.com/coinbase-app/authentication-authorization/api-key-authentication",
			"https://docs.cdp.coinbase.com/get-started/authentication/jwt-authentication",
			"https://docs.cdp.coinbase.com/coinbase-business/transfer-apis/send-crypto",
			"https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/portfolios/move-portfolios-funds",
		},
	},
	check:    coinbaseCheck,
	bodyJSON: func(*Parsed) bool { return true },
	sign:     coinbaseSign,
}

// jwtLifetime is how long a Coinbase JWT is valid, as ccxt and Coinbase's
// SDKs make it.
const jwtLifetime = 120 * time.Second

func coinbaseCheck(p *Parsed) error {
	pre := "/api/v3/" // Advanced Trade
	if strings.HasPrefix(p.Path, "/v2/") {
		pre = "/v2/" // the Coinbase App API, which takes the same JWT
	}
	return checkPlacement(p, pre)
}

// jwtNonce appends the JWT header's nonce: 32 hex digits, as long as
// ccxt's random one, from now and the agent's nonce.
func jwtNonce(dst []byte, now time.Time, nonce uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], nonce)
	return hex.AppendEncode(dst, b[:])
}

func coinbaseSign(s *Signed, k *Key, p *Parsed, now time.Time, nonce uint64) error {
	sec := now.Unix()
	s.Expires = time.Unix(sec, 0).Add(jwtLifetime)
	alg, iss, aud, uri := `ES256`, `coinbase-cloud`, `retail_rest_api_proxy`, `,"uri":"`
	if k.typ == Ed25519Key {
		alg, iss, aud, uri = `EdDSA`, `cdp`, `cdp_service`, `,"uris":["`
	}

	m := s.mark()
	if p.Method != WS {
		s.buf = append(s.buf, "Bearer "...)
	}
	start := len(s.buf)
	j := append(s.msg, `{"alg":"`...)
	j = append(j, alg...)
	j = append(j, `","typ":"JWT","kid":"`...)
	j = append(j, k.id...)
	j = append(j, `","nonce":"`...)
	j = jwtNonce(j, now, nonce)
	j = append(j, `"}`...)
	s.buf = base64.RawURLEncoding.AppendEncode(s.buf, j)
	s.buf = append(s.buf, '.')

	j = append(j[:0], `{"aud":["`...)
	j = append(j, aud...)
	j = append(j, `"],"iss":"`...)
	j = append(j, iss...)
	j = append(j, `","nbf":`...)
	j = strconv.AppendInt(j, sec, 10)
	j = append(j, `,"exp":`...)
	j = strconv.AppendInt(j, sec+int64(jwtLifetime/time.Second), 10)
	j = append(j, `,"sub":"`...)
	j = append(j, k.id...)
	j = append(j, `","iat":`...)
	j = strconv.AppendInt(j, sec, 10)
	if p.Method != WS {
		j = append(j, uri...)
		j = append(j, p.Method...)
		j = append(j, ' ')
		j = append(j, p.Host...)
		j = append(j, p.Path...)
		j = append(j, '"')
		if k.typ == Ed25519Key {
			j = append(j, ']')
		}
	}
	j = append(j, '}')
	s.msg = j
	s.buf = base64.RawURLEncoding.AppendEncode(s.buf, j)

	input := s.buf[start:]
	s.Digest = sha256.Sum256(input)
	var sig []byte
	var err error
	if k.typ == Ed25519Key {
		sig = ed25519.Sign(k.ed, input)
	} else if sig, err = k.es256(input); err != nil {
		return err
	}
	s.buf = append(s.buf, '.')
	s.buf = base64.RawURLEncoding.AppendEncode(s.buf, sig)
	if p.Method == WS {
		s.param("jwt", s.since(m))
		return nil
	}
	s.header("Authorization", s.since(m))
	s.header("Content-Type", s.str("application/json"))
	s.Query = append(s.Query, p.query...)
	s.Body = append(s.Body, p.body...)
	return nil
}
