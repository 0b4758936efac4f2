package storetest

import (
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
)

// TestHost is the host id that test stores are bound to.
var TestHost = store.DeriveHostID("0123456789abcdef0123456789abcdef")

// SoftHSMBackend returns a new key-encryption key in a fresh SoftHSM token
// (see [testenv.SoftHSM]), closed when the test ends.
func SoftHSMBackend(t testing.TB) (*hsm.Token, *testenv.SoftHSMToken) {
	t.Helper()
	tok := testenv.SoftHSM(t)
	uri, err := hsm.ParseURI(tok.URI("kek"))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := hsm.Init(hsm.Config{URI: uri, PIN: tok.PIN})
	if err != nil {
		t.Fatalf("hsm.Init() = %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, tok
}

// NewStore returns an empty store in a temporary directory, bound to
// [TestHost], with backend b.
func NewStore(t testing.TB, b store.Backend) *store.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := store.Init(dir); err != nil {
		t.Fatal(err)
	}
	s, err := store.New(store.Config{Dir: dir, Backend: b, Host: TestHost})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SoftHSMStore returns a store on a fresh SoftHSM token holding secrets,
// each as version 1.
func SoftHSMStore(t testing.TB, secrets map[string]string) *store.Store {
	t.Helper()
	b, _ := SoftHSMBackend(t)
	return putAll(t, NewStore(t, b), secrets)
}
