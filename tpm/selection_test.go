package tpm_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/tpm"
)

func TestParseSelection(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // canonical form; "" for an error
		pcrs []int
	}{
		{"7", "sha256:7", []int{7}},
		{"0,2,7", "sha256:0,2,7", []int{0, 2, 7}},
		{"sha256:7+11", "sha256:7,11", []int{7, 11}},
		{"sha256:0,2,7", "sha256:0,2,7", []int{0, 2, 7}},
		{"7,0", "sha256:0,7", []int{0, 7}},
		{"0", "sha256:0", []int{0}},
		{"23", "sha256:23", []int{23}},
		{"16+23", "sha256:16,23", []int{16, 23}},
		{"0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23", "sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23", nil},

		{"", "", nil},
		{"sha256:", "", nil},
		{"sha1:7", "", nil},
		{"SHA256:7", "", nil},
		{"sha384:7", "", nil},
		{":7", "", nil},
		{"24", "", nil},
		{"100", "", nil},
		{"-1", "", nil},
		{"+7", "", nil},
		{"07", "", nil},
		{"00", "", nil},
		{"7,", "", nil},
		{",7", "", nil},
		{"7,,8", "", nil},
		{"7++8", "", nil},
		{"7 ", "", nil},
		{" 7", "", nil},
		{"7, 8", "", nil},
		{"7,7", "", nil},
		{"7+7", "", nil},
		{"0,2+7", "", nil},
		{"a", "", nil},
		{"0x7", "", nil},
		{"1e1", "", nil},
		{"\u0667", "", nil},
		{"sha256:sha256:7", "", nil},
		{"7:sha256", "", nil},
		{"sha256:7\n", "", nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := tpm.ParseSelection(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ParseSelection(%q) = %v, nil; want an error", tc.in, got)
				}
				if !got.IsZero() {
					t.Errorf("ParseSelection(%q) = %v with an error; want the zero Selection", tc.in, got)
				}
				if !strings.HasPrefix(err.Error(), "tpm: invalid PCR selection ") || !strings.Contains(err.Error(), "sha256:7+11") {
					t.Errorf("ParseSelection(%q) error %q does not name the input and give an example", tc.in, err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ParseSelection(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
			if tc.pcrs != nil && !reflect.DeepEqual(got.PCRs(), tc.pcrs) {
				t.Errorf("ParseSelection(%q).PCRs() = %v, want %v", tc.in, got.PCRs(), tc.pcrs)
			}
		})
	}
}

func TestNewSelection(t *testing.T) {
	s, err := tpm.NewSelection(11, 7)
	if err != nil || s.String() != "sha256:7,11" || !s.Has(7) || s.Has(8) || s.Len() != 2 {
		t.Errorf("NewSelection(11, 7) = %v, %v; want sha256:7,11", s, err)
	}
	for _, pcrs := range [][]int{nil, {24}, {-1}, {7, 7}} {
		if s, err := tpm.NewSelection(pcrs...); err == nil {
			t.Errorf("NewSelection(%v) = %v, nil; want an error", pcrs, s)
		}
	}
	var zero tpm.Selection
	if !zero.IsZero() || zero.String() != "" || len(zero.PCRs()) != 0 {
		t.Errorf("zero Selection = %q, %v", zero.String(), zero.PCRs())
	}
	if got, _ := tpm.ParseSelection(tpm.DefaultPCRs); got.String() != "sha256:7" {
		t.Errorf("DefaultPCRs = %v, want sha256:7", got)
	}
}

// FuzzParseSelection checks that ParseSelection never panics, that every
// selection it accepts is non-empty and in range, and that its canonical
// String parses back to the same selection.
func FuzzParseSelection(f *testing.F) {
	for _, s := range []string{"7", "0,2,7", "sha256:7+11", "23", "sha1:7", "07", "7,7", "0,2+7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := tpm.ParseSelection(s)
		if err != nil {
			if !sel.IsZero() {
				t.Fatalf("ParseSelection(%q) = %v, %v; want the zero Selection with an error", s, sel, err)
			}
			return
		}
		pcrs := sel.PCRs()
		if len(pcrs) == 0 || !slices.IsSorted(pcrs) || pcrs[0] < 0 || pcrs[len(pcrs)-1] > tpm.MaxPCR {
			t.Fatalf("ParseSelection(%q).PCRs() = %v", s, pcrs)
		}
		canon := sel.String()
		again, err := tpm.ParseSelection(canon)
		if err != nil || again != sel || again.String() != canon {
			t.Fatalf("ParseSelection(%q) = %v, %v; want %v", canon, again, err, sel)
		}
		if n, err := tpm.NewSelection(pcrs...); err != nil || n != sel {
			t.Fatalf("NewSelection(%v) = %v, %v; want %v", pcrs, n, err, sel)
		}
	})
}
