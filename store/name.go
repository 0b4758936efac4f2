package store

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest secret name, in bytes.
const MaxNameLen = 128

// NameRule describes a valid secret name in words, for error messages.
const NameRule = "a name is 1 to 128 bytes of path segments separated by '/'; " +
	"each segment starts with a-z or 0-9 and continues with a-z, 0-9, '.', '_' or '-' " +
	"(for example binance/mm-prod)"

// ErrInvalidName is wrapped by every error about a malformed secret name.
var ErrInvalidName = errors.New("store: invalid secret name")

// ValidateName reports whether name is a valid secret name. A valid name is
// a '/'-separated path of segments: no empty segment, no leading or trailing
// '/', each segment starting with [a-z0-9] and continuing with [a-z0-9._-],
// at most [MaxNameLen] bytes in all. Since a segment cannot start with '.',
// "." and ".." can never appear. The error wraps [ErrInvalidName] and quotes
// the rule.
func ValidateName(name string) error {
	if reason := nameProblem(name); reason != "" {
		return fmt.Errorf("%w %q: %s; %s", ErrInvalidName, truncate(name, MaxNameLen+8), reason, NameRule)
	}
	return nil
}

func nameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case len(name) > MaxNameLen:
		return fmt.Sprintf("it is %d bytes long", len(name))
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" {
			return "it has an empty segment"
		}
		if !isLowerAlnum(seg[0]) {
			return fmt.Sprintf("segment %q does not start with a-z or 0-9", seg)
		}
		for i := 1; i < len(seg); i++ {
			c := seg[i]
			if !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' {
				return fmt.Sprintf("segment %q contains %q", seg, c)
			}
		}
	}
	return ""
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// truncate shortens s for display in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
