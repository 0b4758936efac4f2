// Package secretname is the rule for secret names, one rule that the
// store, the policy and the command line share: a name is 1 to [MaxLen]
// bytes of '/'-separated segments, each starting with a-z or 0-9 and
// going on with a-z, 0-9, '.', '_' or '-' (binance/mm-prod). Since a
// segment cannot start with '.', "." and ".." never appear; there is no
// empty segment, no leading or trailing '/', no upper case, no byte a
// file name or a glob could read otherwise.
package secretname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen is the longest secret name, in bytes.
const MaxLen = 128

// Rule says what a valid name is, for error messages.
const Rule = "a name is 1 to 128 bytes of path segments separated by '/'; " +
	"each segment starts with a-z or 0-9 and continues with a-z, 0-9, '.', '_' or '-' " +
	"(for example binance/mm-prod)"

// ErrInvalid is wrapped by every error about a malformed secret name.
var ErrInvalid = errors.New("invalid secret name")

// Valid reports whether name is a valid secret name. It does not
// allocate, whatever name is.
func Valid(name string) bool {
	p, _, _ := scan(name)
	return p == fine
}

// Check returns nil for a valid name, else an error wrapping [ErrInvalid]
// that says what is wrong and quotes the rule.
func Check(name string) error {
	p, seg, c := scan(name)
	var why string
	switch p {
	case fine:
		return nil
	case empty:
		why = "it is empty"
	case tooLong:
		why = fmt.Sprintf("it is %d bytes long", len(name))
	case emptySegment:
		why = "it has an empty segment"
	case badStart:
		why = fmt.Sprintf("segment %q does not start with a-z or 0-9", seg)
	case badByte:
		why = fmt.Sprintf("segment %q contains %q", seg, c)
	}
	return fmt.Errorf("%w %q: %s; %s", ErrInvalid, truncate(name, MaxLen+8), why, Rule)
}

// IsNameByte reports whether c may occur in a name (besides '/').
func IsNameByte(c byte) bool { return lowerAlnum(c) || c == '.' || c == '_' || c == '-' }

type problem uint8

const (
	fine problem = iota
	empty
	tooLong
	emptySegment
	badStart
	badByte
)

// scan finds the first problem of name, the segment it is in and the
// offending byte.
func scan(name string) (p problem, seg string, c byte) {
	switch {
	case name == "":
		return empty, "", 0
	case len(name) > MaxLen:
		return tooLong, "", 0
	}
	for rest := name; ; {
		seg, tail, more := strings.Cut(rest, "/")
		switch {
		case seg == "":
			return emptySegment, "", 0
		case !lowerAlnum(seg[0]):
			return badStart, seg, seg[0]
		}
		for i := 1; i < len(seg); i++ {
			if !IsNameByte(seg[i]) {
				return badByte, seg, seg[i]
			}
		}
		if !more {
			return fine, "", 0
		}
		rest = tail
	}
}

func lowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// truncate shortens s for display in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
