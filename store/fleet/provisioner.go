package fleet

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// The kinds of provisioner key. A provisioner's public key is written
// "ed25519:BASE64" (the 32-byte key) or "ecdsa-p256:BASE64" (the 65-byte
// uncompressed point), in standard base64 with padding: the form hosts list
// in fleet.provisioners and `keyward provisioner` prints.
const (
	KeyEd25519   = "ed25519"
	KeyECDSAP256 = "ecdsa-p256"
)

const (
	keyTypeEd25519   = 1
	keyTypeECDSAP256 = 2
	// sigSize is the size of a signature of either kind: Ed25519, or
	// ECDSA P-256 as r||s.
	sigSize = 64
	// maxPublicKey bounds a provisioner public key (a P-256 point).
	maxPublicKey = 65
	// maxPrivateKeyFile bounds a provisioner's private key file.
	maxPrivateKeyFile = 4096
)

// A ProvisionerKey is the public key of a provisioner: what verifies the
// bundles it signs. It is comparable with [ProvisionerKey.Equal].
type ProvisionerKey struct {
	typ byte   // keyTypeEd25519 or keyTypeECDSAP256
	raw []byte // the key: 32 bytes, or a 65-byte uncompressed P-256 point
	ec  *ecdsa.PublicKey
}

// NewProvisionerKey returns the provisioner key of an Ed25519 or ECDSA
// P-256 public key.
func NewProvisionerKey(pub crypto.PublicKey) (*ProvisionerKey, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return newProvisionerKey(keyTypeEd25519, k)
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("fleet: an ECDSA provisioner key must be on P-256, not %s", k.Curve.Params().Name)
		}
		raw, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		return newProvisionerKey(keyTypeECDSAP256, raw)
	}
	return nil, fmt.Errorf("fleet: a provisioner key is Ed25519 or ECDSA P-256, not %T", pub)
}

// newProvisionerKey validates raw as a key of kind typ.
func newProvisionerKey(typ byte, raw []byte) (*ProvisionerKey, error) {
	k := &ProvisionerKey{typ: typ, raw: append([]byte(nil), raw...)}
	switch typ {
	case keyTypeEd25519:
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("an Ed25519 key is %d bytes, not %d", ed25519.PublicKeySize, len(raw))
		}
	case keyTypeECDSAP256:
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("not a P-256 point: %w", err)
		}
		k.ec = pub
	default:
		return nil, fmt.Errorf("unknown provisioner key type %d", typ)
	}
	return k, nil
}

// ParseProvisionerKey reads a provisioner public key as String writes it.
func ParseProvisionerKey(s string) (*ProvisionerKey, error) {
	kind, enc, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return nil, fmt.Errorf("provisioner key %q is not KIND:BASE64 (ed25519:... or ecdsa-p256:...)", short(s))
	}
	var typ byte
	switch kind {
	case KeyEd25519:
		typ = keyTypeEd25519
	case KeyECDSAP256:
		typ = keyTypeECDSAP256
	default:
		return nil, fmt.Errorf("provisioner key kind %q is neither %s nor %s", short(kind), KeyEd25519, KeyECDSAP256)
	}
	if len(enc) > 2*b64.EncodedLen(maxPublicKey) {
		return nil, fmt.Errorf("provisioner key %q is too long", short(s))
	}
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("provisioner key %q is not base64", short(s))
	}
	k, err := newProvisionerKey(typ, raw)
	if err != nil {
		return nil, fmt.Errorf("provisioner key %q: %w", short(s), err)
	}
	return k, nil
}

// short cuts s for a message.
func short(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

// String returns the key as hosts list it: "ed25519:BASE64" or
// "ecdsa-p256:BASE64".
func (k *ProvisionerKey) String() string { return k.Kind() + ":" + b64.EncodeToString(k.raw) }

// Kind returns KeyEd25519 or KeyECDSAP256.
func (k *ProvisionerKey) Kind() string {
	if k.typ == keyTypeEd25519 {
		return KeyEd25519
	}
	return KeyECDSAP256
}

// ID returns the key's fingerprint: 16 hex digits of the SHA-256 of String.
func (k *ProvisionerKey) ID() string {
	h := sha256.Sum256([]byte(k.String()))
	return hex.EncodeToString(h[:8])
}

// Equal reports whether k and o are the same key.
func (k *ProvisionerKey) Equal(o *ProvisionerKey) bool {
	return k != nil && o != nil && k.typ == o.typ && string(k.raw) == string(o.raw)
}

// verify checks sig over msg.
func (k *ProvisionerKey) verify(msg, sig []byte) bool {
	if len(sig) != sigSize {
		return false
	}
	switch k.typ {
	case keyTypeEd25519:
		return ed25519.Verify(ed25519.PublicKey(k.raw), msg, sig)
	case keyTypeECDSAP256:
		h := sha256.Sum256(msg)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k.ec, h[:], r, s)
	}
	return false
}

// sign signs msg with signer, a private key of kind k, and returns the
// signature in the bundle's encoding.
func (k *ProvisionerKey) sign(signer crypto.Signer, msg []byte) ([]byte, error) {
	switch k.typ {
	case keyTypeEd25519:
		sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("fleet: signing: %w", err)
		}
		if len(sig) != sigSize {
			return nil, fmt.Errorf("fleet: the signer returned a %d-byte Ed25519 signature", len(sig))
		}
		return sig, nil
	default:
		h := sha256.Sum256(msg)
		der, err := signer.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("fleet: signing: %w", err)
		}
		return rawECDSA(der)
	}
}

// rawECDSA converts an ASN.1 ECDSA signature, as crypto.Signer returns
// them, to r||s of 32 bytes each.
func rawECDSA(der []byte) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, errors.New("fleet: the signer returned a malformed ECDSA signature")
	}
	out := make([]byte, sigSize)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

// A Provisioner signs bundles: a private key and its public half.
type Provisioner struct {
	signer crypto.Signer
	key    *ProvisionerKey
}

// NewProvisioner returns the provisioner of signer: an Ed25519 or ECDSA
// P-256 private key, in memory or in a token (package hsm's Signer).
func NewProvisioner(signer crypto.Signer) (*Provisioner, error) {
	k, err := NewProvisionerKey(signer.Public())
	if err != nil {
		return nil, err
	}
	return &Provisioner{signer: signer, key: k}, nil
}

// Key returns the provisioner's public key.
func (p *Provisioner) Key() *ProvisionerKey { return p.key }

// GenerateKeyFile makes a provisioner private key of the kind given
// (KeyEd25519 or KeyECDSAP256) and returns it as a PKCS #8 PEM file, the
// form [ParsePrivateKeyFile] reads (openssl genpkey makes the same).
func GenerateKeyFile(kind string) ([]byte, error) {
	var priv any
	switch kind {
	case KeyEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		priv = k
	case KeyECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		priv = k
	default:
		return nil, fmt.Errorf("fleet: key type %q is neither %s nor %s", kind, KeyEd25519, KeyECDSAP256)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyFile reads a provisioner's private key file: an Ed25519
// or ECDSA P-256 key in a PKCS #8 PEM block ("PRIVATE KEY").
func ParsePrivateKeyFile(b []byte) (*Provisioner, error) {
	if len(b) > maxPrivateKeyFile {
		return nil, fmt.Errorf("fleet: a provisioner key file is at most %d bytes", maxPrivateKeyFile)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("fleet: not a provisioner key file: want one PEM block \"PRIVATE KEY\" (PKCS #8)")
	}
	defer clear(block.Bytes)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("fleet: reading the provisioner key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("fleet: a provisioner key is Ed25519 or ECDSA P-256, not %T", k)
	}
	return NewProvisioner(s)
}

// sign signs msg as a bundle signature and checks the result with the
// public key, so that a token that signs wrongly is caught when sealing,
// not on every host.
func (p *Provisioner) sign(msg []byte) ([]byte, error) {
	sig, err := p.key.sign(p.signer, msg)
	if err != nil {
		return nil, err
	}
	if !p.key.verify(msg, sig) {
		return nil, errors.New("fleet: the provisioner's signature does not verify with its public key")
	}
	return sig, nil
}
