package exchange

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"hash"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// A KeyType is the kind of secret behind a [Key].
type KeyType int

// Key types.
const (
	HMACKey    KeyType = iota + 1 // a shared secret for HMAC
	Ed25519Key                    // an Ed25519 private key
	ECDSAKey                      // an ECDSA private key on P-256
	RSAKey                        // an RSA private key, 2048 bits or more
)

func (t KeyType) String() string {
	switch t {
	case HMACKey:
		return "HMAC"
	case Ed25519Key:
		return "Ed25519"
	case ECDSAKey:
		return "ECDSA P-256"
	case RSAKey:
		return "RSA"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// Limits on credentials.
const (
	maxSecretSize = 16 << 10
	maxKeyIDSize  = 256
	minRSABits    = 2048
)

// A Credential is an exchange API key as the exchange issued it. It
// redacts its secrets when formatted or logged.
type Credential struct {
	// Exchange is the exchange that issued the key.
	Exchange Exchange
	// KeyID is the public API key (Coinbase: the key name,
	// "organizations/…/apiKeys/…"). It is sent with every request.
	KeyID string
	// Secret is the HMAC secret as the exchange shows it (Kraken: its
	// base64 text), a PEM private key (Binance Ed25519 or RSA, Bybit RSA,
	// Coinbase ECDSA), or Coinbase's base64 Ed25519 key.
	Secret []byte
	// Passphrase is the OKX API passphrase; empty for other exchanges.
	Passphrase []byte
}

// Format prints the exchange and key id, never the secret or passphrase.
func (c Credential) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "exchange.Credential{%s %q secret:%d bytes}", c.Exchange, c.KeyID, len(c.Secret))
}

// LogValue logs the exchange and key id, never the secret or passphrase.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("exchange", string(c.Exchange)), slog.String("key_id", c.KeyID))
}

// A Key is a parsed, validated [Credential], ready to sign. It is safe for
// concurrent use by multiple goroutines, except [Key.Destroy].
type Key struct {
	exchange   Exchange
	id         string
	typ        KeyType
	mac        []byte // HMAC key bytes
	macHash    func() hash.Hash
	pool       sync.Pool // *hmacState keyed with mac
	ed         ed25519.PrivateKey
	ec         *ecdsa.PrivateKey
	rsa        *rsa.PrivateKey
	passphrase []byte
	destroyed  atomic.Bool
}

// hmacState is a keyed HMAC kept in the pool: a hash.Hash is not safe for
// concurrent use, so each signature takes one.
type hmacState struct{ h hash.Hash }

// NewKey parses and validates c once: the secret's encoding (PEM, base64)
// and its key type against what c.Exchange accepts. It copies what it
// keeps; the caller still owns c and should clear c.Secret and
// c.Passphrase when done with them. Errors wrap [ErrBadKey] and never
// contain secret bytes.
func NewKey(c Credential) (*Key, error) {
	s, ok := schemes[c.Exchange]
	if !ok {
		return nil, fmt.Errorf("%w: unknown exchange %q (known: %v)", ErrBadKey, c.Exchange, Exchanges())
	}
	x := c.Exchange
	if err := checkKeyID(c.KeyID); err != nil {
		return nil, fmt.Errorf("%w: %s key id: %v", ErrBadKey, x, err)
	}
	if len(c.Secret) == 0 || len(c.Secret) > maxSecretSize {
		return nil, fmt.Errorf("%w: %s secret is %d bytes; want 1 to %d", ErrBadKey, x, len(c.Secret), maxSecretSize)
	}
	k := &Key{exchange: x, id: c.KeyID}
	var err error
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(c.Secret, " \t\r\n"), []byte("-----BEGIN")):
		err = k.parsePEM(c.Secret)
	case x == Kraken:
		err = k.parseBase64HMAC(c.Secret)
	case x == Coinbase:
		err = k.parseCoinbaseEd25519(c.Secret)
	default:
		err = k.parseHMAC(c.Secret)
	}
	if err != nil {
		k.Destroy()
		return nil, fmt.Errorf("%w: %s secret: %v", ErrBadKey, x, err)
	}
	if !slices.Contains(s.info.KeyTypes, k.typ) {
		k.Destroy()
		return nil, fmt.Errorf("%w: %s does not accept %s keys; it accepts %s", ErrBadKey, x, k.typ, keyTypeList(s.info.KeyTypes))
	}
	switch {
	case x == OKX && len(c.Passphrase) == 0:
		k.Destroy()
		return nil, fmt.Errorf("%w: okx keys need the passphrase chosen when the key was created", ErrBadKey)
	case x != OKX && len(c.Passphrase) != 0:
		k.Destroy()
		return nil, fmt.Errorf("%w: %s keys have no passphrase; leave it empty", ErrBadKey, x)
	case len(c.Passphrase) > maxKeyIDSize || bytes.ContainsFunc(c.Passphrase, func(r rune) bool { return r < 0x20 || r > 0x7e }):
		k.Destroy()
		return nil, fmt.Errorf("%w: okx passphrase must be at most %d printable ASCII characters", ErrBadKey, maxKeyIDSize)
	}
	k.passphrase = bytes.Clone(c.Passphrase)
	return k, nil
}

func keyTypeList(ts []KeyType) string {
	var b strings.Builder
	for i, t := range ts {
		switch {
		case i == 0:
		case i == len(ts)-1:
			b.WriteString(" and ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(t.String())
	}
	return b.String()
}

// checkKeyID requires printable ASCII without quotes or backslashes: the
// id goes into headers and, unescaped, into JSON.
func checkKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDSize {
		return fmt.Errorf("is %d bytes; want 1 to %d", len(id), maxKeyIDSize)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return fmt.Errorf("byte %d is %q; want printable ASCII without spaces, quotes or backslashes", i, c)
		}
	}
	return nil
}

// parseHMAC takes an HMAC secret as the exchange shows it.
func (k *Key) parseHMAC(secret []byte) error {
	for i, c := range secret {
		if c <= ' ' || c > '~' {
			if i == len(secret)-1 && (c == '\n' || c == '\r') {
				return fmt.Errorf("ends with a line break; remove it (an HMAC secret is used byte for byte)")
			}
			return fmt.Errorf("byte %d is not printable ASCII; an HMAC secret is the text the exchange shows, without spaces or line breaks", i)
		}
	}
	k.typ = HMACKey
	k.mac = bytes.Clone(secret)
	k.macHash = sha256.New
	k.initPool()
	return nil
}

// parseBase64HMAC takes Kraken's base64 secret.
func (k *Key) parseBase64HMAC(secret []byte) error {
	mac := make([]byte, base64.StdEncoding.DecodedLen(len(secret)))
	n, err := base64.StdEncoding.Strict().Decode(mac, secret)
	if err != nil || n == 0 {
		clear(mac)
		return fmt.Errorf("is not base64 (Kraken's private key is the base64 text it shows, with its '=' padding)")
	}
	k.typ = HMACKey
	k.mac = mac[:n]
	k.macHash = sha512.New
	k.initPool()
	return nil
}

// parseCoinbaseEd25519 takes a CDP Ed25519 key: base64 of seed || public.
func (k *Key) parseCoinbaseEd25519(secret []byte) error {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(secret)))
	defer clear(raw)
	n, err := base64.StdEncoding.Strict().Decode(raw, secret)
	if err != nil || n != ed25519.PrivateKeySize {
		return fmt.Errorf("is neither a PEM EC private key nor the base64 of a 64-byte Ed25519 key (the CDP portal shows one or the other)")
	}
	priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if !bytes.Equal(priv[ed25519.SeedSize:], raw[ed25519.SeedSize:n]) {
		clear(priv)
		return fmt.Errorf("its public half does not match its private half; copy the key again")
	}
	k.typ = Ed25519Key
	k.ed = priv
	return nil
}

// parsePEM takes exactly one unencrypted PEM private key.
func (k *Key) parsePEM(secret []byte) error {
	block, rest := pem.Decode(secret)
	if block == nil {
		return fmt.Errorf("starts like PEM but is not PEM")
	}
	defer clear(block.Bytes)
	if len(bytes.TrimSpace(rest)) != 0 {
		if b, _ := pem.Decode(rest); b != nil {
			return fmt.Errorf("holds a %q block after the %q block; keep only the private key", b.Type, block.Type)
		}
		return fmt.Errorf("has text after the PEM block")
	}
	if len(block.Headers) != 0 || block.Type == "ENCRYPTED PRIVATE KEY" {
		return fmt.Errorf("is an encrypted PEM key; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "EC PARAMETERS":
		return fmt.Errorf("starts with an EC PARAMETERS block; keep only the EC PRIVATE KEY block (openssl ecparam -noout)")
	case "OPENSSH PRIVATE KEY":
		return fmt.Errorf("is an OpenSSH key; convert it to PKCS #8 (ssh-keygen -p -m PKCS8 -f key)")
	default:
		return fmt.Errorf("is a PEM %q block; want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return fmt.Errorf("PEM %q block: %v", block.Type, err)
	}
	switch key := key.(type) {
	case ed25519.PrivateKey:
		k.typ, k.ed = Ed25519Key, key
	case *ecdsa.PrivateKey:
		if key.Curve != elliptic.P256() {
			clearBig(key.D)
			return fmt.Errorf("is an ECDSA key on %s; want P-256", key.Curve.Params().Name)
		}
		k.typ, k.ec = ECDSAKey, key
	case *rsa.PrivateKey:
		if bits := key.N.BitLen(); bits < minRSABits {
			clearRSA(key)
			return fmt.Errorf("is a %d-bit RSA key; want %d bits or more", bits, minRSABits)
		}
		k.typ, k.rsa = RSAKey, key
	default:
		return fmt.Errorf("is a %T; want Ed25519, ECDSA P-256 or RSA", key)
	}
	return nil
}

func (k *Key) initPool() {
	mac, newHash := k.mac, k.macHash
	k.pool.New = func() any { return &hmacState{h: hmac.New(newHash, mac)} }
}

// Exchange returns the exchange the key belongs to.
func (k *Key) Exchange() Exchange { return k.exchange }

// ID returns the public API key id.
func (k *Key) ID() string { return k.id }

// Type returns the key type.
func (k *Key) Type() KeyType { return k.typ }

// Public returns the public key of an asymmetric key (what the exchange
// was given), or nil for HMAC.
func (k *Key) Public() crypto.PublicKey {
	switch k.typ {
	case Ed25519Key:
		return k.ed.Public()
	case ECDSAKey:
		return k.ec.Public()
	case RSAKey:
		return k.rsa.Public()
	}
	return nil
}

// Format prints the exchange, key id and type, never secret material.
func (k *Key) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "exchange.Key{%s %q %s}", k.exchange, k.id, k.typ)
}

// LogValue logs the exchange, key id and type, never secret material.
func (k *Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("exchange", string(k.exchange)),
		slog.String("key_id", k.id), slog.String("key_type", k.typ.String()))
}

// Destroy zeroes the key material the Key holds and makes later signing
// fail with [ErrDestroyed]. It must not run concurrently with signing:
// drop the key from use, let signatures in flight finish, then destroy it.
//
// What Go lets us zero is zeroed: the HMAC secret, the Ed25519 key, the
// OKX passphrase, and the words of the big.Int values of an ECDSA or RSA
// key (D, the primes and the CRT values). What it cannot reach stays in
// memory until the garbage collector reuses it: the keyed HMAC states in
// the pool (crypto/hmac keeps the padded key inside), crypto/rsa's
// internal copy of the precomputed key, the temporary copies that
// crypto/ecdsa and crypto/rsa make while signing, and copies the runtime
// made when it moved or grew memory.
func (k *Key) Destroy() {
	k.destroyed.Store(true)
	clear(k.mac)
	clear(k.ed)
	clear(k.passphrase)
	if k.ec != nil {
		clearBig(k.ec.D)
	}
	if k.rsa != nil {
		clearRSA(k.rsa)
	}
	k.pool.New = nil
	for k.pool.Get() != nil {
	}
}

// clearBig zeroes the words of x in place, then sets x to 0.
func clearBig(x *big.Int) {
	if x != nil {
		clear(x.Bits())
		x.SetInt64(0)
	}
}

// clearRSA zeroes the private values of k in place.
func clearRSA(k *rsa.PrivateKey) {
	clearBig(k.D)
	for _, p := range k.Primes {
		clearBig(p)
	}
	clearBig(k.Precomputed.Dp)
	clearBig(k.Precomputed.Dq)
	clearBig(k.Precomputed.Qinv)
	for _, v := range k.Precomputed.CRTValues {
		clearBig(v.Exp)
		clearBig(v.Coeff)
		clearBig(v.R)
	}
}
