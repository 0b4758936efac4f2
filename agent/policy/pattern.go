package policy

import (
	"fmt"
	"path"
	"strings"

	"github.com/keyward/keyward/internal/secretname"
)

// maxPatternLen is the longest pattern.
const maxPatternLen = 256

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
		if err := secretname.Check(s); err != nil {
			return nil, false, err
		}
		return &pattern{text: s}, true, nil
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !secretname.IsNameByte(c) && !strings.ContainsRune(`/*?[]^\`, rune(c)) {
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
func (p *pattern) match(name string) bool { return matchSegments(p.segs, p.deep, name) }

// matchSegments matches s segment by segment against segs, one
// [path.Match] pattern per '/'-separated segment; with deep, s may have
// any number of segments more, at least one.
func matchSegments(segs []string, deep bool, s string) bool {
	rest := s
	for i, seg := range segs {
		part, tail, more := strings.Cut(rest, "/")
		if ok, _ := path.Match(seg, part); !ok {
			return false
		}
		if !more {
			return i == len(segs)-1 && !deep
		}
		rest = tail
	}
	return deep
}
