package exchange

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// An Encoding is how [HMAC] writes a MAC as text.
type Encoding int

// Encodings.
const (
	Hex    Encoding = iota + 1 // lower-case hexadecimal
	Base64                     // standard base64 with padding
)

// HMAC returns the HMAC of message under secret with h (crypto.SHA256 or
// crypto.SHA512), written in enc: the generic operation for an exchange
// this package has no scheme for.
func HMAC(h crypto.Hash, enc Encoding, secret, message []byte) ([]byte, error) {
	var mac []byte
	switch h {
	case crypto.SHA256:
		m := hmac.New(sha256.New, secret)
		m.Write(message)
		mac = m.Sum(nil)
	case crypto.SHA512:
		m := hmac.New(sha512.New, secret)
		m.Write(message)
		mac = m.Sum(nil)
	default:
		return nil, fmt.Errorf("exchange: HMAC with %v is not supported; use crypto.SHA256 or crypto.SHA512", h)
	}
	switch enc {
	case Hex:
		return hex.AppendEncode(nil, mac), nil
	case Base64:
		return base64.StdEncoding.AppendEncode(nil, mac), nil
	}
	return nil, fmt.Errorf("exchange: HMAC encoding %d is not supported; use Hex or Base64", int(enc))
}

// appendMAC appends the HMAC of msg under k's secret to dst, using a
// keyed state from k's pool.
func (k *Key) appendMAC(dst, msg []byte) ([]byte, error) {
	st, _ := k.pool.Get().(*hmacState)
	if st == nil {
		return nil, ErrDestroyed
	}
	st.h.Reset()
	st.h.Write(msg)
	dst = st.h.Sum(dst)
	k.pool.Put(st)
	return dst, nil
}
