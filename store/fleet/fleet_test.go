package fleet

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

var created = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB, host byte) *ImportKey {
	t.Helper()
	seed := make([]byte, SeedSize)
	rand.Read(seed)
	k, err := NewImportKey(seed, [HostIDSize]byte{host}, created)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newProvisioner(t testing.TB, kind string) *Provisioner {
	t.Helper()
	pemKey, err := GenerateKeyFile(kind)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePrivateKeyFile(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportKeyBinding(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, SeedSize)
	a, _ := NewImportKey(seed, [HostIDSize]byte{1}, created)
	again, _ := NewImportKey(seed, [HostIDSize]byte{1}, created)
	other, _ := NewImportKey(seed, [HostIDSize]byte{2}, created)
	later, _ := NewImportKey(seed, [HostIDSize]byte{1}, created.Add(time.Second))
	if !bytes.Equal(a.PublicKey(), again.PublicKey()) {
		t.Fatal("the same seed, host and time gave two keys")
	}
	if bytes.Equal(a.PublicKey(), other.PublicKey()) || bytes.Equal(a.PublicKey(), later.PublicKey()) {
		t.Fatal("the import key does not depend on the host id and creation time")
	}
	if _, err := NewImportKey(seed[:31], [HostIDSize]byte{1}, created); err == nil {
		t.Fatal("NewImportKey accepted a 31-byte seed")
	}
}

func TestRecipientRoundTrip(t *testing.T) {
	k := newKey(t, 1)
	r := k.Recipient("trade-ny4-01", "pkcs11:keyward-kek/0a1b")
	b := r.Marshal()
	got, err := ParseRecipient(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), b) || got.ID() != k.ID() || got.Host != k.Host() {
		t.Fatalf("ParseRecipient(Marshal) = %+v, want %+v", got, r)
	}
	for name, bad := range map[string][]byte{
		"truncated":   b[:len(b)-10],
		"no newline":  b[:len(b)-1],
		"trailing":    append(bytes.Clone(b), "x\n"...),
		"upper hex":   bytes.Replace(b, []byte("host 01"), []byte("host 0A"), 1),
		"short key":   bytes.Replace(b, []byte("public-key "), []byte("public-key AAAA"), 1),
		"newer":       bytes.Replace(b, []byte("recipient-1"), []byte("recipient-2"), 1),
		"local time":  bytes.Replace(b, []byte("12:00:00Z"), []byte("12:00:00+01:00"), 1),
		"hostname sp": bytes.Replace(b, []byte("trade-ny4-01"), []byte("trade ny4"), 1),
	} {
		if r, err := ParseRecipient(bad); r != nil || err == nil {
			t.Errorf("%s: ParseRecipient = %v, %v; want an error", name, r, err)
		}
	}
}

func TestProvisionerKeyText(t *testing.T) {
	for _, kind := range []string{KeyEd25519, KeyECDSAP256} {
		p := newProvisioner(t, kind)
		s := p.Key().String()
		if !strings.HasPrefix(s, kind+":") {
			t.Errorf("String() = %q, want prefix %s:", s, kind)
		}
		k, err := ParseProvisionerKey(s)
		if err != nil || !k.Equal(p.Key()) || k.ID() != p.Key().ID() {
			t.Errorf("ParseProvisionerKey(%q) = %v, %v", s, k, err)
		}
	}
	for _, bad := range []string{"", "ed25519", "rsa:AAAA", "ed25519:AAAA", "ecdsa-p256:" + strings.Repeat("A", 88), "ed25519:!!!"} {
		if _, err := ParseProvisionerKey(bad); err == nil {
			t.Errorf("ParseProvisionerKey(%q) succeeded", bad)
		}
	}
}

func TestSealOpen(t *testing.T) {
	k := newKey(t, 1)
	to := k.Recipient("h1", "pkcs11:k")
	for _, kind := range []string{KeyEd25519, KeyECDSAP256} {
		p := newProvisioner(t, kind)
		c := Contents{Name: "binance/mm", Expires: created.Add(90 * 24 * time.Hour),
			Credential: &Credential{Exchange: "binance", KeyID: "AKID", KeyType: "hmac"}}
		b, err := Seal(to, p, c, []byte("s3cret"))
		if err != nil {
			t.Fatal(err)
		}
		raw := b.Marshal()
		parsed, err := ParseBundle(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(parsed.Marshal(), raw) {
			t.Fatal("Marshal(ParseBundle(b)) != b")
		}
		v, err := k.Open(parsed, []*ProvisionerKey{p.Key()})
		if err != nil || string(v) != "s3cret" {
			t.Fatalf("%s: Open = %q, %v", kind, v, err)
		}
		if parsed.Counter == 0 || parsed.Name != c.Name || *parsed.Credential != *c.Credential || !parsed.Expires.Equal(c.Expires) {
			t.Fatalf("parsed contents %+v, want %+v", parsed.Contents, c)
		}
	}
}

// TestRefusals seals one bundle and changes it the ways an attacker or an
// accident would; each is refused with the error that names the case.
func TestRefusals(t *testing.T) {
	k := newKey(t, 1)
	p := newProvisioner(t, KeyEd25519)
	stranger := newProvisioner(t, KeyECDSAP256)
	trusted := []*ProvisionerKey{p.Key()}
	good, err := Seal(k.Recipient("h1", "pkcs11:k"), p, Contents{Name: "a/b"}, []byte("value"))
	if err != nil {
		t.Fatal(err)
	}
	raw := good.Marshal()
	reseal := func(to *Recipient, by *Provisioner) []byte {
		b, err := Seal(to, by, Contents{Name: "a/b"}, []byte("value"))
		if err != nil {
			t.Fatal(err)
		}
		return b.Marshal()
	}
	flip := func(i int) []byte { b := bytes.Clone(raw); b[i] ^= 1; return b }
	unsigned := bytes.Clone(raw[:len(raw)-sigSize])
	unsigned[len(unsigned)-1] = 0
	for _, tc := range []struct {
		name  string
		raw   []byte
		parse bool // refused by the parser
		want  error
	}{
		{"other host", reseal(newKey(t, 2).Recipient("h2", "pkcs11:k"), p), false, ErrOtherHost},
		{"old import key", reseal(newKey(t, 1).Recipient("h1", "pkcs11:k"), p), false, ErrOtherKey},
		{"unlisted provisioner", reseal(k.Recipient("h1", "pkcs11:k"), stranger), false, ErrUntrusted},
		{"unsigned", unsigned, false, ErrUnsigned},
		{"tampered name", bytes.Replace(raw, []byte("a/b"), []byte("a/c"), 1), false, ErrSignature},
		{"tampered ciphertext", flip(len(raw) - sigSize - 5), false, ErrSignature},
		{"tampered signature", flip(len(raw) - 1), false, ErrSignature},
		{"truncated", raw[:len(raw)-1], true, nil},
		{"empty", nil, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseBundle(tc.raw)
			if tc.parse {
				var pe *ParseError
				if b != nil || !errors.As(err, &pe) {
					t.Fatalf("ParseBundle = %v, %v; want a *ParseError", b, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if v, err := k.Open(b, trusted); v != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Open = %q, %v; want %v", v, err, tc.want)
			}
		})
	}
}

func FuzzParseBundle(f *testing.F) {
	k := newKey(f, 1)
	p := newProvisioner(f, KeyEd25519)
	b, _ := Seal(k.Recipient("h", "pkcs11:k"), p, Contents{Name: "a/b", Counter: 1}, []byte("v"))
	f.Add(b.Marshal())
	b, _ = Seal(k.Recipient("h", "pkcs11:k"), newProvisioner(f, KeyECDSAP256),
		Contents{Name: "x", Counter: 9, Expires: created, Credential: &Credential{"okx", "id", "hmac"}}, []byte("v"))
	f.Add(b.Marshal())
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := ParseBundle(raw)
		if err != nil {
			var pe *ParseError
			if b != nil || !errors.As(err, &pe) {
				t.Fatalf("ParseBundle() = %v, %v; want nil, *ParseError", b, err)
			}
			return
		}
		if got := b.Marshal(); !bytes.Equal(got, raw) {
			t.Fatalf("Marshal(ParseBundle(b)) = %x, want %x", got, raw)
		}
		// A parsed bundle is safe to check: no panic, whatever it holds.
		if v, err := k.Open(b, []*ProvisionerKey{p.Key()}); err == nil && len(v) == 0 {
			t.Fatal("Open returned an empty value without an error")
		}
	})
}

func FuzzParseRecipient(f *testing.F) {
	f.Add(newKey(f, 1).Recipient("trade-01", "pkcs11:keyward-kek/00").Marshal())
	f.Add([]byte("keyward-recipient-1\nhost 00\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseRecipient(raw)
		if err != nil {
			var pe *RecipientParseError
			if r != nil || !errors.As(err, &pe) {
				t.Fatalf("ParseRecipient() = %v, %v; want nil, *RecipientParseError", r, err)
			}
			return
		}
		if got := r.Marshal(); !bytes.Equal(got, raw) {
			t.Fatalf("Marshal(ParseRecipient(b)) = %q, want %q", got, raw)
		}
	})
}
