package exchange

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonParser is a strict RFC 8259 parser that keeps member order and
// refuses what two JSON parsers could read differently.
type jsonParser struct {
	x     Exchange
	part  string
	s     string
	i     int
	depth int
	count *int
	keys  []string // member names of the objects being parsed, innermost last
}

// parseJSON parses a JSON body: an object gives its members as params; an
// array (if allowArray) must hold objects and gives each one's members as
// an item.
func parseJSON(x Exchange, part, s string, allowArray bool, count *int) (params []Param, items [][]Param, err error) {
	p := &jsonParser{x: x, part: part, s: s, count: count}
	p.space()
	switch {
	case p.peek() == '{':
		params, err = p.object(true)
	case p.peek() == '[' && allowArray:
		items, err = p.arrayOfObjects()
	case p.peek() == '[':
		return nil, nil, p.err(ErrMalformed, "the JSON is an array; %s wants an object", x)
	default:
		return nil, nil, p.err(ErrMalformed, "the JSON is not an object")
	}
	if err != nil {
		return nil, nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, nil, p.err(ErrAmbiguous, "data after the JSON value at byte %d", p.i)
	}
	return params, items, nil
}

func (p *jsonParser) err(e error, format string, args ...any) error {
	return reqErr(p.x, p.part, e, format, args...)
}

func (p *jsonParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *jsonParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) expect(c byte) error {
	if p.peek() != c {
		if p.i >= len(p.s) {
			return p.err(ErrMalformed, "the JSON ends early; want %q", c)
		}
		return p.err(ErrMalformed, "byte %d of the JSON is %q; want %q", p.i, p.s[p.i], c)
	}
	p.i++
	return nil
}

func (p *jsonParser) enter() error {
	p.depth++
	if p.depth > maxJSONDepth {
		return p.err(ErrMalformed, "the JSON nests deeper than %d", maxJSONDepth)
	}
	return nil
}

// arrayOfObjects parses an array whose elements are objects.
func (p *jsonParser) arrayOfObjects() ([][]Param, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.i++ // '['
	items := [][]Param{}
	p.space()
	if p.peek() == ']' {
		p.i++
		p.depth--
		return items, nil
	}
	for {
		p.space()
		if p.peek() != '{' {
			return nil, p.err(ErrMalformed, "element %d of the array is not an object", len(items))
		}
		it, err := p.object(true)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
		p.space()
		if p.peek() == ',' {
			p.i++
			continue
		}
		if err := p.expect(']'); err != nil {
			return nil, err
		}
		p.depth--
		return items, nil
	}
}

// object parses an object; with keep, it returns its members as params.
func (p *jsonParser) object(keep bool) ([]Param, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.i++ // '{'
	var params []Param
	base := len(p.keys)
	defer func() { p.keys = p.keys[:base] }()
	p.space()
	if p.peek() == '}' {
		p.i++
		p.depth--
		return params, nil
	}
	for {
		p.space()
		name, err := p.name()
		if err != nil {
			return nil, err
		}
		for _, k := range p.keys[base:] {
			if strings.EqualFold(k, name) {
				return nil, p.err(ErrAmbiguous, "member %q appears twice (also as %q); send each parameter once", name, k)
			}
		}
		p.keys = append(p.keys, name)
		*p.count++
		if *p.count > MaxParams {
			return nil, p.err(ErrMalformed, "more than %d parameters", MaxParams)
		}
		p.space()
		if err := p.expect(':'); err != nil {
			return nil, err
		}
		p.space()
		start := p.i
		str, isStr, err := p.value(keep)
		if err != nil {
			return nil, err
		}
		if keep {
			if isStr {
				params = append(params, Param{Name: name, Value: str})
			} else {
				params = append(params, Param{Name: name, Value: p.s[start:p.i], Raw: true})
			}
		}
		p.space()
		if p.peek() == ',' {
			p.i++
			continue
		}
		if err := p.expect('}'); err != nil {
			return nil, err
		}
		p.depth--
		if params == nil && keep {
			params = []Param{}
		}
		return params, nil
	}
}

// name parses a member name: a string of name characters, no escapes.
func (p *jsonParser) name() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '"' {
		p.i++
	}
	if p.i >= len(p.s) {
		return "", p.err(ErrMalformed, "the JSON ends inside a member name")
	}
	name := p.s[start:p.i]
	p.i++
	if err := checkName(p.x, p.part, name); err != nil {
		return "", err
	}
	return name, nil
}

// value parses any value; for a string it returns the decoded text (when
// decode is set) and true.
func (p *jsonParser) value(decode bool) (string, bool, error) {
	switch c := p.peek(); {
	case c == '"':
		s, err := p.str(decode)
		return s, true, err
	case c == '{':
		_, err := p.object(false)
		return "", false, err
	case c == '[':
		return "", false, p.array()
	case c == '-' || '0' <= c && c <= '9':
		return "", false, p.number()
	case c == 't':
		return "", false, p.literal("true")
	case c == 'f':
		return "", false, p.literal("false")
	case c == 'n':
		return "", false, p.literal("null")
	case p.i >= len(p.s):
		return "", false, p.err(ErrMalformed, "the JSON ends where a value should be")
	default:
		return "", false, p.err(ErrMalformed, "byte %d of the JSON is %q, which starts no value", p.i, c)
	}
}

func (p *jsonParser) array() error {
	if err := p.enter(); err != nil {
		return err
	}
	p.i++ // '['
	p.space()
	if p.peek() == ']' {
		p.i++
		p.depth--
		return nil
	}
	for {
		p.space()
		if _, _, err := p.value(false); err != nil {
			return err
		}
		p.space()
		if p.peek() == ',' {
			p.i++
			continue
		}
		if err := p.expect(']'); err != nil {
			return err
		}
		p.depth--
		return nil
	}
}

func (p *jsonParser) literal(lit string) error {
	if !strings.HasPrefix(p.s[p.i:], lit) {
		return p.err(ErrMalformed, "byte %d of the JSON starts no value", p.i)
	}
	p.i += len(lit)
	return nil
}

func (p *jsonParser) digits() int {
	n := 0
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

func (p *jsonParser) number() error {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	switch {
	case p.peek() == '0':
		p.i++
	case p.digits() == 0:
		return p.err(ErrMalformed, "invalid number at byte %d of the JSON", start)
	}
	if p.peek() == '.' {
		p.i++
		if p.digits() == 0 {
			return p.err(ErrMalformed, "invalid number at byte %d of the JSON", start)
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if p.digits() == 0 {
			return p.err(ErrMalformed, "invalid number at byte %d of the JSON", start)
		}
	}
	return nil
}

// str parses a string. It refuses raw control characters and invalid
// UTF-8, escapes of control characters and lone surrogates; with decode,
// it returns the decoded text.
func (p *jsonParser) str(decode bool) (string, error) {
	p.i++ // '"'
	start := p.i
	var b []byte // decoded text, once an escape was seen
	for {
		if p.i >= len(p.s) {
			return "", p.err(ErrMalformed, "the JSON ends inside a string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			s := p.s[start:p.i]
			p.i++
			if b != nil {
				s = string(b)
			}
			return s, nil
		case c < 0x20:
			return "", p.err(ErrMalformed, "a JSON string contains the control character %U", rune(c))
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && n == 1 {
				return "", p.err(ErrAmbiguous, "a JSON string is not valid UTF-8")
			}
			if 0x80 <= r && r < 0xa0 {
				return "", p.err(ErrMalformed, "a JSON string contains the control character %U", r)
			}
			if b != nil {
				b = append(b, p.s[p.i:p.i+n]...)
			}
			p.i += n
		case c == '\\':
			if b == nil && decode {
				b = append(make([]byte, 0, len(p.s)-start), p.s[start:p.i]...)
			}
			r, err := p.escape()
			if err != nil {
				return "", err
			}
			if b != nil {
				b = utf8.AppendRune(b, r)
			}
		case c == 0x7f:
			return "", p.err(ErrMalformed, "a JSON string contains the control character U+007F")
		default:
			if b != nil {
				b = append(b, c)
			}
			p.i++
		}
	}
}

// escape parses one escape sequence at p.i.
func (p *jsonParser) escape() (rune, error) {
	if p.i+1 >= len(p.s) {
		return 0, p.err(ErrMalformed, "the JSON ends inside an escape")
	}
	c := p.s[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'u':
	default:
		return 0, p.err(ErrMalformed, "a JSON string has the escape \\%c; only \\\", \\\\, \\/ and \\u of printable characters are accepted", c)
	}
	r, err := p.hex4()
	if err != nil {
		return 0, err
	}
	if utf16.IsSurrogate(r) {
		if r >= 0xdc00 || !strings.HasPrefix(p.s[p.i:], `\u`) {
			return 0, p.err(ErrAmbiguous, "a JSON string has a lone surrogate \\u%04x", r)
		}
		p.i += 2
		r2, err := p.hex4()
		if err != nil {
			return 0, err
		}
		if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
			return 0, p.err(ErrAmbiguous, "a JSON string has a lone surrogate")
		}
	}
	if r < 0x20 || r == 0x7f || (0x80 <= r && r < 0xa0) {
		return 0, p.err(ErrMalformed, "a JSON string contains the control character %U", r)
	}
	return r, nil
}

func (p *jsonParser) hex4() (rune, error) {
	if p.i+4 > len(p.s) {
		return 0, p.err(ErrMalformed, "the JSON ends inside a \\u escape")
	}
	var r rune
	for _, c := range []byte(p.s[p.i : p.i+4]) {
		if !isHex(c) {
			return 0, p.err(ErrMalformed, "a JSON \\u escape is not four hex digits")
		}
		r = r<<4 | rune(unhex(c))
	}
	p.i += 4
	return r, nil
}
