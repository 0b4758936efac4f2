package exchange

import (
	"bytes"
	"fmt"
)

// keyTypeNames are the names keyward stores for key types (the envelope
// header's key type, docs/envelope.md).
var keyTypeNames = [...]string{HMACKey: "hmac", Ed25519Key: "ed25519", ECDSAKey: "ecdsa-p256", RSAKey: "rsa"}

// Name returns the key type's stored name: "hmac", "ed25519",
// "ecdsa-p256" or "rsa".
func (t KeyType) Name() string {
	if t >= HMACKey && int(t) < len(keyTypeNames) {
		return keyTypeNames[t]
	}
	return ""
}

// Value returns the credential's secret part as keyward stores it: the
// secret, and for OKX a line feed and the passphrase. The caller owns
// and should clear the result.
func (c Credential) Value() []byte {
	if len(c.Passphrase) == 0 {
		return bytes.Clone(c.Secret)
	}
	v := make([]byte, 0, len(c.Secret)+1+len(c.Passphrase))
	return append(append(append(v, c.Secret...), '\n'), c.Passphrase...)
}

// ParseValue is the inverse of [Credential.Value]: the credential of
// exchange x with API key id keyID whose stored value is value. For OKX
// the passphrase follows the secret's last line feed (an OKX secret is
// one line); other exchanges' values are the secret whole. The result's
// Secret and Passphrase alias value. Nothing is validated but the split:
// [NewKey] checks the rest.
func ParseValue(x Exchange, keyID string, value []byte) (Credential, error) {
	c := Credential{Exchange: x, KeyID: keyID, Secret: value}
	if x != OKX {
		return c, nil
	}
	i := bytes.LastIndexByte(value, '\n')
	if i < 0 {
		return Credential{}, fmt.Errorf("%w: okx credentials are the secret, a line break and the passphrase", ErrBadKey)
	}
	c.Secret, c.Passphrase = value[:i:i], value[i+1:]
	return c, nil
}
