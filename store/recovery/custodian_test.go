package recovery

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"
)

// A custodian is a public key file and the identity that opens what is
// encrypted to it.
type custodian struct {
	pub string
	id  age.Identity
}

func ed25519Custodian(t testing.TB) custodian {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	spk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	id, err := agessh.NewEd25519Identity(priv)
	if err != nil {
		t.Fatal(err)
	}
	return custodian{"# alice's laptop\n" + string(ssh.MarshalAuthorizedKey(spk)), id}
}

func testCustodians(t *testing.T) map[string]custodian {
	x, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rpk, _ := ssh.NewPublicKey(&rk.PublicKey)
	rid, err := agessh.NewRSAIdentity(rk)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]custodian{
		"age x25519":  {x.Recipient().String() + "\n", x},
		"age hybrid":  {pq.Recipient().String(), pq},
		"ssh-ed25519": ed25519Custodian(t),
		"ssh-rsa":     {string(ssh.MarshalAuthorizedKey(rpk)), rid},
	}
}

// decrypt opens an armored age file as a custodian's age -d would.
func decrypt(t *testing.T, armored []byte, id age.Identity) string {
	t.Helper()
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(string(armored))), id)
	if err != nil {
		t.Fatalf("age -d: %v", err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// encryptTo encrypts text to an age recipient string, armored, as a
// custodian's `age -a -r RECIPIENT` would.
func encryptTo(t *testing.T, recipient, text string) string {
	t.Helper()
	rs, err := age.ParseRecipients(strings.NewReader(recipient))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	aw := armor.NewWriter(&b)
	w, err := age.Encrypt(aw, rs...)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, text)
	w.Close()
	aw.Close()
	return b.String()
}

// TestShareEncrypt: a share encrypted to each kind of custodian key
// opens with that custodian's identity, and only with it, to the share's
// text.
func TestShareEncrypt(t *testing.T) {
	_, shares := newTestKit(t, 5, 3)
	other, _ := age.GenerateX25519Identity()
	for name, c := range testCustodians(t) {
		t.Run(name, func(t *testing.T) {
			r, err := ParseRecipient([]byte(c.pub))
			if err != nil {
				t.Fatalf("ParseRecipient() = %v", err)
			}
			if name == "ssh-ed25519" && !strings.HasPrefix(r.String(), "ssh-ed25519 SHA256:") {
				t.Errorf("String() = %q, want the key's fingerprint", r)
			}
			armored, err := shares[1].Encrypt(r)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(armored), "-----BEGIN AGE ENCRYPTED FILE-----\n") || strings.Contains(string(armored), shares[1].String()[60:]) {
				t.Fatalf("Encrypt() = %q, want an armored age file without the share", armored)
			}
			if got := decrypt(t, armored, c.id); got != shares[1].String()+"\n" {
				t.Errorf("age -d = %q, want the share's line", got)
			}
			if _, err := age.Decrypt(armor.NewReader(strings.NewReader(string(armored))), other); err == nil {
				t.Errorf("another identity opened the share")
			}
		})
	}
}

func TestParseRecipientRejects(t *testing.T) {
	x, _ := age.GenerateX25519Identity()
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	epk, _ := ssh.NewPublicKey(&ek.PublicKey)
	tests := map[string]struct{ in, want string }{
		"empty":        {"", "no public key"},
		"comment only": {"# nothing\n\n", "no public key"},
		"two keys":     {x.Recipient().String() + "\n" + x.Recipient().String() + "\n", "more than one key"},
		"age identity": {x.String() + "\n", "private key"},
		"ssh private":  {"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", "private key"},
		"bad age":      {"age1qqqq\n", "malformed age recipient"},
		"bad pq":       {"age1pq1qqqq\n", "malformed age post-quantum"},
		"garbage":      {"hello world\n", "not a public key"},
		"ecdsa":        {string(ssh.MarshalAuthorizedKey(epk)), "ecdsa-sha2-nistp256 keys cannot"},
		"oversized":    {strings.Repeat("#", MaxRecipientFile+1), "larger than"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := ParseRecipient([]byte(tt.in))
			if r != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRecipient() = %v, %v; want an error containing %q", r, err, tt.want)
			}
			if mid := len(tt.in) / 2; err != nil && len(tt.in) > 40 && strings.Contains(err.Error(), tt.in[mid:mid+12]) {
				t.Errorf("ParseRecipient() error %q quotes the file", err)
			}
		})
	}
}

// TestReadShares: shares in clear and shares encrypted to the restore
// key, to either of its recipients, mixed, are all read; an encrypted
// share that is not for this restore key is named with what it is
// encrypted to.
func TestReadShares(t *testing.T) {
	_, shares := newTestKit(t, 5, 3)
	key, err := NewRestoreKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.Recipient(), "age1pq1") || !strings.HasPrefix(key.ClassicRecipient(), "age1") {
		t.Fatalf("recipients %q, %q", key.Recipient(), key.ClassicRecipient())
	}
	in := "\n" + shares[0].String() + "\n" +
		encryptTo(t, key.Recipient(), shares[2].String()+"\n") + "\r\n" +
		encryptTo(t, key.ClassicRecipient(), shares[4].String())
	got, err := ReadShares([]byte(in), key)
	if err != nil || len(got) != 3 {
		t.Fatalf("ReadShares() = %d shares, %v; want 3", len(got), err)
	}
	for i, want := range []int{1, 3, 5} {
		if got[i].Index != want || got[i].String() != shares[want-1].String() {
			t.Errorf("share %d = %d, want %d", i, got[i].Index, want)
		}
	}

	// A custodian's share file as init wrote it, not re-encrypted.
	c := ed25519Custodian(t)
	r, _ := ParseRecipient([]byte(c.pub))
	asGiven, _ := shares[1].Encrypt(r)
	otherKey, _ := NewRestoreKey()
	tests := map[string]struct {
		in   string
		key  *RestoreKey
		want []string
	}{
		"custodian's file": {shares[0].String() + "\n" + string(asGiven), key,
			[]string{"encrypted share 1: recovery: bad share: it is not encrypted to this restore's key (it is encrypted to ssh-ed25519)"}},
		"another restore": {encryptTo(t, otherKey.ClassicRecipient(), shares[0].String()) + encryptTo(t, key.ClassicRecipient(), shares[1].String()), key,
			[]string{"encrypted share 1:", "X25519"}},
		"no key": {encryptTo(t, key.ClassicRecipient(), shares[0].String()), nil,
			[]string{"encrypted share 1:", "no restore key"}},
		"cut short": {shares[0].String() + "\n" + strings.Split(encryptTo(t, key.ClassicRecipient(), shares[0].String()), "-----END")[0], key,
			[]string{"encrypted share 1:", "cut short"}},
		"garbled": {strings.Replace(encryptTo(t, key.ClassicRecipient(), shares[0].String()), "\n", "\n!!", 2), key,
			[]string{"encrypted share 1:", "not a readable age file"}},
		"many recipients": {encryptTo(t, strings.Repeat(key.ClassicRecipient()+"\n", 100), shares[0].String()), key,
			[]string{"encrypted share 1:", "more than a share encrypted to one recipient"}},
		"not a share inside": {encryptTo(t, key.ClassicRecipient(), "hello\n"), key,
			[]string{"text before the first share"}},
		"typo inside": {encryptTo(t, key.ClassicRecipient(), strings.Replace(shares[3].String(), " of 5 threshold 3 ", " of 5 threshold 3 a", 1)), key,
			[]string{"share 4:"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ReadShares([]byte(tt.in), tt.key)
			if got != nil || !errors.Is(err, ErrBadShare) {
				t.Fatalf("ReadShares() = %d shares, %v; want ErrBadShare", len(got), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ReadShares() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseRecipient(f *testing.F) {
	x, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	f.Add([]byte(x.Recipient().String()))
	f.Add([]byte(pq.Recipient().String()))
	f.Add([]byte(ed25519Custodian(f).pub))
	f.Add([]byte("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecipient(b)
		if (r == nil) == (err == nil) {
			t.Fatalf("ParseRecipient() = %v, %v; want exactly one of them", r, err)
		}
	})
}

// FuzzReadShares feeds the restore input parser: clear shares, armored
// age blocks, and anything between. It never panics, and what it accepts
// are valid shares that round-trip.
func FuzzReadShares(f *testing.F) {
	_, shares := newTestKit(f, 5, 3)
	key, err := NewRestoreKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(shares[0].String() + "\n" + shares[1].String()))
	f.Add([]byte(armorBegin + "\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n" + armorEnd + "\n"))
	f.Add([]byte(armorBegin + "\n" + armorBegin + "\n" + armorEnd))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ReadShares(b, key)
		if err != nil {
			if got != nil || !errors.Is(err, ErrBadShare) {
				t.Fatalf("ReadShares() = %d shares, %v; want none and ErrBadShare", len(got), err)
			}
			return
		}
		for _, s := range got {
			if again, err := ParseShare(s.String()); err != nil || again.String() != s.String() {
				t.Fatalf("a share read does not round-trip: %v", err)
			}
		}
	})
}
