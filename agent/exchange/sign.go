package exchange

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"strconv"
	"time"
)

// Helpers shared by the schemes.

// appendMillis appends t in milliseconds since the epoch.
func appendMillis(dst []byte, t time.Time) []byte {
	return strconv.AppendInt(dst, t.UnixMilli(), 10)
}

// appendHexMAC appends the hex HMAC of msg.
func (k *Key) appendHexMAC(dst []byte, s *Signed, msg []byte) ([]byte, error) {
	mac, err := k.appendMAC(s.sum[:0], msg)
	if err != nil {
		return nil, err
	}
	return hex.AppendEncode(dst, mac), nil
}

// appendBase64MAC appends the base64 HMAC of msg.
func (k *Key) appendBase64MAC(dst []byte, s *Signed, msg []byte) ([]byte, error) {
	mac, err := k.appendMAC(s.sum[:0], msg)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.AppendEncode(dst, mac), nil
}

// seal keeps msg as the signed payload and its SHA-256 as the digest, and
// appends k's signature of msg to the arena, returning it: the hex HMAC or
// the base64 Ed25519 or RSA signature (Binance, Bybit), or with b64MAC the
// base64 HMAC (OKX, Kraken).
func (s *Signed) seal(k *Key, msg []byte, b64MAC bool) ([]byte, error) {
	s.msg = msg
	s.Digest = sha256.Sum256(msg)
	m := s.mark()
	var err error
	if b64MAC {
		s.buf, err = k.appendBase64MAC(s.buf, s, msg)
	} else {
		s.buf, err = k.appendSignature(s.buf, s, msg)
	}
	if err != nil {
		return nil, err
	}
	return s.since(m), nil
}

// appendSignature appends k's signature of msg as Binance and Bybit write
// it: the hex HMAC, or the base64 Ed25519 or RSA signature.
func (k *Key) appendSignature(dst []byte, s *Signed, msg []byte) ([]byte, error) {
	if k.typ == HMACKey {
		return k.appendHexMAC(dst, s, msg)
	}
	sig, err := k.asymmetric(msg)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.AppendEncode(dst, sig), nil
}

// asymmetric returns k's Ed25519 signature of msg, or its RSASSA-PKCS1-v1_5
// SHA-256 signature: deterministic both.
func (k *Key) asymmetric(msg []byte) ([]byte, error) {
	switch k.typ {
	case Ed25519Key:
		return ed25519.Sign(k.ed, msg), nil
	case RSAKey:
		d := sha256.Sum256(msg)
		return rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, d[:])
	}
	return nil, errors.New("exchange: internal error: no asymmetric key")
}

// es256 returns the JWS ES256 signature (r || s, 32 bytes each) of msg:
// deterministic (RFC 6979) and with low S, as ccxt's noble-curves makes it.
func (k *Key) es256(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	der, err := k.ec.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, err
	}
	n := elliptic.P256().Params().N
	if sig.S.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		sig.S.Sub(n, sig.S)
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

// appendURIComponent appends b percent-encoded as JavaScript's
// encodeURIComponent does for base64 text.
func appendURIComponent(dst, b []byte) []byte {
	const upper = "0123456789ABCDEF"
	for _, c := range b {
		if unreserved(c) {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upper[c>>4], upper[c&15])
		}
	}
	return dst
}
