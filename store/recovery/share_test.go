package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// sameShare reports whether two shares are equal, value included.
func sameShare(a, b Share) bool {
	return a.KitID == b.KitID && a.Threshold == b.Threshold && a.Shares == b.Shares &&
		a.Index == b.Index && bytes.Equal(a.value, b.value)
}

// otherHex returns id with its first hex digit changed.
func otherHex(id string) string {
	if id[0] == '0' {
		return "1" + id[1:]
	}
	return "0" + id[1:]
}

var shareRE = regexp.MustCompile(`^keyward-recovery-1 kit [0-9a-f]{16} share [1-9][0-9]? of [1-9][0-9]? threshold [1-9][0-9]?( [a-z2-7]{4}){13} [a-z2-7]{8}$`)

func TestShareText(t *testing.T) {
	kit, shares := newTestKit(t, 5, 3)
	for _, s := range shares {
		text := s.String()
		if !shareRE.MatchString(text) {
			t.Errorf("String() = %q, want the form %v", text, shareRE)
		}
		if want := fmt.Sprintf("kit %s share %d of 5 threshold 3 ", kit.ID, s.Index); !strings.Contains(text, want) {
			t.Errorf("String() = %q, want it to contain %q", text, want)
		}
		got, err := ParseShare(text)
		if err != nil || !sameShare(got, s) {
			t.Errorf("ParseShare(%q) = %#v, %v; want %#v", text, got, err, s)
		}
	}
	if got := fmt.Sprintf("%#v", shares[0]); strings.Contains(got, shares[0].String()[70:80]) || !strings.Contains(got, "redacted") {
		t.Errorf("%%#v of a share = %q, want the value redacted", got)
	}
	if got := (Share{}).String(); got != "[invalid recovery share]" {
		t.Errorf("Share{}.String() = %q, want a placeholder", got)
	}
	s := shares[1]
	s.Destroy()
	if s.value != nil || !bytes.Equal(shares[1].value, make([]byte, 32)) {
		t.Errorf("Destroy() left the value in place")
	}
}

func TestParseShareWhitespace(t *testing.T) {
	_, shares := newTestKit(t, 5, 3)
	s := shares[2]
	text := s.String()
	words := strings.Fields(text)
	code := strings.Join(words[9:], "")
	var fives []string
	for i := 0; i < len(code); i += 5 {
		fives = append(fives, code[i:min(i+5, len(code))])
	}
	tests := map[string]string{
		"surrounding":     "\n\t  " + text + "  \r\n\n",
		"line breaks":     strings.Join(words[:9], " ") + "\n" + strings.Join(words[9:16], " ") + "\r\n" + strings.Join(words[16:], "  "),
		"one per line":    strings.Join(words, "\n"),
		"tabs":            strings.Join(words, "\t"),
		"code ungrouped":  strings.Join(words[:9], " ") + " " + code,
		"groups of five":  strings.Join(words[:9], " ") + " " + strings.Join(fives, " "),
		"checksum joined": strings.Join(words[:9], " ") + " " + strings.Join(words[9:21], " ") + " " + words[21] + words[22],
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseShare(in)
			if err != nil || !sameShare(got, s) {
				t.Fatalf("ParseShare(%q) = %#v, %v; want %#v", in, got, err, s)
			}
		})
	}
}

func TestParseShareMistyped(t *testing.T) {
	_, shares := newTestKit(t, 5, 3)
	for _, s := range shares {
		text := s.String()
		start := strings.Index(text, " threshold 3 ") + len(" threshold 3 ")
		for i := start; i < len(text); i++ {
			if text[i] == ' ' {
				continue
			}
			for _, c := range []byte("a7z2q") {
				if c == text[i] {
					continue
				}
				typo := text[:i] + string(c) + text[i+1:]
				got, err := ParseShare(typo)
				var se *ShareError
				if !errors.Is(err, ErrBadShare) || !errors.As(err, &se) || se.Index != s.Index {
					t.Fatalf("ParseShare(share %d with %q at %d) = %#v, %v; want ErrBadShare for share %d", s.Index, c, i, got, err, s.Index)
				}
				if want := fmt.Sprintf("share %d: ", s.Index); !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("ParseShare(typo) error = %q, want it to start with %q", err, want)
				}
			}
		}
	}
	// A typo in the header that still parses is caught by the checksum too.
	text := shares[1].String()
	for _, typo := range []string{
		strings.Replace(text, " share 2 of ", " share 3 of ", 1),
		strings.Replace(text, " of 5 ", " of 6 ", 1),
		strings.Replace(text, " threshold 3 ", " threshold 2 ", 1),
		strings.Replace(text, " kit "+shares[1].KitID, " kit "+otherHex(shares[1].KitID), 1),
	} {
		if _, err := ParseShare(typo); !errors.Is(err, ErrBadShare) || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("ParseShare(%q) = %v, want a checksum mismatch", typo, err)
		}
	}
}

func TestParseShareRejects(t *testing.T) {
	_, shares := newTestKit(t, 5, 3)
	text := shares[2].String()
	w := strings.Fields(text)
	with := func(i int, v string) string {
		c := append([]string(nil), w...)
		c[i] = v
		return strings.Join(c, " ")
	}
	tests := []struct {
		name, in string
		index    int // 0: the error names no share
		want     string
	}{
		{"empty", "", 0, "empty"},
		{"blank", " \n\t", 0, "empty"},
		{"not a share", "hello world", 0, "not a keyward recovery share"},
		{"newer format", with(0, "keyward-recovery-2"), 0, "not known"},
		{"magic case", with(0, "Keyward-recovery-1"), 0, "not a keyward recovery share"},
		{"word kit", with(1, "kid"), 0, `"kid"`},
		{"word share", with(3, "Share"), 0, `"Share"`},
		{"cut short", strings.Join(w[:7], " "), 0, "cut short"},
		{"header only", strings.Join(w[:9], " "), 0, "cut short"},
		{"kit id upper", with(2, strings.ToUpper(w[2])), 0, "kit id"},
		{"kit id short", with(2, w[2][:15]), 0, "kit id"},
		{"index 0", with(4, "0"), 0, "share number"},
		{"index 03", with(4, "03"), 0, "share number"},
		{"index +3", with(4, "+3"), 0, "share number"},
		{"index 100", with(4, "100"), 0, "share number"},
		{"index 6 of 5", with(4, "6"), 6, "not between 1 and 5"},
		{"17 shares", with(6, "17"), 3, "shares <= 16"},
		{"threshold 1", with(8, "1"), 3, "2 <= threshold"},
		{"threshold 6", with(8, "6"), 3, "threshold <= shares"},
		{"uppercase code", with(12, strings.ToUpper(w[12])), 3, "lowercase"},
		{"digit 1", with(12, "1"+w[12][1:]), 3, "group 4"},
		{"digit 0", with(10, w[10][:3]+"0"), 3, "character 8"},
		{"punctuation", with(12, "-"+w[12][1:]), 3, "a-z"},
		{"missing character", with(12, w[12][1:]), 3, "59 characters"},
		{"extra character", with(12, w[12]+"a"), 3, "61 characters"},
		{"extra word", text + " abcd", 3, "64 characters"},
		{"swapped groups", strings.Join(append(append(append([]string(nil), w[:9]...), w[10], w[9]), w[11:]...), " "), 3, "checksum"},
		{"too long", text + strings.Repeat(" ", maxShareText), 0, "more than a share"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseShare(tt.in)
			if !errors.Is(err, ErrBadShare) || !sameShare(got, Share{}) {
				t.Fatalf("ParseShare(%q) = %#v, %v; want ErrBadShare", tt.in, got, err)
			}
			var se *ShareError
			if errors.As(err, &se) != (tt.index != 0) || (tt.index != 0 && se.Index != tt.index) {
				t.Errorf("ParseShare(%q) = %v, want it to name share %d", tt.in, err, tt.index)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseShare(%q) = %v, want it to mention %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseShareNonCanonical(t *testing.T) {
	// A share whose code decodes but is not canonical (non-zero trailing
	// bits, or a scalar >= the group order) is rejected even with a valid
	// checksum.
	_, shares := newTestKit(t, 5, 3)
	s := shares[0]
	for name, payload := range map[string]string{
		"trailing bits": b32.EncodeToString(s.value)[:51] + "b",
		"not reduced":   b32.EncodeToString(bytes.Repeat([]byte{0xff}, 32)),
	} {
		prefix := s.canonicalPrefix(payload)
		text := prefix + " " + checksum(prefix)
		if _, err := ParseShare(text); !errors.Is(err, ErrBadShare) || !strings.Contains(err.Error(), "not a valid share value") {
			t.Errorf("ParseShare(%s) = %v, want ErrBadShare", name, err)
		}
	}
}

func TestParseShares(t *testing.T) {
	_, shares := newTestKit(t, 5, 3)
	var in strings.Builder
	in.WriteString("\n\n")
	for _, s := range shares[:3] {
		w := strings.Fields(s.String())
		// Copied by hand: header on one line, the code over two.
		fmt.Fprintf(&in, "%s\n  %s\n%s\n\n", strings.Join(w[:9], " "), strings.Join(w[9:16], " "), strings.Join(w[16:], " "))
	}
	got, err := ParseShares(in.String())
	if err != nil || len(got) != 3 {
		t.Fatalf("ParseShares() = %d shares, %v; want 3", len(got), err)
	}
	for i := range got {
		if !sameShare(got[i], shares[i]) {
			t.Errorf("ParseShares()[%d] = %#v, want %#v", i, got[i], shares[i])
		}
	}

	if got, err := ParseShares(" \n"); err != nil || len(got) != 0 {
		t.Errorf("ParseShares(blank) = %d shares, %v; want none", len(got), err)
	}

	// Every bad share is named.
	bad2 := strings.Replace(shares[1].String(), " share 2 of", " share 4 of", 1)
	bad3 := shares[2].String()
	bad3 = bad3[:len(bad3)-1] + "2"
	if bad3 == shares[2].String() {
		bad3 = bad3[:len(bad3)-1] + "3"
	}
	in.Reset()
	fmt.Fprintf(&in, "%s\n%s\n%s\nkeyward-recovery-1 kit\n", shares[0], bad2, bad3)
	got, err = ParseShares(in.String())
	if !errors.Is(err, ErrBadShare) || got != nil {
		t.Fatalf("ParseShares(bad) = %d shares, %v; want ErrBadShare", len(got), err)
	}
	for _, want := range []string{"share 4: ", "share 3: ", "share number 4 in the input"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseShares(bad) = %q, want it to mention %q", err, want)
		}
	}
	if _, err := ParseShares("my shares:\n" + shares[0].String()); !errors.Is(err, ErrBadShare) {
		t.Errorf("ParseShares(leading text) = %v, want ErrBadShare", err)
	}
}

func FuzzParseShare(f *testing.F) {
	_, shares := newTestKit(f, 5, 3)
	for _, s := range shares[:2] {
		f.Add(s.String())
		f.Add(strings.Join(strings.Fields(s.String()), "\n"))
	}
	_, shares = newTestKit(f, 16, 16)
	f.Add(shares[15].String())
	f.Add("keyward-recovery-1 kit 0123456789abcdef share 1 of 2 threshold 2 aaaa")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseShare(text)
		if err != nil {
			if !errors.Is(err, ErrBadShare) || !sameShare(s, Share{}) {
				t.Fatalf("ParseShare(%q) = %#v, %v; want Share{}, ErrBadShare", text, s, err)
			}
			return
		}
		again, err := ParseShare(s.String())
		if err != nil || !sameShare(again, s) {
			t.Fatalf("ParseShare(%q) = %#v, %v; want %#v", s.String(), again, err, s)
		}
		if !shareRE.MatchString(s.String()) {
			t.Fatalf("String() = %q, not canonical", s.String())
		}
	})
}
