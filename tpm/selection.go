package tpm

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

const (
	// MaxPCR is the highest PCR index a [Selection] may hold: a PC Client
	// TPM has PCRs 0 to 23.
	MaxPCR = 23

	// DefaultPCRs is the selection used when Config.PCRs is zero: PCR 7,
	// the Secure Boot state (whether it is on, and its PK, KEK, db and dbx).
	DefaultPCRs = "sha256:7"

	// pcrSelectSize is the size of a PCR bitmap covering PCRs 0 to 23.
	pcrSelectSize = 3
)

// A Selection is a non-empty set of PCRs of the SHA-256 bank. The zero
// Selection selects nothing; Config and Reseal read it as "the default".
// Selections are values and safe to share.
type Selection struct {
	mask uint32 // bit i set: PCR i selected; only bits 0..MaxPCR
}

// NewSelection returns the Selection holding pcrs, each in 0..[MaxPCR].
// It fails on an empty list, an index out of range or a duplicate.
func NewSelection(pcrs ...int) (Selection, error) {
	var s Selection
	if len(pcrs) == 0 {
		return s, errors.New("tpm: empty PCR selection")
	}
	for _, p := range pcrs {
		if p < 0 || p > MaxPCR {
			return Selection{}, fmt.Errorf("tpm: PCR %d out of range 0-%d", p, MaxPCR)
		}
		if s.mask&(1<<p) != 0 {
			return Selection{}, fmt.Errorf("tpm: PCR %d selected twice", p)
		}
		s.mask |= 1 << p
	}
	return s, nil
}

// ParseSelection parses a PCR selection of the SHA-256 bank in the forms
// tpm2-tools and systemd-cryptenroll use: "7", "0,2,7", "sha256:7+11". The
// bank prefix is optional and only "sha256" is accepted; indices are
// decimal without leading zeros, 0 to [MaxPCR], separated by "," or "+"
// (one kind per selection), each at most once.
func ParseSelection(s string) (Selection, error) {
	fail := func(format string, args ...any) (Selection, error) {
		return Selection{}, fmt.Errorf("tpm: invalid PCR selection %q: "+format+" (want e.g. \"7\", \"0,2,7\" or \"sha256:7+11\")",
			append([]any{s}, args...)...)
	}
	list := s
	if bank, rest, ok := strings.Cut(s, ":"); ok {
		if bank != "sha256" {
			return fail("bank %q is not supported; keyward seals to the sha256 bank", bank)
		}
		list = rest
	}
	if list == "" {
		return fail("no PCRs")
	}
	sep := ","
	if strings.Contains(list, "+") {
		if strings.Contains(list, ",") {
			return fail(`mixes "," and "+"`)
		}
		sep = "+"
	}
	var sel Selection
	for _, f := range strings.Split(list, sep) {
		if f == "" {
			return fail("empty PCR index")
		}
		if len(f) > 2 || (len(f) > 1 && f[0] == '0') || strings.Trim(f, "0123456789") != "" {
			return fail("%q is not a PCR index 0-%d", f, MaxPCR)
		}
		p, _ := strconv.Atoi(f)
		if p > MaxPCR {
			return fail("PCR %d out of range 0-%d", p, MaxPCR)
		}
		if sel.mask&(1<<p) != 0 {
			return fail("PCR %d selected twice", p)
		}
		sel.mask |= 1 << p
	}
	return sel, nil
}

// mustParseSelection parses a selection known to be valid.
func mustParseSelection(s string) Selection {
	sel, err := ParseSelection(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// IsZero reports whether s selects no PCR.
func (s Selection) IsZero() bool { return s.mask == 0 }

// Len returns the number of PCRs selected.
func (s Selection) Len() int { return bits.OnesCount32(s.mask) }

// Has reports whether s selects PCR pcr.
func (s Selection) Has(pcr int) bool { return pcr >= 0 && pcr <= MaxPCR && s.mask&(1<<pcr) != 0 }

// PCRs returns the selected PCR indices in ascending order, the order in
// which the TPM concatenates their values.
func (s Selection) PCRs() []int {
	out := make([]int, 0, s.Len())
	for p := 0; p <= MaxPCR; p++ {
		if s.mask&(1<<p) != 0 {
			out = append(out, p)
		}
	}
	return out
}

// String returns s in the canonical form "sha256:0,2,7", which
// [ParseSelection] and tpm2_pcrread accept, or "" for the zero Selection.
func (s Selection) String() string {
	if s.IsZero() {
		return ""
	}
	var b strings.Builder
	b.WriteString("sha256:")
	for i, p := range s.PCRs() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}

// bitmap returns the TPMS_PCR_SELECTION bitmap of s: byte i holds PCRs
// 8i to 8i+7, least significant bit first.
func (s Selection) bitmap() []byte {
	return []byte{byte(s.mask), byte(s.mask >> 8), byte(s.mask >> 16)}
}

// selectionFromBitmap is the inverse of bitmap for a 3-byte bitmap.
func selectionFromBitmap(b []byte) Selection {
	return Selection{mask: uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16}
}

// tpml returns s as a TPML_PCR_SELECTION of the SHA-256 bank.
func (s Selection) tpml() tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: s.bitmap(),
	}}}
}
