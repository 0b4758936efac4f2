//go:build cgo && linux

package hsm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/testenv"
)

// keyPair makes a key pair labelled label in tok with pkcs11-tool, as an
// operator would (opensc).
func keyPair(t *testing.T, tok *testenv.SoftHSMToken, keyType, label string) {
	t.Helper()
	run(t, testenv.Require(t, "pkcs11-tool"), "--module", tok.ModulePath, "--token-label", tok.Label, "--login", "--pin", string(tok.PIN),
		"--keypairgen", "--key-type", keyType, "--label", label, "--id", "0a")
}

func TestSigner(t *testing.T) {
	tok := testenv.SoftHSM(t)
	keyPair(t, tok, "EC:prime256v1", "prov-p256")
	keyPair(t, tok, "EC:edwards25519", "prov-ed25519")
	msg := []byte("a bundle to sign")
	digest := sha256.Sum256(msg)

	p256, err := hsm.OpenSigner(config(t, tok, "prov-p256"))
	if err != nil {
		t.Fatalf("OpenSigner(P-256) = %v", err)
	}
	defer p256.Close()
	sig, err := p256.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := p256.Public().(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("the P-256 signature does not verify with the public key %T", p256.Public())
	}
	if _, err := p256.Sign(nil, msg, crypto.Hash(0)); err == nil {
		t.Fatal("the P-256 signer signed a message without a digest")
	}

	ed, err := hsm.OpenSigner(config(t, tok, "prov-ed25519"))
	if err != nil {
		t.Fatalf("OpenSigner(Ed25519) = %v", err)
	}
	defer ed.Close()
	sig, err = ed.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if epub, ok := ed.Public().(ed25519.PublicKey); !ok || !ed25519.Verify(epub, msg, sig) {
		t.Fatal("the Ed25519 signature does not verify with the public key")
	}

	if _, err := hsm.OpenSigner(config(t, tok, "no-such-key")); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("OpenSigner(missing) = %v, want ErrKeyNotFound", err)
	}
	ed.Close()
	if _, err := ed.Sign(nil, msg, crypto.Hash(0)); err == nil {
		t.Fatal("Sign after Close succeeded")
	}
}
