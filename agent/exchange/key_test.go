package exchange

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"
)

func pemBlock(typ string, der []byte, headers map[string]string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
}

func TestNewKey(t *testing.T) {
	creds := testCredentials(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Credential
		typ  KeyType
	}{
		{"binance HMAC", creds["binance-hmac"], HMACKey},
		{"binance Ed25519", creds["binance-ed25519"], Ed25519Key},
		{"binance RSA PKCS #8", creds["binance-rsa"], RSAKey},
		{"binance RSA PKCS #1", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), nil)}, RSAKey},
		{"binance PEM after blank lines", Credential{Exchange: Binance, KeyID: "k", Secret: append([]byte("\n\n"), creds["binance-ed25519"].Secret...)}, Ed25519Key},
		{"bybit HMAC", creds["bybit-hmac"], HMACKey},
		{"bybit RSA", creds["bybit-rsa"], RSAKey},
		{"okx", creds["okx"], HMACKey},
		{"kraken", creds["kraken"], HMACKey},
		{"coinbase SEC 1", creds["coinbase-ecdsa"], ECDSAKey},
		{"coinbase Ed25519", creds["coinbase-ed25519"], Ed25519Key},
	}
	for _, tt := range tests {
		k, err := NewKey(tt.c)
		if err != nil {
			t.Errorf("NewKey(%s) = %v", tt.name, err)
			continue
		}
		if k.Type() != tt.typ || k.Exchange() != tt.c.Exchange || k.ID() != tt.c.KeyID {
			t.Errorf("NewKey(%s) = %v, want %s %q %s", tt.name, k, tt.c.Exchange, tt.c.KeyID, tt.typ)
		}
		if (k.Public() == nil) != (tt.typ == HMACKey) {
			t.Errorf("NewKey(%s).Public() = %v", tt.name, k.Public())
		}
	}
}

func TestNewKeyRefuses(t *testing.T) {
	creds := testCredentials(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	ec := creds["coinbase-ecdsa"].Secret
	ed := creds["binance-ed25519"].Secret
	block, _ := pem.Decode(ed)
	mismatched, _ := base64.StdEncoding.DecodeString(string(creds["coinbase-ed25519"].Secret))
	mismatched[63] ^= 1
	tests := []struct {
		name string
		c    Credential
		want string
	}{
		{"unknown exchange", Credential{Exchange: "mtgox", KeyID: "k", Secret: []byte("s")}, `unknown exchange "mtgox"`},
		{"ECDSA to binance", Credential{Exchange: Binance, KeyID: "k", Secret: ec}, "binance does not accept ECDSA P-256 keys; it accepts HMAC, Ed25519 and RSA"},
		{"Ed25519 to okx", Credential{Exchange: OKX, KeyID: "k", Secret: ed, Passphrase: []byte("p")}, "okx does not accept Ed25519 keys; it accepts HMAC"},
		{"Ed25519 to bybit", Credential{Exchange: Bybit, KeyID: "k", Secret: ed}, "it accepts HMAC and RSA"},
		{"RSA to coinbase", Credential{Exchange: Coinbase, KeyID: "k", Secret: creds["binance-rsa"].Secret}, "it accepts ECDSA P-256 and Ed25519"},
		{"HMAC to coinbase", Credential{Exchange: Coinbase, KeyID: "k", Secret: []byte("c2VjcmV0")}, "neither a PEM EC private key nor"},
		{"mismatched Ed25519 halves", Credential{Exchange: Coinbase, KeyID: "k", Secret: []byte(base64.StdEncoding.EncodeToString(mismatched))}, "public half does not match"},
		{"P-384", Credential{Exchange: Coinbase, KeyID: "k", Secret: pemBlock("EC PRIVATE KEY", p384DER, nil)}, "on P-384; want P-256"},
		{"RSA 1024", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small), nil)}, "1024-bit RSA key; want 2048"},
		{"encrypted PEM", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("RSA PRIVATE KEY", []byte{1}, map[string]string{"Proc-Type": "4,ENCRYPTED"})}, "decrypt it first"},
		{"encrypted PKCS #8", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("ENCRYPTED PRIVATE KEY", []byte{1}, nil)}, "decrypt it first"},
		{"OpenSSH key", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("OPENSSH PRIVATE KEY", []byte{1}, nil)}, "ssh-keygen"},
		{"public key", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("PUBLIC KEY", []byte{1}, nil)}, `PEM "PUBLIC KEY" block`},
		{"EC parameters first", Credential{Exchange: Coinbase, KeyID: "k", Secret: append(pemBlock("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}, nil), ec...)}, "EC PARAMETERS"},
		{"two keys", Credential{Exchange: Binance, KeyID: "k", Secret: append(bytes.Clone(ed), ed...)}, `"PRIVATE KEY" block after`},
		{"text after PEM", Credential{Exchange: Binance, KeyID: "k", Secret: append(bytes.Clone(ed), "junk"...)}, "text after the PEM block"},
		{"corrupt DER", Credential{Exchange: Binance, KeyID: "k", Secret: pemBlock("PRIVATE KEY", block.Bytes[:20], nil)}, `PEM "PRIVATE KEY" block`},
		{"not PEM", Credential{Exchange: Binance, KeyID: "k", Secret: []byte("-----BEGIN nonsense")}, "not PEM"},
		{"HMAC with newline", Credential{Exchange: Binance, KeyID: "k", Secret: []byte("abcdef\n")}, "line break"},
		{"HMAC with space", Credential{Exchange: Binance, KeyID: "k", Secret: []byte("abc def")}, "not printable ASCII"},
		{"empty secret", Credential{Exchange: Binance, KeyID: "k"}, "0 bytes"},
		{"kraken not base64", Credential{Exchange: Kraken, KeyID: "k", Secret: []byte("not base64!")}, "is not base64"},
		{"kraken unpadded", Credential{Exchange: Kraken, KeyID: "k", Secret: []byte("c2VjcmV0Mg")}, "is not base64"},
		{"okx without passphrase", Credential{Exchange: OKX, KeyID: "k", Secret: []byte("s")}, "need the passphrase"},
		{"okx passphrase with newline", Credential{Exchange: OKX, KeyID: "k", Secret: []byte("s"), Passphrase: []byte("p\n")}, "printable ASCII"},
		{"passphrase to binance", Credential{Exchange: Binance, KeyID: "k", Secret: []byte("s"), Passphrase: []byte("p")}, "have no passphrase"},
		{"empty key id", Credential{Exchange: Binance, Secret: []byte("s")}, "key id"},
		{"key id with quote", Credential{Exchange: Binance, KeyID: `a"b`, Secret: []byte("s")}, "key id: byte 1"},
		{"key id with newline", Credential{Exchange: Binance, KeyID: "a\r\nX-Evil: 1", Secret: []byte("s")}, "key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKey(tt.c)
			if err == nil {
				t.Fatalf("NewKey(%v) = %v, want an error", tt.c, k)
			}
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewKey(%v) = %v, want ErrBadKey and %q", tt.c, err, tt.want)
			}
			if len(tt.c.Secret) >= 8 && strings.Contains(err.Error(), string(tt.c.Secret[len(tt.c.Secret)/2:])) {
				t.Errorf("NewKey(%v) = %v: the error quotes the secret", tt.c, err)
			}
		})
	}
}

// TestRedaction checks that no way of printing or logging a credential or
// key shows its secret.
func TestRedaction(t *testing.T) {
	c := Credential{Exchange: OKX, KeyID: "key-id", Secret: []byte("S3CR3T-S3CR3T"), Passphrase: []byte("PA55PHRASE")}
	k, err := NewKey(c)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, v := range []any{c, &c, k} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
	}
	log := slog.New(slog.NewJSONHandler(&out, nil))
	log.Info("x", "credential", c, "key", k)
	log.Info("x", slog.Any("credential", &c))
	for _, secret := range []string{"S3CR3T", "PA55PHRASE", fmt.Sprintf("%x", "S3CR3T"), fmt.Sprint([]byte("S3CR3T"))} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("formatted credential and key contain %q:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), "key-id") {
		t.Errorf("formatted credential and key do not name the key id:\n%s", out.String())
	}
}

func TestDestroy(t *testing.T) {
	creds := testCredentials(t)
	req := map[Exchange]*Request{
		Binance:  binanceGET(""),
		OKX:      {Method: GET, Host: "www.okx.com", Path: "/api/v5/account/balance"},
		Coinbase: {Method: GET, Host: "api.coinbase.com", Path: "/api/v3/brokerage/accounts"},
	}
	for _, name := range []string{"binance-hmac", "binance-ed25519", "binance-rsa", "okx", "coinbase-ecdsa"} {
		k, err := NewKey(creds[name])
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(k.Exchange(), req[k.Exchange()])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Sign(k, p, time.Now(), 1); err != nil {
			t.Fatalf("Sign(%s) = %v", name, err)
		}
		// The words of the private big.Ints, to check they are zeroed in
		// place, not merely dropped.
		var words [][]big.Word
		if k.ec != nil {
			words = append(words, k.ec.D.Bits())
		}
		if k.rsa != nil {
			words = append(words, k.rsa.D.Bits(), k.rsa.Primes[0].Bits(), k.rsa.Primes[1].Bits(), k.rsa.Precomputed.Dp.Bits())
		}
		k.Destroy()
		for i, w := range words {
			for _, x := range w {
				if x != 0 {
					t.Errorf("%s after Destroy: private integer %d is not zeroed", name, i)
					break
				}
			}
		}
		if s, err := Sign(k, p, time.Now(), 2); !errors.Is(err, ErrDestroyed) {
			t.Errorf("Sign(%s) after Destroy = %v, %v, want ErrDestroyed", name, s, err)
		}
		zero := func(what string, b []byte) {
			if len(b) > 0 && !bytes.Equal(b, make([]byte, len(b))) {
				t.Errorf("%s after Destroy: %s is not zero", name, what)
			}
		}
		zero("HMAC secret", k.mac)
		zero("Ed25519 key", k.ed)
		zero("passphrase", k.passphrase)
	}
	// The credential stays the caller's: NewKey copied what it kept.
	c := creds["coinbase-ed25519"]
	saved := bytes.Clone(c.Secret)
	k, err := NewKey(c)
	if err != nil {
		t.Fatal(err)
	}
	k.Destroy()
	if !bytes.Equal(c.Secret, saved) {
		t.Errorf("Destroy changed the credential's secret")
	}
}

func TestCredentialValue(t *testing.T) {
	for _, c := range []Credential{
		{Exchange: Binance, KeyID: "k", Secret: []byte("s3cret")},
		{Exchange: OKX, KeyID: "k", Secret: []byte("s3cret"), Passphrase: []byte("pass phrase")},
		{Exchange: Bybit, KeyID: "k", Secret: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
	} {
		got, err := ParseValue(c.Exchange, c.KeyID, c.Value())
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if !bytes.Equal(got.Secret, c.Secret) || !bytes.Equal(got.Passphrase, c.Passphrase) {
			t.Errorf("%v: round trip gave secret %q passphrase %q", c, got.Secret, got.Passphrase)
		}
	}
	if _, err := ParseValue(OKX, "k", []byte("no passphrase")); !errors.Is(err, ErrBadKey) {
		t.Errorf("okx value without a passphrase: err = %v, want ErrBadKey", err)
	}
	for _, typ := range []KeyType{HMACKey, Ed25519Key, ECDSAKey, RSAKey} {
		if typ.Name() == "" {
			t.Errorf("%v has no stored name", typ)
		}
	}
	if KeyType(0).Name() != "" || KeyType(99).Name() != "" {
		t.Error("invalid key types have names")
	}
}
