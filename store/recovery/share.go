package recovery

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cloudflare/circl/group"
)

// Share text format v1, one line (docs/recovery.md):
//
//	keyward-recovery-1 kit <kit id> share <i> of <n> threshold <k> <payload> <checksum>
//
// The payload is the 32-byte share value in lowercase RFC 4648 base32
// without padding (52 characters, alphabet a-z and 2-7: no 0/o, 1/l or 8/b
// to confuse), written in 13 groups of 4. The checksum is the first 5 bytes
// of SHA-256 of everything before it (the canonical text, single spaces),
// in the same alphabet (8 characters). Parsing accepts any whitespace,
// including line breaks, between the words and between or inside the
// groups; everything else must be exact.
const (
	shareMagic    = "keyward-recovery-1"
	payloadChars  = 52 // base32 of a 32-byte scalar
	checksumBytes = 5
	checksumChars = 8
	groupSize     = 4
	// maxShareText bounds the text ParseShare reads; a canonical share is
	// about 140 bytes.
	maxShareText = 1024
	// maxSharesText bounds the text ParseShares reads.
	maxSharesText = 4 * MaxShares * maxShareText
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// A Share is one custodian's part of a kit's private key. It is a value
// type; KitID, Threshold, Shares and Index are public and written on the
// share, the share value is not accessible except through [Share.String].
type Share struct {
	KitID     string // the [Kit.ID] of the kit the share belongs to
	Threshold int    // shares needed to recover
	Shares    int    // shares in the kit
	Index     int    // this share's number, 1..Shares
	value     []byte // canonical Ristretto255 scalar, 32 bytes
}

// String renders the share as the one line of text its custodian keeps.
// It contains the secret share value: print it once, for its custodian.
// A Share not made by [NewKit] or [ParseShare] renders as a placeholder.
func (s Share) String() string {
	if len(s.value) != seedSize {
		return "[invalid recovery share]"
	}
	prefix := s.canonicalPrefix(b32.EncodeToString(s.value))
	return prefix + " " + checksum(prefix)
}

// GoString redacts the share value from %#v.
func (s Share) GoString() string {
	return fmt.Sprintf("recovery.Share{KitID:%q, Threshold:%d, Shares:%d, Index:%d, value:[redacted]}",
		s.KitID, s.Threshold, s.Shares, s.Index)
}

// Destroy clears the share value. The Share and its copies can no longer be
// rendered or combined.
func (s *Share) Destroy() {
	clear(s.value)
	s.value = nil
}

// canonicalPrefix returns the text of a share before its checksum, for the
// base32 payload given.
func (s Share) canonicalPrefix(payload string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s kit %s share %d of %d threshold %d", shareMagic, s.KitID, s.Index, s.Shares, s.Threshold)
	for i := 0; i < len(payload); i += groupSize {
		b.WriteByte(' ')
		b.WriteString(payload[i:min(i+groupSize, len(payload))])
	}
	return b.String()
}

func checksum(prefix string) string {
	h := sha256.Sum256([]byte(prefix))
	return b32.EncodeToString(h[:checksumBytes])
}

// badShare returns an error wrapping ErrBadShare, as a *ShareError when the
// index is known (non-zero).
func badShare(index int, format string, args ...any) error {
	err := fmt.Errorf("%w: "+format, append([]any{ErrBadShare}, args...)...)
	if index == 0 {
		return err
	}
	return &ShareError{Index: index, Err: err}
}

// ParseShare parses the text of one share as rendered by [Share.String]. It
// accepts surrounding whitespace and any whitespace, including line breaks,
// between words and within the payload groups, and nothing else. Errors wrap
// [ErrBadShare]; once the share's index has been read they are a
// *[ShareError] naming it, so a mistyped share is identified by its number.
func ParseShare(text string) (Share, error) {
	if len(text) > maxShareText {
		return Share{}, badShare(0, "%d bytes of text is more than a share (%d at most)", len(text), maxShareText)
	}
	f := strings.Fields(text)
	if len(f) == 0 {
		return Share{}, badShare(0, "empty")
	}
	if f[0] != shareMagic {
		if strings.HasPrefix(f[0], "keyward-recovery-") {
			return Share{}, badShare(0, "format %q is not known to this version of keyward", f[0])
		}
		return Share{}, badShare(0, "not a keyward recovery share: it must start with %q", shareMagic)
	}
	word := func(i int, want string) error {
		if i >= len(f) {
			return fmt.Errorf("ends after %d words: it was cut short", len(f))
		}
		if f[i] != want {
			return fmt.Errorf("word %d is %q, want %q", i+1, f[i], want)
		}
		return nil
	}
	var s Share
	for _, w := range []struct {
		i    int
		want string
	}{{1, "kit"}, {3, "share"}, {5, "of"}, {7, "threshold"}} {
		if err := word(w.i, w.want); err != nil {
			return Share{}, badShare(0, "%v", err)
		}
	}
	if len(f) < 10 {
		return Share{}, badShare(0, "ends after %d words: it was cut short", len(f))
	}
	if !isKitID(f[2]) {
		return Share{}, badShare(0, "kit id %q is not 16 lowercase hex digits", f[2])
	}
	s.KitID = f[2]
	var err error
	if s.Index, err = smallInt(f[4]); err != nil {
		return Share{}, badShare(0, "share number %q: %v", f[4], err)
	}
	if s.Shares, err = smallInt(f[6]); err != nil {
		return Share{}, badShare(s.Index, "share count %q: %v", f[6], err)
	}
	if s.Threshold, err = smallInt(f[8]); err != nil {
		return Share{}, badShare(s.Index, "threshold %q: %v", f[8], err)
	}
	if err := checkParams(s.Shares, s.Threshold); err != nil {
		return Share{}, badShare(s.Index, "%d of %d, threshold %d: %v", s.Index, s.Shares, s.Threshold, err)
	}
	if s.Index < 1 || s.Index > s.Shares {
		return Share{}, badShare(s.Index, "number %d is not between 1 and %d", s.Index, s.Shares)
	}
	rest := strings.Join(f[9:], "")
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7') {
			continue
		}
		hint := "shares use only the letters a-z and the digits 2-7"
		if c >= 'A' && c <= 'Z' {
			hint = "shares are written in lowercase"
		}
		return Share{}, badShare(s.Index, "character %d of the code (group %d) is %q: %s",
			i+1, i/groupSize+1, c, hint)
	}
	if len(rest) != payloadChars+checksumChars {
		return Share{}, badShare(s.Index, "the code has %d characters, want %d: a character was left out or added",
			len(rest), payloadChars+checksumChars)
	}
	payload, sum := rest[:payloadChars], rest[payloadChars:]
	if subtle.ConstantTimeCompare([]byte(checksum(s.canonicalPrefix(payload))), []byte(sum)) != 1 {
		return Share{}, badShare(s.Index, "checksum mismatch: a character of this share was mistyped")
	}
	v, err := b32.DecodeString(payload)
	if err != nil || len(v) != seedSize || b32.EncodeToString(v) != payload {
		clear(v)
		return Share{}, badShare(s.Index, "the code is not a valid share value")
	}
	sc, err := scalar(v)
	if err != nil {
		clear(v)
		return Share{}, badShare(s.Index, "the code is not a valid share value")
	}
	sc.SetUint64(0)
	s.value = v
	return s, nil
}

// ParseShares parses text holding any number of shares, each starting with
// "keyward-recovery-1" and possibly broken over several lines, as
// `keyward recovery restore` reads from stdin. It reports every bad share
// (errors.Join of [ParseShare] errors) and returns no shares if any is bad.
// Text without any share returns no shares and no error.
func ParseShares(text string) ([]Share, error) {
	if len(text) > maxSharesText {
		return nil, badShare(0, "%d bytes of text is more than %d shares (%d bytes at most)", len(text), MaxShares, maxSharesText)
	}
	var chunks [][]string
	for _, w := range strings.Fields(text) {
		if strings.HasPrefix(w, "keyward-recovery-") {
			chunks = append(chunks, nil)
		} else if len(chunks) == 0 {
			return nil, badShare(0, "text before the first share: each share starts with %q", shareMagic)
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], w)
	}
	var (
		shares []Share
		errs   []error
	)
	for i, c := range chunks {
		s, err := ParseShare(strings.Join(c, " "))
		if err != nil {
			var se *ShareError
			if !errors.As(err, &se) {
				err = fmt.Errorf("share number %d in the input: %w", i+1, err)
			}
			errs = append(errs, err)
			continue
		}
		shares = append(shares, s)
	}
	if len(errs) > 0 {
		DestroyShares(shares)
		return nil, errors.Join(errs...)
	}
	return shares, nil
}

// DestroyShares destroys every share of shares (see [Share.Destroy]).
func DestroyShares(shares []Share) {
	for i := range shares {
		shares[i].Destroy()
	}
}

// smallInt parses a decimal number from 1 to 99 with no sign or leading zero.
func smallInt(w string) (int, error) {
	if len(w) == 0 || len(w) > 2 || w[0] == '0' {
		return 0, errors.New("not a number from 1 to 99")
	}
	for i := 0; i < len(w); i++ {
		if w[i] < '0' || w[i] > '9' {
			return 0, errors.New("not a number from 1 to 99")
		}
	}
	return strconv.Atoi(w)
}

func isKitID(w string) bool {
	if len(w) != 16 {
		return false
	}
	for i := 0; i < len(w); i++ {
		if c := w[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// scalar decodes a canonical Ristretto255 scalar.
func scalar(b []byte) (group.Scalar, error) {
	s := group.Ristretto255.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}
