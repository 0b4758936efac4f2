package recovery

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 5, 1, 12, 30, 45, 123456789, time.FixedZone("CEST", 2*3600))

// newTestKit makes a kit, failing the test on error.
func newTestKit(t testing.TB, shares, threshold int) (*Kit, []Share) {
	t.Helper()
	kit, ss, err := NewKit(shares, threshold, testNow)
	if err != nil {
		t.Fatalf("NewKit(%d, %d) = %v", shares, threshold, err)
	}
	return kit, ss
}

func TestNewKitParams(t *testing.T) {
	tests := []struct {
		shares, threshold int
		ok                bool
	}{
		{2, 2, true},
		{5, 3, true},
		{16, 2, true},
		{16, 16, true},
		{5, 1, false},
		{1, 1, false},
		{0, 0, false},
		{3, 4, false},
		{17, 3, false},
		{17, 17, false},
		{-1, 2, false},
		{5, -3, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-of-%d", tt.threshold, tt.shares), func(t *testing.T) {
			kit, shares, err := NewKit(tt.shares, tt.threshold, testNow)
			if !tt.ok {
				if err == nil || kit != nil || shares != nil {
					t.Fatalf("NewKit(%d, %d) = %v, %d shares, %v; want an error", tt.shares, tt.threshold, kit, len(shares), err)
				}
				if want := "need 2 <= threshold <= shares <= 16"; !strings.Contains(err.Error(), want) {
					t.Errorf("NewKit(%d, %d) error = %q, want it to state the rule %q", tt.shares, tt.threshold, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewKit(%d, %d) = %v", tt.shares, tt.threshold, err)
			}
			if kit.Threshold != tt.threshold || kit.Shares != tt.shares || len(shares) != tt.shares {
				t.Errorf("NewKit(%d, %d) = kit %d of %d, %d shares", tt.shares, tt.threshold, kit.Threshold, kit.Shares, len(shares))
			}
			for i, s := range shares {
				if s.Index != i+1 || s.KitID != kit.ID || s.Threshold != tt.threshold || s.Shares != tt.shares {
					t.Errorf("share %d = %#v", i, s)
				}
			}
		})
	}
}

func TestNewKitFields(t *testing.T) {
	kit, _ := newTestKit(t, 5, 3)
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(kit.ID) || kit.ID != kitID(kit.PublicKey) {
		t.Errorf("ID = %q, want 16 hex digits of SHA-256 of the public key", kit.ID)
	}
	if want := time.Unix(testNow.Unix(), 0).UTC(); !kit.Created.Equal(want) || kit.Created.Location() != time.UTC {
		t.Errorf("Created = %v, want %v", kit.Created, want)
	}
	if len(kit.PublicKey) != publicKeySize {
		t.Errorf("len(PublicKey) = %d, want %d", len(kit.PublicKey), publicKeySize)
	}
	other, _ := newTestKit(t, 5, 3)
	if other.ID == kit.ID || bytes.Equal(other.PublicKey, kit.PublicKey) {
		t.Errorf("two kits have the same key")
	}
	if _, _, err := NewKit(5, 3, time.Unix(0, 0)); err == nil {
		t.Errorf("NewKit(time 0) = nil error, want an error")
	}
}

func TestKitRoundTrip(t *testing.T) {
	kit, _ := newTestKit(t, 5, 3)
	b := kit.Marshal()
	if len(b) != KitSize {
		t.Fatalf("len(Marshal()) = %d, want %d", len(b), KitSize)
	}
	got, err := ParseKit(b)
	if err != nil {
		t.Fatalf("ParseKit(Marshal(kit)) = %v", err)
	}
	if !bytes.Equal(got.Marshal(), b) {
		t.Errorf("Marshal(ParseKit(b)) != b")
	}
	if got.ID != kit.ID || got.Threshold != kit.Threshold || got.Shares != kit.Shares ||
		!got.Created.Equal(kit.Created) || !bytes.Equal(got.PublicKey, kit.PublicKey) {
		t.Errorf("ParseKit() = %+v, want %+v", got, kit)
	}
}

func TestParseKitRejects(t *testing.T) {
	kit, _ := newTestKit(t, 5, 3)
	good := kit.Marshal()
	set := func(off int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[off:], v)
		return b
	}
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	badKey := bytes.Clone(good)
	for i := 26; i < 26+384; i++ { // ML-KEM coefficients >= q
		badKey[i] = 0xff
	}
	tests := map[string][]byte{
		"empty":              nil,
		"trailing byte":      append(bytes.Clone(good), 0),
		"bad magic":          set(0, 'X'),
		"format 2":           set(7, 2),
		"threshold 1":        set(8, 1),
		"threshold > shares": set(8, 6),
		"17 shares":          set(8, 3, 17),
		"created 0":          set(10, 0, 0, 0, 0, 0, 0, 0, 0),
		"created negative":   set(10, 0x80),
		"other kem":          set(18, u16(0x0020)...),
		"other kdf":          set(20, u16(0x0002)...),
		"other aead":         set(22, u16(0x0001)...),
		"key length":         set(24, u16(1215)...),
		"invalid key":        badKey,
		"oversized":          make([]byte, KitSize+1),
	}
	for i := 1; i < len(good); i += 61 {
		tests[fmt.Sprintf("truncated at %d", i)] = good[:i]
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			k, err := ParseKit(b)
			var pe *ParseError
			if k != nil || !errors.As(err, &pe) {
				t.Fatalf("ParseKit() = %v, %v; want nil, *ParseError", k, err)
			}
		})
	}
}

func FuzzParseKit(f *testing.F) {
	kit, _ := newTestKit(f, 5, 3)
	f.Add(kit.Marshal())
	kit, _ = newTestKit(f, 2, 2)
	f.Add(kit.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKit(b)
		if err != nil {
			var pe *ParseError
			if k != nil || !errors.As(err, &pe) {
				t.Fatalf("ParseKit() = %v, %v; want nil, *ParseError", k, err)
			}
			return
		}
		if got := k.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("Marshal(ParseKit(b)) = %x, want %x", got, b)
		}
		if k.ID != kitID(k.PublicKey) {
			t.Fatalf("ParseKit().ID = %q, want %q", k.ID, kitID(k.PublicKey))
		}
	})
}
