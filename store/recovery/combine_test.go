package recovery

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// subsets returns every k-element subset of shares, in order.
func subsets(shares []Share, k int) [][]Share {
	var out [][]Share
	c := make([]int, k)
	for i := range c {
		c[i] = i
	}
	for {
		s := make([]Share, k)
		for i, j := range c {
			s[i] = shares[j]
		}
		out = append(out, s)
		if !nextSubset(c, len(shares)) {
			return out
		}
	}
}

// forgeShare returns a share with a valid checksum for kit and index whose
// value comes from another polynomial: what another split of the same key
// id, or an altered share with a recomputed checksum, looks like.
func forgeShare(t testing.TB, kit *Kit, index int) Share {
	t.Helper()
	ss := secretsharing.New(rand.Reader, uint(kit.Threshold-1), group.Ristretto255.RandomNonZeroScalar(rand.Reader))
	v, err := ss.ShareWithID(group.Ristretto255.NewScalar().SetUint64(uint64(index))).Value.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := Share{KitID: kit.ID, Threshold: kit.Threshold, Shares: kit.Shares, Index: index, value: v}
	p, err := ParseShare(s.String())
	if err != nil {
		t.Fatalf("ParseShare(forged) = %v", err)
	}
	return p
}

func TestCombineEverySubset(t *testing.T) {
	kit, shares := newTestKit(t, 5, 3)
	dataKey := bytes.Repeat([]byte{0x5a}, DataKeySize)
	info := []byte("binance/mm-prod@3")
	sealed, err := SealKey(kit, dataKey, info)
	if err != nil {
		t.Fatalf("SealKey() = %v", err)
	}
	for k := 3; k <= 5; k++ {
		for _, sub := range subsets(shares, k) {
			var idx []int
			for _, s := range sub {
				idx = append(idx, s.Index)
			}
			rev := slices.Clone(sub)
			slices.Reverse(rev)
			for _, order := range [][]Share{sub, rev} {
				priv, err := Combine(kit, order)
				if err != nil {
					t.Fatalf("Combine(shares %v) = %v", idx, err)
				}
				got, err := OpenKey(priv, sealed, info)
				if err != nil || !bytes.Equal(got, dataKey) {
					t.Fatalf("OpenKey(Combine(shares %v)) = %x, %v; want %x", idx, got, err, dataKey)
				}
				priv.Destroy()
			}
		}
	}
}

func TestCombineErrors(t *testing.T) {
	kit, shares := newTestKit(t, 5, 3)
	other, otherShares := newTestKit(t, 5, 3)
	s := func(i ...int) []Share {
		var out []Share
		for _, j := range i {
			out = append(out, shares[j-1])
		}
		return out
	}
	lying := shares[3]
	lying.Threshold = 2
	beyond := forgeShare(t, &Kit{ID: kit.ID, Threshold: 3, Shares: 6}, 6)
	beyond.Shares = 5
	tests := []struct {
		name   string
		shares []Share
		want   error
		index  int      // the share a *ShareError names, 0 for none
		msg    []string // in the error text
	}{
		{"none", nil, ErrNotEnoughShares, 0, []string{"0 given", "3 more needed"}},
		{"two", s(1, 4), ErrNotEnoughShares, 0, []string{"2 given", "needs 3", "1 more needed"}},
		{"other kit", append(s(1, 2), otherShares[2]), ErrOtherKit, 3, []string{other.ID, kit.ID}},
		{"duplicate", s(1, 2, 2), ErrDuplicateShare, 2, []string{"more than once"}},
		{"duplicate of four", s(1, 2, 3, 1), ErrDuplicateShare, 1, []string{"more than once"}},
		{"same index, other value", append(s(1, 2, 3), forgeShare(t, kit, 2)), ErrDuplicateShare, 2, []string{"different values"}},
		{"zero share", append(s(1, 2), Share{KitID: kit.ID, Threshold: 3, Shares: 5, Index: 3}), ErrBadShare, 3, nil},
		{"lying threshold", append(s(1, 2, 3), lying), ErrBadShare, 4, []string{"threshold 2 of 5"}},
		{"index beyond kit", append(s(1, 2), beyond), ErrBadShare, 6, []string{"1 to 5"}},
		{"forged among three", append(s(1, 2), forgeShare(t, kit, 3)), ErrWrongShares, 0, []string{"one more share"}},
		{"forged last of four", append(s(1, 2, 3), forgeShare(t, kit, 4)), ErrWrongShares, 4, []string{"[1 2 3]"}},
		{"forged first of four", append([]Share{forgeShare(t, kit, 5)}, s(1, 2, 3)...), ErrWrongShares, 5, []string{"[1 2 3]"}},
		{"two forged of four", append(s(1, 2), forgeShare(t, kit, 3), forgeShare(t, kit, 4)), ErrWrongShares, 0, []string{"at least 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			priv, err := Combine(kit, tt.shares)
			if priv != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Combine() = %v, %v; want %v", priv, err, tt.want)
			}
			var se *ShareError
			if errors.As(err, &se) != (tt.index != 0) || (tt.index != 0 && se.Index != tt.index) {
				t.Errorf("Combine() = %v, want it to name share %d", err, tt.index)
			}
			if tt.index != 0 && !strings.Contains(err.Error(), fmt.Sprintf("share %d: ", tt.index)) {
				t.Errorf("Combine() = %q, want it to say which share", err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Combine() = %q, want it to mention %q", err, m)
				}
			}
		})
	}
}

func TestCombineIdentifiesEveryBadShare(t *testing.T) {
	kit, shares := newTestKit(t, 7, 3)
	// Shares 2 and 6 forged; 5 good shares remain, more than the threshold.
	given := slices.Clone(shares)
	given[1] = forgeShare(t, kit, 2)
	given[5] = forgeShare(t, kit, 6)
	_, err := Combine(kit, given)
	if !errors.Is(err, ErrWrongShares) {
		t.Fatalf("Combine() = %v, want ErrWrongShares", err)
	}
	var named []int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *ShareError
		if errors.As(e, &se) {
			named = append(named, se.Index)
		}
	}
	if !slices.Equal(named, []int{2, 6}) {
		t.Errorf("Combine() named shares %v, want [2 6]; error %v", named, err)
	}
	// Leaving the named shares out recovers the key.
	good := slices.Delete(slices.Clone(given), 5, 6)
	good = slices.Delete(good, 1, 2)
	priv, err := Combine(kit, good)
	if err != nil {
		t.Fatalf("Combine(without 2 and 6) = %v", err)
	}
	priv.Destroy()
}

func TestCombineBadKit(t *testing.T) {
	kit, shares := newTestKit(t, 5, 3)
	for name, k := range map[string]*Kit{
		"nil":       nil,
		"wrong id":  {ID: "0000000000000000", Threshold: 3, Shares: 5, PublicKey: kit.PublicKey},
		"threshold": {ID: kit.ID, Threshold: 1, Shares: 5, PublicKey: kit.PublicKey},
	} {
		if priv, err := Combine(k, shares); priv != nil || err == nil {
			t.Errorf("Combine(%s kit) = %v, %v; want an error", name, priv, err)
		}
	}
}

func TestPrivateKeyRedacted(t *testing.T) {
	kit, shares := newTestKit(t, 3, 2)
	priv, err := Combine(kit, shares[:2])
	if err != nil {
		t.Fatalf("Combine() = %v", err)
	}
	seed, err := priv.k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := "[recovery private key of kit " + kit.ID + "]"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		got := fmt.Sprintf(verb, priv)
		if got != want || strings.Contains(got, fmt.Sprintf("%x", seed)) {
			t.Errorf("Sprintf(%q, priv) = %q, want %q", verb, got, want)
		}
	}
	if priv.KitID() != kit.ID {
		t.Errorf("KitID() = %q, want %q", priv.KitID(), kit.ID)
	}
	priv.Destroy()
	if !bytes.Equal(seed, make([]byte, len(seed))) {
		t.Errorf("Destroy() left the seed in place")
	}
	priv.Destroy()
	if _, err := OpenKey(priv, make([]byte, SealedKeySize), nil); err == nil {
		t.Errorf("OpenKey(destroyed key) = nil error, want an error")
	}
}

func TestNextSubset(t *testing.T) {
	c := []int{0, 1, 2}
	n := 1
	for nextSubset(c, 6) {
		n++
	}
	if n != 20 {
		t.Errorf("nextSubset enumerated %d subsets of 3 of 6, want 20", n)
	}
}

func TestSearchSubsets(t *testing.T) {
	for _, tt := range []struct{ m, k, n int }{{3, 3, 1}, {5, 3, 10}, {6, 2, 15}, {16, 8, 12870}} {
		seen := map[string]bool{}
		searchSubsets(tt.m, tt.k, func(s []int) bool {
			if !slices.IsSorted(s) || len(s) != tt.k || s[tt.k-1] >= tt.m || slices.Compact(slices.Clone(s))[tt.k-1] != s[tt.k-1] {
				t.Fatalf("searchSubsets(%d, %d) tried %v", tt.m, tt.k, s)
			}
			seen[fmt.Sprint(s)] = true
			return false
		})
		if len(seen) != tt.n {
			t.Errorf("searchSubsets(%d, %d) tried %d distinct subsets, want %d", tt.m, tt.k, len(seen), tt.n)
		}
	}
	// With the bad share first, a subset without it comes within k+1 tries.
	var tries int
	searchSubsets(16, 8, func(s []int) bool {
		tries++
		return s[0] != 0
	})
	if tries > 9 {
		t.Errorf("searchSubsets found a subset without position 0 after %d tries, want at most 9", tries)
	}
}
