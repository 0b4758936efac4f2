package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/secretname"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

var testHost = storetest.TestHost

func newStore(t testing.TB, b store.Backend) *store.Store {
	t.Helper()
	return storetest.NewStore(t, b)
}

func mustPut(t *testing.T, s *store.Store, name, value string, opts store.PutOptions) uint32 {
	t.Helper()
	v, err := s.Put(context.Background(), name, []byte(value), opts)
	if err != nil {
		t.Fatalf("Put(%q) = %v", name, err)
	}
	return v
}

func mustOpen(t *testing.T, s *store.Store, name string, version uint32) string {
	t.Helper()
	sec, _, err := s.Open(context.Background(), name, version)
	if err != nil {
		t.Fatalf("Open(%q, %d) = %v", name, version, err)
	}
	defer sec.Destroy()
	return string(sec.Bytes())
}

func TestPutOpenListRemove(t *testing.T) {
	s := newStore(t, storetest.NewMemBackend())
	ctx := context.Background()

	if v := mustPut(t, s, "binance/mm-prod", "s3cret-1", store.PutOptions{}); v != 1 {
		t.Errorf("Put() = version %d, want 1", v)
	}
	if _, err := s.Put(ctx, "binance/mm-prod", []byte("x"), store.PutOptions{}); !errors.Is(err, store.ErrExists) {
		t.Errorf("Put(existing) = %v, want ErrExists", err)
	}
	if v := mustPut(t, s, "binance/mm-prod", "s3cret-2", store.PutOptions{NewVersion: true}); v != 2 {
		t.Errorf("Put(NewVersion) = version %d, want 2", v)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	mustPut(t, s, "okx/bot", "okx", store.PutOptions{Expires: exp})

	if got := mustOpen(t, s, "binance/mm-prod", 0); got != "s3cret-2" {
		t.Errorf("Open(latest) = %q, want s3cret-2", got)
	}
	if got := mustOpen(t, s, "binance/mm-prod", 1); got != "s3cret-1" {
		t.Errorf("Open(1) = %q, want s3cret-1", got)
	}
	if _, _, err := s.Open(ctx, "binance/mm-prod", 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open(missing version) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Open(ctx, "nope", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}

	envs, damaged, err := s.List()
	if err != nil || len(damaged) != 0 {
		t.Fatalf("List() = %v, %v", damaged, err)
	}
	var got []string
	for _, e := range envs {
		got = append(got, e.Name+"@"+string(rune('0'+e.Version)))
	}
	if want := "binance/mm-prod@1 binance/mm-prod@2 okx/bot@1"; strings.Join(got, " ") != want {
		t.Errorf("List() = %v, want %s", got, want)
	}
	if !envs[2].Expires.Equal(exp) {
		t.Errorf("List() expiry = %v, want %v", envs[2].Expires, exp)
	}

	if n, err := s.Remove("binance/mm-prod"); n != 2 || err != nil {
		t.Errorf("Remove() = %d, %v; want 2, nil", n, err)
	}
	if _, err := s.Remove("binance/mm-prod"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Remove(again) = %v, want ErrNotFound", err)
	}
	if got := mustOpen(t, s, "okx/bot", 0); got != "okx" {
		t.Errorf("Open(other after remove) = %q", got)
	}
}

func TestPutRefuses(t *testing.T) {
	s := newStore(t, storetest.NewMemBackend())
	ctx := context.Background()
	if _, err := s.Put(ctx, "a/../b", []byte("x"), store.PutOptions{}); !errors.Is(err, secretname.ErrInvalid) {
		t.Errorf("Put(bad name) = %v, want secretname.ErrInvalid", err)
	}
	if _, err := s.Put(ctx, "big", make([]byte, store.MaxSecretSize+1), store.PutOptions{}); err == nil {
		t.Errorf("Put(oversized) = nil error")
	}
	if _, err := s.Put(ctx, "old", []byte("x"), store.PutOptions{Expires: time.Now().Add(-time.Hour)}); err == nil {
		t.Errorf("Put(expiry in the past) = nil error")
	}
	if envs, _, _ := s.List(); len(envs) != 0 {
		t.Errorf("refused puts wrote %d envelopes", len(envs))
	}
	if _, err := s.Put(ctx, "empty", nil, store.PutOptions{}); err != nil {
		t.Errorf("Put(empty value) = %v, want nil", err)
	}
}

func TestInitRefusesLooseDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := store.Init(dir); err == nil || !strings.Contains(err.Error(), "chmod 0700") {
		t.Errorf("Init(0777 dir) = %v, want an error suggesting chmod 0700", err)
	}
}

func TestDamagedEnvelopeIsSkipped(t *testing.T) {
	s := newStore(t, storetest.NewMemBackend())
	mustPut(t, s, "good", "fine", store.PutOptions{})
	mustPut(t, s, "bad", "soon damaged", store.PutOptions{})
	path := filepath.Join(s.Dir(), "bad@1.kwe")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.Dir(), "junk@1.kwe"), []byte("not an envelope"), 0o600)

	envs, damaged, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 || envs[0].Name != "good" {
		t.Errorf("List() = %v, want only good", envs)
	}
	if len(damaged) != 2 {
		t.Errorf("List() damaged = %v, want 2 entries", damaged)
	}
	for _, d := range damaged {
		var de *store.DamagedError
		if !errors.As(d, &de) {
			t.Errorf("damaged entry %v is not a *DamagedError", d)
		}
	}
	if got := mustOpen(t, s, "good", 0); got != "fine" {
		t.Errorf("Open(good) = %q", got)
	}
}

// TestTamper changes each header field, the wrapped key and the ciphertext,
// renames and copies envelopes, and moves them to another host: every case
// must fail with ErrIntegrity (or ErrWrongKey for a swapped key id).
func TestTamper(t *testing.T) {
	RunTamper(t, storetest.NewMemBackend())
}

// RunTamper is shared with the real-backend tests.
func RunTamper(t *testing.T, b store.Backend) {
	ctx := context.Background()
	s := newStore(t, b)
	mustPut(t, s, "binance/mm-prod", "tamper-target", store.PutOptions{Expires: time.Now().Add(48 * time.Hour)})
	mustPut(t, s, "okx/bot", "other", store.PutOptions{})
	path := filepath.Join(s.Dir(), "binance+mm-prod@1.kwe")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	edits := map[string]func(e *store.Envelope){
		"name":        func(e *store.Envelope) { e.Name = "binance/mm-prox" },
		"version":     func(e *store.Envelope) { e.Version = 2 },
		"created":     func(e *store.Envelope) { e.Created = e.Created.Add(time.Second) },
		"expires":     func(e *store.Envelope) { e.Expires = e.Expires.Add(24 * time.Hour) },
		"no expiry":   func(e *store.Envelope) { e.Expires = time.Time{} },
		"prev until":  func(e *store.Envelope) { e.PrevUntil = e.Created.Add(time.Hour) },
		"host":        func(e *store.Envelope) { e.Host[0] ^= 1 },
		"nonce":       func(e *store.Envelope) { e.Nonce[0] ^= 1 },
		"wrapped key": func(e *store.Envelope) { e.WrappedKey[len(e.WrappedKey)-1] ^= 1 },
		"ciphertext":  func(e *store.Envelope) { e.Ciphertext[0] ^= 1 },
		"tag":         func(e *store.Envelope) { e.Ciphertext[len(e.Ciphertext)-1] ^= 1 },
	}
	// An exchange credential's attributes are authenticated too, and a
	// plain secret cannot be made into a credential or back.
	cred := &store.CredentialInfo{Exchange: "binance", KeyID: "api-key-1", KeyType: "hmac"}
	mustPut(t, s, "binance/key", "cred-secret", store.PutOptions{Credential: cred})
	credOrig, err := os.ReadFile(filepath.Join(s.Dir(), "binance+key@1.kwe"))
	if err != nil {
		t.Fatal(err)
	}
	for field, edit := range map[string]func(e *store.Envelope){
		"exchange":      func(e *store.Envelope) { e.Credential.Exchange = "bybit" },
		"api key id":    func(e *store.Envelope) { e.Credential.KeyID = "api-key-2" },
		"key type":      func(e *store.Envelope) { e.Credential.KeyType = "ed25519" },
		"no credential": func(e *store.Envelope) { e.Credential = nil },
	} {
		t.Run(field, func(t *testing.T) {
			bad, _ := store.Parse(credOrig)
			edit(bad)
			if sec, err := s.OpenEnvelope(ctx, bad); !errors.Is(err, store.ErrIntegrity) {
				t.Errorf("OpenEnvelope(credential %s changed) = %v, %v; want ErrIntegrity", field, sec, err)
			}
		})
	}
	t.Run("made a credential", func(t *testing.T) {
		bad, _ := store.Parse(orig)
		bad.Credential = cred
		if sec, err := s.OpenEnvelope(ctx, bad); !errors.Is(err, store.ErrIntegrity) {
			t.Errorf("OpenEnvelope(plain secret made a credential) = %v, %v; want ErrIntegrity", sec, err)
		}
	})

	for field, edit := range edits {
		t.Run(field, func(t *testing.T) {
			bad, _ := store.Parse(orig)
			edit(bad)
			sec, err := s.OpenEnvelope(ctx, bad)
			if !errors.Is(err, store.ErrIntegrity) {
				t.Errorf("OpenEnvelope(%s changed) = %v, %v; want ErrIntegrity", field, sec, err)
			}
			// The same edit written to disk, in place.
			if err := os.WriteFile(path, bad.Marshal(), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o600)
			if _, _, err := s.Open(ctx, "binance/mm-prod", 1); !errors.Is(err, store.ErrIntegrity) {
				t.Errorf("Open(%s changed on disk) = %v; want ErrIntegrity", field, err)
			}
		})
	}

	t.Run("key id", func(t *testing.T) {
		bad, _ := store.Parse(orig)
		bad.KeyID += "x"
		if _, err := s.OpenEnvelope(ctx, bad); !errors.Is(err, store.ErrWrongKey) {
			t.Errorf("OpenEnvelope(key id changed) = %v; want ErrWrongKey", err)
		}
	})

	t.Run("renamed file", func(t *testing.T) {
		other := filepath.Join(s.Dir(), "okx+bot@2.kwe")
		if err := os.WriteFile(other, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(other)
		if _, _, err := s.Open(ctx, "okx/bot", 0); !errors.Is(err, store.ErrIntegrity) {
			t.Errorf("Open(copied under another name) = %v; want ErrIntegrity", err)
		}
	})

	t.Run("other host", func(t *testing.T) {
		s2, err := store.New(store.Config{Dir: s.Dir(), Backend: b, Host: store.DeriveHostID("ffffffffffffffffffffffffffffffff")})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s2.Open(ctx, "binance/mm-prod", 1); !errors.Is(err, store.ErrIntegrity) || !strings.Contains(err.Error(), "another host") {
			t.Errorf("Open(on another host) = %v; want ErrIntegrity naming another host", err)
		}
	})

	t.Run("untouched still opens", func(t *testing.T) {
		if got := mustOpen(t, s, "binance/mm-prod", 1); got != "tamper-target" {
			t.Errorf("Open() = %q", got)
		}
	})
}

func TestSecretRedacts(t *testing.T) {
	sec := store.NewSecret([]byte("hunter2-hunter2"))
	defer sec.Destroy()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		if out := sprintf(verb, sec); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74") {
			t.Errorf("Sprintf(%s, secret) = %q reveals the secret", verb, out)
		}
	}
	b := sec.Bytes()
	sec.Destroy()
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Errorf("Destroy() left plaintext in memory: %q", b)
	}
}

// TestWriterMustOwnStore: a user other than the store's owner (root, say,
// writing into the agent's store) is refused before anything is written.
func TestWriterMustOwnStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the store to another uid")
	}
	s := newStore(t, storetest.NewMemBackend())
	if err := os.Chown(s.Dir(), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(context.Background(), "a", []byte("x"), store.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 4242") {
		t.Errorf("Put() into another uid's store = %v, want refused", err)
	}
	if envs, _, _ := s.List(); len(envs) != 0 {
		t.Errorf("a refused Put wrote %d envelopes", len(envs))
	}
}
