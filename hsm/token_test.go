//go:build cgo && linux

package hsm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/pin"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/miekg/pkcs11"
)

const keyLabel = "keyward-root"

// config returns a Config for object on tok, reading the PIN through the
// URI's pin-source as the agent does.
func config(t testing.TB, tok *testenv.SoftHSMToken, object string) hsm.Config {
	t.Helper()
	u, err := hsm.ParseURI(tok.URI(object))
	if err != nil {
		t.Fatalf("ParseURI(%q) = %v", tok.URI(object), err)
	}
	userPIN, err := pin.Read(pin.Source{Credential: "keyward-pin", URIFile: u.PINFile()})
	if err != nil {
		t.Fatalf("pin.Read() = %v", err)
	}
	return hsm.Config{URI: u, PIN: userPIN}
}

// initToken runs Init and closes the Token at the end of the test.
func initToken(t testing.TB, cfg hsm.Config) (*hsm.Token, bool) {
	t.Helper()
	tok, created, err := hsm.Init(cfg)
	if err != nil {
		t.Fatalf("Init() = %v", err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return tok, created
}

// newKey returns a random 32-byte data key.
func newKey() []byte {
	k := make([]byte, hsm.DataKeySize)
	rand.Read(k)
	return k
}

func TestInit(t *testing.T) {
	soft := testenv.SoftHSM(t)
	cfg := config(t, soft, keyLabel)

	tok, created, err := hsm.Init(cfg)
	if err != nil || !created {
		t.Fatalf("Init() = %v, %v, want created", created, err)
	}
	id := tok.KeyID()
	if !strings.HasPrefix(id, "pkcs11:") || !strings.Contains(id, "/"+keyLabel+"/") {
		t.Errorf("KeyID() = %q, want pkcs11:<serial>/%s/<hex id>", id, keyLabel)
	}
	parts := strings.Split(strings.TrimPrefix(id, "pkcs11:"), "/")
	if len(parts) != 3 || parts[0] == "" || len(parts[2]) != 32 {
		t.Errorf("KeyID() = %q, want serial, label and a 16-byte hex id", id)
	}
	wrapped, err := tok.Wrap(context.Background(), newKey())
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if err := tok.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := tok.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}

	again, created := initToken(t, cfg)
	if created {
		t.Errorf("second Init() created = true, want false")
	}
	if again.KeyID() != id {
		t.Errorf("second Init() KeyID() = %q, want %q", again.KeyID(), id)
	}
	if _, err := again.Unwrap(context.Background(), wrapped); err != nil {
		t.Errorf("Unwrap() after reopening = %v", err)
	}
}

func TestInitWithID(t *testing.T) {
	soft := testenv.SoftHSM(t)
	u, err := hsm.ParseURI(strings.Replace(soft.URI(keyLabel), "?", ";id=%C0%FF%EE?", 1))
	if err != nil {
		t.Fatal(err)
	}
	tok, created := initToken(t, hsm.Config{URI: u, PIN: soft.PIN})
	if !created || !strings.HasSuffix(tok.KeyID(), "/"+keyLabel+"/c0ffee") {
		t.Errorf("Init() = %q, created %v; want KeyID ending /%s/c0ffee, created", tok.KeyID(), created, keyLabel)
	}
	// Open by id alone finds the same key.
	byID, err := hsm.ParseURI("pkcs11:token=" + soft.Label + ";id=%C0%FF%EE?module-path=" + soft.ModulePath)
	if err != nil {
		t.Fatal(err)
	}
	other, err := hsm.Open(hsm.Config{URI: byID, PIN: soft.PIN})
	if err != nil {
		t.Fatalf("Open(id only) = %v", err)
	}
	defer other.Close()
	if other.KeyID() != tok.KeyID() {
		t.Errorf("Open(id only).KeyID() = %q, want %q", other.KeyID(), tok.KeyID())
	}
}

func TestWrapUnwrap(t *testing.T) {
	soft := testenv.SoftHSM(t)
	tok, _ := initToken(t, config(t, soft, keyLabel))
	ctx := context.Background()
	key := newKey()
	seen := make(map[string]bool)
	for range 20 {
		w, err := tok.Wrap(ctx, key)
		if err != nil {
			t.Fatalf("Wrap() = %v", err)
		}
		if len(w) != hsm.WrappedSize || hsm.WrappedSize != 61 || w[0] != hsm.FormatV1 {
			t.Fatalf("Wrap() = %d bytes starting %#x, want 61 starting 0x01", len(w), w[0])
		}
		if bytes.Contains(w, key) {
			t.Fatalf("Wrap() output contains the data key")
		}
		if seen[string(w)] {
			t.Fatalf("Wrap() returned the same blob twice")
		}
		seen[string(w)] = true
		got, err := tok.Unwrap(ctx, w)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Unwrap(Wrap(k)) = %x, %v, want k", got, err)
		}
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := tok.Wrap(ctx, make([]byte, n)); err == nil {
			t.Errorf("Wrap(%d bytes) = nil error, want error", n)
		}
	}
	if err := tok.Healthy(ctx); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
}

func TestKeyCannotBeRead(t *testing.T) {
	soft := testenv.SoftHSM(t)
	tok, _ := initToken(t, config(t, soft, keyLabel))
	p, slot := hsm.ModuleOf(tok)
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseSession(s)
	if err := p.Login(s, pkcs11.CKU_USER, string(soft.PIN)); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel)}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := p.FindObjects(s, 10)
	p.FindObjectsFinal(s)
	if err != nil || len(objs) != 1 {
		t.Fatalf("FindObjects(label %q) = %v, %v, want one key", keyLabel, objs, err)
	}
	key := objs[0]

	_, err = p.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
		t.Errorf("GetAttributeValue(CKA_VALUE) = %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
	for _, c := range []struct {
		name string
		attr uint
		want bool
	}{
		{"CKA_SENSITIVE", pkcs11.CKA_SENSITIVE, true},
		{"CKA_EXTRACTABLE", pkcs11.CKA_EXTRACTABLE, false},
		{"CKA_NEVER_EXTRACTABLE", pkcs11.CKA_NEVER_EXTRACTABLE, true},
		{"CKA_ALWAYS_SENSITIVE", pkcs11.CKA_ALWAYS_SENSITIVE, true},
		{"CKA_TOKEN", pkcs11.CKA_TOKEN, true},
		{"CKA_PRIVATE", pkcs11.CKA_PRIVATE, true},
		{"CKA_ENCRYPT", pkcs11.CKA_ENCRYPT, true},
		{"CKA_DECRYPT", pkcs11.CKA_DECRYPT, true},
		{"CKA_WRAP", pkcs11.CKA_WRAP, false},
		{"CKA_UNWRAP", pkcs11.CKA_UNWRAP, false},
		{"CKA_SIGN", pkcs11.CKA_SIGN, false},
		{"CKA_DERIVE", pkcs11.CKA_DERIVE, false},
	} {
		a, err := p.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(c.attr, nil)})
		if err != nil {
			t.Errorf("GetAttributeValue(%s) = %v", c.name, err)
			continue
		}
		if got := len(a[0].Value) == 1 && a[0].Value[0] != 0; got != c.want {
			t.Errorf("GetAttributeValue(%s) = %t, want %t", c.name, got, c.want)
		}
	}
	// Nor can it be wrapped out under another key.
	wrapKey, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, wrapKey, key)
	if !errors.Is(err, pkcs11.Error(pkcs11.CKR_KEY_UNEXTRACTABLE)) {
		t.Errorf("WrapKey(root key) = %v, want CKR_KEY_UNEXTRACTABLE", err)
	}
}

func TestTamper(t *testing.T) {
	soft := testenv.SoftHSM(t)
	// SoftHSM sees only the tokens present when the module is initialised.
	second := soft.AddToken(t, "keyward-test-2")
	tok, _ := initToken(t, config(t, soft, keyLabel))
	ctx := context.Background()
	key := newKey()
	w, err := tok.Wrap(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, tok *hsm.Token, what string, blob []byte) {
		t.Helper()
		got, err := tok.Unwrap(ctx, blob)
		if got != nil || !errors.Is(err, hsm.ErrIntegrity) {
			t.Errorf("Unwrap(%s) = %x, %v, want %v", what, got, err, hsm.ErrIntegrity)
			return
		}
		var f interface{ IntegrityFailure() bool }
		if !errors.As(err, &f) || !f.IntegrityFailure() {
			t.Errorf("Unwrap(%s) = %v, want an error with IntegrityFailure() true", what, err)
		}
		if len(blob) > 13 && strings.Contains(err.Error(), hex.EncodeToString(blob[13:])) {
			t.Errorf("Unwrap(%s) error contains the blob", what)
		}
	}
	t.Run("flip", func(t *testing.T) {
		for i := range w {
			for _, bit := range []byte{0x01, 0x80} {
				bad := slices.Clone(w)
				bad[i] ^= bit
				check(t, tok, fmt.Sprintf("blob with byte %d ^ %#x", i, bit), bad)
			}
		}
	})
	t.Run("length", func(t *testing.T) {
		for _, n := range []int{0, 1, 13, 60, 62, 100} {
			bad := make([]byte, n)
			copy(bad, w)
			check(t, tok, fmt.Sprintf("%d bytes", n), bad)
		}
		check(t, tok, "nil", nil)
	})
	t.Run("format", func(t *testing.T) {
		for _, f := range []byte{0x00, 0x02, 0xff} {
			bad := slices.Clone(w)
			bad[0] = f
			check(t, tok, fmt.Sprintf("format %#x", f), bad)
		}
	})
	t.Run("other token", func(t *testing.T) {
		other, created := initToken(t, config(t, second, keyLabel))
		if !created || other.KeyID() == tok.KeyID() {
			t.Fatalf("Init(second token) = %q, created %v; want a new key", other.KeyID(), created)
		}
		check(t, other, "blob from the first token", w)
		w2, err := other.Wrap(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		check(t, tok, "blob from the second token", w2)
	})
	t.Run("still works", func(t *testing.T) {
		got, err := tok.Unwrap(ctx, w)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("Unwrap(original) = %x, %v, want the key", got, err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	soft := testenv.SoftHSM(t)
	initToken(t, config(t, soft, keyLabel)) // the key exists; keeps the module loaded
	wrongPIN := []byte("99999999")
	if bytes.Equal(wrongPIN, soft.PIN) {
		wrongPIN = []byte("88888888")
	}
	notModule := filepath.Join(t.TempDir(), "libnot.so")
	if err := os.WriteFile(notModule, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	uri := func(s string) *hsm.URI {
		u, err := hsm.ParseURI(s)
		if err != nil {
			t.Fatalf("ParseURI(%q) = %v", s, err)
		}
		return u
	}
	mod := "?module-path=" + soft.ModulePath
	for _, tc := range []struct {
		name string
		cfg  hsm.Config
		is   error
		want []string
	}{
		{"wrong PIN", hsm.Config{URI: uri(soft.URI(keyLabel)), PIN: wrongPIN}, hsm.ErrBadPIN, []string{"keyward-test", "PIN"}},
		{"no such token", hsm.Config{URI: uri("pkcs11:token=prod;object=" + keyLabel + mod), PIN: soft.PIN},
			hsm.ErrTokenNotFound, []string{`"prod"`, `"keyward-test"`, "serial"}},
		{"no such serial", hsm.Config{URI: uri("pkcs11:serial=0000;object=" + keyLabel + mod), PIN: soft.PIN},
			hsm.ErrTokenNotFound, []string{`serial="0000"`, `"keyward-test"`}},
		{"no such key", hsm.Config{URI: uri(soft.URI("other-key")), PIN: soft.PIN}, hsm.ErrKeyNotFound, []string{"other-key", "keyward init"}},
		{"no such id", hsm.Config{URI: uri("pkcs11:token=keyward-test;object=" + keyLabel + ";id=%00" + mod), PIN: soft.PIN},
			hsm.ErrKeyNotFound, []string{"id=00", "keyward init"}},
		{"missing module", hsm.Config{URI: uri("pkcs11:object=k?module-path=/nonexistent/libvendor.so"), PIN: soft.PIN},
			hsm.ErrModuleNotFound, []string{"/nonexistent/libvendor.so", "install"}},
		{"not a module", hsm.Config{URI: uri("pkcs11:object=k?module-path=" + notModule), PIN: soft.PIN},
			hsm.ErrModuleNotFound, []string{notModule, "cannot load"}},
		{"no module", hsm.Config{URI: uri("pkcs11:object=k"), PIN: soft.PIN}, hsm.ErrModuleNotFound, []string{"module-path="}},
		{"no URI", hsm.Config{PIN: soft.PIN}, nil, []string{"URI is required"}},
		{"no key selector", hsm.Config{URI: uri("pkcs11:token=keyward-test" + mod), PIN: soft.PIN}, nil, []string{"object=LABEL"}},
		{"wrong type", hsm.Config{URI: uri("pkcs11:object=k;type=cert" + mod), PIN: soft.PIN}, nil, []string{"type=secret-key"}},
		{"no PIN", hsm.Config{URI: uri(soft.URI(keyLabel))}, nil, []string{"PIN is empty"}},
		{"long PIN", hsm.Config{URI: uri(soft.URI(keyLabel)), PIN: make([]byte, 257)}, nil, []string{"longer than 256"}},
		{"sessions", hsm.Config{URI: uri(soft.URI(keyLabel)), PIN: soft.PIN, MaxSessions: -1}, nil, []string{"MaxSessions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := hsm.Open(tc.cfg)
			if err == nil {
				tok.Close()
				t.Fatalf("Open() = nil error, want %v", tc.is)
			}
			t.Logf("Open() = %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Open() = %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open() = %v, want error containing %q", err, w)
				}
			}
			for _, pin := range [][]byte{soft.PIN, wrongPIN} {
				if strings.Contains(err.Error(), string(pin)) {
					t.Errorf("Open() error %q contains a PIN", err)
				}
			}
		})
	}
}

func TestWrongPINAlone(t *testing.T) {
	// Without another Token logged in, the token itself judges the PIN.
	soft := testenv.SoftHSM(t)
	tok, _ := initToken(t, config(t, soft, keyLabel))
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	u, _ := hsm.ParseURI(soft.URI(keyLabel))
	_, err := hsm.Open(hsm.Config{URI: u, PIN: []byte("00000000")})
	if !errors.Is(err, hsm.ErrBadPIN) || !errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
		t.Errorf("Open(wrong PIN) = %v, want %v wrapping CKR_PIN_INCORRECT", err, hsm.ErrBadPIN)
	}
	_, _, err = hsm.Init(hsm.Config{URI: u, PIN: []byte("00000000")})
	if !errors.Is(err, hsm.ErrBadPIN) {
		t.Errorf("Init(wrong PIN) = %v, want %v", err, hsm.ErrBadPIN)
	}
}

func TestConcurrent(t *testing.T) {
	soft := testenv.SoftHSM(t)
	cfg := config(t, soft, keyLabel)
	cfg.MaxSessions = 4
	tok, _ := initToken(t, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := newKey()
				w, err := tok.Wrap(ctx, key)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, round %d: Wrap() = %w", g, i, err)
					return
				}
				got, err := tok.Unwrap(ctx, w)
				if err != nil || !bytes.Equal(got, key) {
					errs <- fmt.Errorf("goroutine %d, round %d: Unwrap(Wrap(k)) = %x, %w, want k", g, i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := hsm.IdleSessions(tok); n < 1 || n > 4 {
		t.Errorf("idle sessions after the run = %d, want 1 to 4", n)
	}
}

func TestSessionDeath(t *testing.T) {
	soft := testenv.SoftHSM(t)
	cfg := config(t, soft, keyLabel)
	cfg.MaxSessions = 4
	tok, _ := initToken(t, cfg)
	ctx := context.Background()
	key := newKey()
	// Fill the pool with several sessions.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok.Wrap(ctx, key)
		}()
	}
	wg.Wait()
	w, err := tok.Wrap(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		if err := hsm.CloseAllSessions(tok); err != nil {
			t.Fatalf("C_CloseAllSessions: %v", err)
		}
		switch round {
		case 0:
			if _, err := tok.Wrap(ctx, key); err != nil {
				t.Fatalf("Wrap() after the sessions died = %v", err)
			}
		case 1:
			got, err := tok.Unwrap(ctx, w)
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("Unwrap() after the sessions died = %x, %v", got, err)
			}
		case 2:
			if err := tok.Healthy(ctx); err != nil {
				t.Fatalf("Healthy() after the sessions died = %v", err)
			}
		}
	}
}

func TestClosed(t *testing.T) {
	soft := testenv.SoftHSM(t)
	tok, _, err := hsm.Init(config(t, soft, keyLabel))
	if err != nil {
		t.Fatal(err)
	}
	w, err := tok.Wrap(context.Background(), newKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Wrap(context.Background(), newKey()); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Wrap() after Close = %v, want %v", err, hsm.ErrClosed)
	}
	if _, err := tok.Unwrap(context.Background(), w); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Unwrap() after Close = %v, want %v", err, hsm.ErrClosed)
	}
	if err := tok.Healthy(context.Background()); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Healthy() after Close = %v, want %v", err, hsm.ErrClosed)
	}
}

func TestContext(t *testing.T) {
	soft := testenv.SoftHSM(t)
	cfg := config(t, soft, keyLabel)
	cfg.MaxSessions = 1
	tok, _ := initToken(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tok.Wrap(ctx, newKey()); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap(cancelled) = %v, want %v", err, context.Canceled)
	}
	// With the one session busy, an operation waits until its deadline.
	release, err := hsm.HoldSession(tok)
	if err != nil {
		t.Fatal(err)
	}
	// begin precedes the deadline's start, so a loaded machine cannot
	// make the wait look short.
	begin := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := tok.Wrap(ctx, newKey()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wrap() with the only session busy = %v, want %v", err, context.DeadlineExceeded)
	}
	if waited := time.Since(begin); waited < 40*time.Millisecond {
		t.Errorf("Wrap() gave up after %v, want it to wait for the deadline", waited)
	}
	release()
	if _, err := tok.Wrap(context.Background(), newKey()); err != nil {
		t.Errorf("Wrap() after the session came back = %v", err)
	}
}

func TestSecondTokenSamePIN(t *testing.T) {
	// Once one Token is logged in, C_Login no longer checks PINs; Open must.
	soft := testenv.SoftHSM(t)
	cfg := config(t, soft, keyLabel)
	first, _ := initToken(t, cfg)
	second, created := initToken(t, config(t, soft, "keyward-root-2"))
	if !created || second.KeyID() == first.KeyID() {
		t.Fatalf("Init(second key) = %q, created %v; want a new key", second.KeyID(), created)
	}
	_, err := hsm.Open(hsm.Config{URI: cfg.URI, PIN: []byte("00000000")})
	if !errors.Is(err, hsm.ErrBadPIN) {
		t.Errorf("Open(wrong PIN) while another Token is open = %v, want %v", err, hsm.ErrBadPIN)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Wrap(context.Background(), newKey()); err != nil {
		t.Errorf("Wrap() on the first Token after closing the second = %v", err)
	}
}

func BenchmarkWrapUnwrap(b *testing.B) {
	soft := testenv.SoftHSM(b)
	tok, _ := initToken(b, config(b, soft, keyLabel))
	ctx := context.Background()
	key := newKey()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		w, err := tok.Wrap(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tok.Unwrap(ctx, w); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// A module that someone else could have replaced is never loaded: it
// would run inside the agent with all its privileges.
func TestOpenRefusesUntrustedModule(t *testing.T) {
	soft := testenv.SoftHSM(t)
	lib, err := os.ReadFile(soft.ModulePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		dirMode, mode os.FileMode
		owner         int
		want          string
	}{
		{name: "writable directory", dirMode: 0o777, mode: 0o755, want: "directory"},
		{name: "sticky directory", dirMode: 0o777 | os.ModeSticky, mode: 0o755, want: "directory"},
		{name: "group-writable module", dirMode: 0o755, mode: 0o775, want: "writable by group or others"},
		{name: "module of another user", dirMode: 0o755, mode: 0o755, owner: 4242, want: "chown root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owner != 0 && os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another uid")
			}
			dir := filepath.Join(t.TempDir(), "lib")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "libvendor.so")
			if err := os.WriteFile(path, lib, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			if tc.owner != 0 {
				if err := os.Chown(path, tc.owner, tc.owner); err != nil {
					t.Fatal(err)
				}
			}
			u, err := hsm.ParseURI("pkcs11:token=" + soft.Label + ";object=" + keyLabel + "?module-path=" + path)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := hsm.Open(hsm.Config{URI: u, PIN: soft.PIN})
			if err == nil {
				tok.Close()
				t.Fatal("Open() with an untrusted module succeeded")
			}
			if !strings.Contains(err.Error(), "refusing to load the module") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open() = %v, want a refusal containing %q", err, tc.want)
			}
		})
	}
}
