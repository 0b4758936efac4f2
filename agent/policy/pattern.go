package policy

import (
	"fmt"
	"path"
	"strings"
)

// maxNameLen is the longest secret name; maxPatternLen the longest pattern.
const (
	maxNameLen    = 128
	maxPatternLen = 256
)

// A pattern is one compiled entry of a rule's secrets list.
type pattern struct {
	text string
	// segs holds one path.Match pattern per '/'-separated segment. When deep
	// is set (text ends in "/**"), segs is the prefix and a matching name
	// has at least one segment more.
	segs []string
	deep bool
	// reasons[op] is the Decision.Reason when this pattern decides op.
	reasons [opCount]string
}

// compilePattern validates s and reports whether it is an exact name.
func compilePattern(s string) (p *pattern, exact bool, err error) {
	if len(s) > maxPatternLen {
		return nil, false, fmt.Errorf("pattern %.32q… is longer than %d bytes", s, maxPatternLen)
	}
	body, deep := strings.CutSuffix(s, "/**")
	if strings.Contains(body, "**") {
		return nil, false, fmt.Errorf("pattern %q: ** may only be the last segment, as in \"binance/**\"", s)
	}
	if !deep && !strings.ContainsAny(s, `*?[\`) {
		if !validName(s) {
			return nil, false, fmt.Errorf("%q is not a valid secret name: use 1 to %d bytes of '/'-separated segments of a-z, 0-9, '.', '_' and '-', each starting with a letter or digit", s, maxNameLen)
		}
		return &pattern{text: s}, true, nil
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !nameByte(c) && !strings.ContainsRune(`/*?[]^\`, rune(c)) {
			return nil, false, fmt.Errorf("pattern %q: %q occurs in no secret name", s, c)
		}
	}
	p = &pattern{text: s, segs: strings.Split(body, "/"), deep: deep}
	for _, seg := range p.segs {
		if seg == "" {
			return nil, false, fmt.Errorf("pattern %q has an empty segment", s)
		}
		// Match checks the whole pattern even when the name does not match.
		if _, err := path.Match(seg, ""); err != nil {
			return nil, false, fmt.Errorf("pattern %q: %w", s, err)
		}
	}
	return p, false, nil
}

// match reports whether the valid secret name matches the glob p.
// A '/' in name is matched only by a '/' in the pattern.
func (p *pattern) match(name string) bool {
	rest := name
	for i, seg := range p.segs {
		part, tail, more := strings.Cut(rest, "/")
		if ok, _ := path.Match(seg, part); !ok {
			return false
		}
		if !more {
			return i == len(p.segs)-1 && !p.deep
		}
		rest = tail
	}
	return p.deep
}

// validName reports whether s is a valid secret name: 1..128 bytes of
// '/'-separated segments, each [a-z0-9][a-z0-9._-]*.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	start := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/':
			if start {
				return false
			}
			start = true
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			start = false
		case c == '.', c == '_', c == '-':
			if start {
				return false
			}
		default:
			return false
		}
	}
	return !start
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}
