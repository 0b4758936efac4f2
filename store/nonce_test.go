package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/store/storetest"
)

func TestNonceMark(t *testing.T) {
	s := newStore(t, storetest.NewMemBackend())
	const key = "kraken KEY/with+odd=chars"
	if m, err := s.NonceMark(key); err != nil || m != 0 {
		t.Fatalf("NonceMark of a new key = %d, %v; want 0, nil", m, err)
	}
	for _, m := range []uint64{1_700_000_060_000, 1_700_000_120_000, 1_700_000_120_000} {
		if err := s.SetNonceMark(key, m); err != nil {
			t.Fatalf("SetNonceMark(%d): %v", m, err)
		}
		if got, err := s.NonceMark(key); err != nil || got != m {
			t.Fatalf("NonceMark = %d, %v; want %d", got, err, m)
		}
	}
	if err := s.SetNonceMark(key, 5); err == nil {
		t.Fatal("a mark below the recorded one was accepted")
	}
	if m, _ := s.NonceMark("kraken other"); m != 0 {
		t.Fatalf("another key's mark = %d, want 0", m)
	}

	// A damaged mark is an error, never a fresh start.
	files, _ := filepath.Glob(filepath.Join(s.Dir(), "nonces", "*"))
	if len(files) != 1 {
		t.Fatalf("nonce files = %v, want one", files)
	}
	for _, damaged := range []string{"", "keyward-nonce-mark 1\nkraken other\n5\n", "keyward-nonce-mark 1\n" + key + "\n12x\n", "keyward-nonce-mark 1\n" + key + "\n12"} {
		if err := os.WriteFile(files[0], []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NonceMark(key); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("NonceMark of %q = %v, want damaged", damaged, err)
		}
		if err := s.SetNonceMark(key, 1<<62); err == nil {
			t.Errorf("SetNonceMark over %q succeeded", damaged)
		}
	}
}
