package exchange

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Parse checks r as a request to exchange x and returns the agent's view
// of it. It refuses, with a *[RequestError] wrapping [ErrMalformed] or
// [ErrAmbiguous], anything that the exchange might read differently from
// the agent (and with [ErrUnsupported] what x's scheme does not sign):
//
//   - in the path: '.' and '..' segments, empty segments, '%' escapes,
//     '\', ';', '#' and '?';
//   - in the query and a form body: empty parameters, parameters without
//     '=', a second '?', '+' (a space to some servers, a plus to others),
//     raw '=', ';' or '#', invalid percent-encoding, names outside
//     [A-Za-z0-9_.-] (so no percent-encoded names), and values that do not
//     decode to UTF-8 text without control characters;
//   - in a JSON body: anything but an object (or, for OKX, an array of
//     objects) at the top, trailing data, invalid UTF-8, lone surrogates,
//     escapes in member names, and nesting deeper than 16;
//   - everywhere: duplicate parameter names, compared without regard to
//     case (symbol and Symbol), in the query, the body and each object;
//     the parameters the agent adds itself (Binance timestamp, Kraken
//     nonce, ...); more than [MaxParams] parameters; a query or body over
//     64 KiB.
//
// It also refuses what the exchange's scheme cannot sign unambiguously, for
// example a Binance POST with parameters in both the query and the body.
func Parse(x Exchange, r *Request) (*Parsed, error) {
	s, ok := schemes[x]
	if !ok {
		return nil, reqErr(x, "exchange", ErrUnsupported, "unknown exchange; this package signs for %v", Exchanges())
	}
	if !slices.Contains(s.info.Methods, r.Method) {
		return nil, reqErr(x, "method", ErrUnsupported, "%q is not one of %v", r.Method, s.info.Methods)
	}
	if err := checkHost(x, r.Host); err != nil {
		return nil, err
	}
	if len(r.Query) > MaxQuerySize {
		return nil, reqErr(x, "query", ErrMalformed, "%d bytes is more than the limit of %d", len(r.Query), MaxQuerySize)
	}
	if len(r.Body) > MaxBodySize {
		return nil, reqErr(x, "body", ErrMalformed, "%d bytes is more than the limit of %d", len(r.Body), MaxBodySize)
	}
	if r.Method != WS {
		if err := checkPath(x, r.Path); err != nil {
			return nil, err
		}
	}
	p := &Parsed{Exchange: x, Method: r.Method, Host: r.Host, Path: r.Path, SignsParams: s.info.SignsParams,
		query: r.Query, body: string(r.Body)}
	if err := checkRecvWindow(x, r.RecvWindow, s.info.RecvWindow); err != nil {
		return nil, err
	}
	if s.info.RecvWindow != 0 {
		p.RecvWindow = r.RecvWindow
		switch {
		case p.RecvWindow != 0:
		case r.Method == WS && s.wsRecvWindow != 0:
			p.RecvWindow = s.wsRecvWindow
		default:
			p.RecvWindow = s.info.RecvWindow
		}
	}

	count := 0
	var err error
	if p.Params, err = parseForm(x, "query", p.query, nil, &count); err != nil {
		return nil, err
	}
	switch {
	case p.body == "":
	case s.bodyJSON(p):
		p.json = true
		var top []Param
		top, p.Items, err = parseJSON(x, "body", p.body, s.arrayBody, &count)
		if err != nil {
			return nil, err
		}
		p.Params = append(p.Params, top...)
	default:
		if p.Params, err = parseForm(x, "body", p.body, p.Params, &count); err != nil {
			return nil, err
		}
	}
	if err := checkDuplicates(x, "parameter", p.Params); err != nil {
		return nil, err
	}
	reserved := s.reserved
	if p.Method == WS && s.wsReserved != nil {
		reserved = s.wsReserved
	}
	for _, prm := range p.Params {
		for _, name := range reserved {
			if strings.EqualFold(prm.Name, name) {
				return nil, reqErr(x, "parameter", ErrAmbiguous, "%q is added by the agent; leave it out of the request", prm.Name)
			}
		}
	}
	if s.batchParam != "" {
		for _, prm := range p.Params {
			if !strings.EqualFold(prm.Name, s.batchParam) {
				continue
			}
			if p.json && !prm.Raw {
				return nil, reqErr(x, "body", ErrMalformed, "%q is a string; want a JSON array of orders", prm.Name)
			}
			if p.Items, err = parseBatch(x, prm, &count); err != nil {
				return nil, err
			}
		}
	}
	if err := p.collect(&s.info); err != nil {
		return nil, err
	}
	if err := s.check(p); err != nil {
		return nil, err
	}
	return p, nil
}

// parseBatch reads a batch parameter: a JSON array of objects, as JSON in
// a JSON body or as the text of a form value.
func parseBatch(x Exchange, prm Param, count *int) ([][]Param, error) {
	_, items, err := parseJSON(x, "parameter "+prm.Name, prm.Value, true, count)
	if err == nil && items == nil {
		err = reqErr(x, "parameter "+prm.Name, ErrMalformed, "want a JSON array of orders")
	}
	return items, err
}

// collect fills Symbols and FundParams from Params and Items.
func (p *Parsed) collect(info *Info) error {
	add := func(params []Param) error {
		for _, prm := range params {
			if strings.EqualFold(prm.Name, info.SymbolParam) {
				if prm.Raw {
					return reqErr(p.Exchange, "parameter", ErrMalformed, "%q is %s; the symbol must be a string", prm.Name, prm.Value)
				}
				p.Symbols = append(p.Symbols, prm.Value)
			}
			if info.IsFundParam(prm.Name) && !slices.Contains(p.FundParams, prm.Name) {
				p.FundParams = append(p.FundParams, prm.Name)
			}
		}
		return nil
	}
	if err := add(p.Params); err != nil {
		return err
	}
	for _, it := range p.Items {
		if err := add(it); err != nil {
			return err
		}
	}
	return nil
}

// checkRecvWindow validates a request's receive window.
func checkRecvWindow(x Exchange, w, def time.Duration) error {
	switch {
	case w == 0:
		return nil
	case def == 0:
		return reqErr(x, "recv window", ErrUnsupported, "%s takes no receive window; leave it zero", x)
	case w < time.Millisecond || w > 60*time.Second || w%time.Millisecond != 0:
		return reqErr(x, "recv window", ErrMalformed, "%v is not a whole number of milliseconds from 1ms to 60s", w)
	}
	return nil
}

// checkHost validates a lower-case DNS name without a port.
func checkHost(x Exchange, h string) error {
	if h == "" || len(h) > 253 {
		return reqErr(x, "host", ErrMalformed, "%q: want a host name such as api.binance.com", h)
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case c == '.':
			if i == 0 || i == len(h)-1 || h[i-1] == '.' {
				return reqErr(x, "host", ErrMalformed, "%q has an empty label", h)
			}
		case 'A' <= c && c <= 'Z':
			return reqErr(x, "host", ErrMalformed, "%q: write the host in lower case", h)
		default:
			return reqErr(x, "host", ErrMalformed, "%q: byte %d is %q; want a host name without port or user", h, i, c)
		}
	}
	return nil
}

// checkPath validates an HTTP request path: '/'-separated segments of
// [A-Za-z0-9-._~], none empty, '.' or '..'.
func checkPath(x Exchange, path string) error {
	if path == "" || path[0] != '/' {
		return reqErr(x, "path", ErrMalformed, "%q does not start with '/'", path)
	}
	if len(path) > MaxPathSize {
		return reqErr(x, "path", ErrMalformed, "%d bytes is more than the limit of %d", len(path), MaxPathSize)
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case unreserved(c), c == '/':
		case c == '%':
			return reqErr(x, "path", ErrAmbiguous, "%q has a '%%' escape; write the path plainly", path)
		case c == '\\' || c == ';' || c == '#' || c == '?':
			return reqErr(x, "path", ErrAmbiguous, "%q contains %q; the path is '/'-separated letters, digits and -._~ (the query goes in Query)", path, c)
		default:
			return reqErr(x, "path", ErrMalformed, "%q: byte %d is %q; the path is '/'-separated letters, digits and -._~", path, i, c)
		}
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return reqErr(x, "path", ErrAmbiguous, "%q has an empty, '.' or '..' segment; send the path the exchange expects", path)
		}
	}
	return nil
}

// unreserved reports whether c is an RFC 3986 unreserved character.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// nameChar reports whether c may appear in a parameter name.
func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

// checkName validates a parameter name.
func checkName(x Exchange, part, name string) error {
	if name == "" {
		return reqErr(x, part, ErrMalformed, "a parameter has an empty name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !nameChar(c) {
			if c == '%' || c == '\\' {
				return reqErr(x, part, ErrAmbiguous, "parameter name %q is escaped; write it plainly", name)
			}
			return reqErr(x, part, ErrMalformed, "parameter name %q: byte %d is %q; names are letters, digits, '_', '.' and '-'", name, i, c)
		}
	}
	return nil
}

// valueChar reports whether c may appear unescaped in a query or form
// value: unreserved characters, the sub-delimiters other than '+', '&',
// '=' and ';', and the characters of compact JSON text (which ccxt sends
// unescaped for Binance batchOrders).
func valueChar(c byte) bool {
	return unreserved(c) || strings.IndexByte(`!$'()*,:/@"{}[]`, c) >= 0
}

// parseForm appends the parameters of a query string or form body.
func parseForm(x Exchange, part, s string, params []Param, count *int) ([]Param, error) {
	if s == "" {
		return params, nil
	}
	if s[0] == '{' || s[0] == '[' {
		return nil, reqErr(x, part, ErrMalformed, "is JSON; %s takes name=value&… here", x)
	}
	params = slices.Grow(params, min(strings.Count(s, "&")+1, MaxParams+1))
	for seg := range strings.SplitSeq(s, "&") {
		if seg == "" {
			return nil, reqErr(x, part, ErrMalformed, "an empty parameter (\"&&\", or '&' at the start or end)")
		}
		*count++
		if *count > MaxParams {
			return nil, reqErr(x, part, ErrMalformed, "more than %d parameters", MaxParams)
		}
		name, raw, ok := strings.Cut(seg, "=")
		if !ok {
			return nil, reqErr(x, part, ErrMalformed, "parameter %q has no '='; write name=value", seg)
		}
		if err := checkName(x, part, name); err != nil {
			return nil, err
		}
		v, err := decodeValue(x, part, name, raw)
		if err != nil {
			return nil, err
		}
		params = append(params, Param{Name: name, Value: v})
	}
	return params, nil
}

// decodeValue percent-decodes a query or form value strictly.
func decodeValue(x Exchange, part, name, raw string) (string, error) {
	escaped := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case valueChar(c):
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", reqErr(x, part, ErrMalformed, "parameter %q has an invalid %%-escape; write %%XX with two hex digits", name)
			}
			escaped = true
			i += 2
		case c == '+':
			return "", reqErr(x, part, ErrAmbiguous, "parameter %q contains '+', a space to some servers and a plus to others; write %%20 or %%2B", name)
		case c == '=' || c == ';' || c == '#' || c == '?':
			return "", reqErr(x, part, ErrAmbiguous, "parameter %q contains %q; percent-encode it", name, c)
		default:
			return "", reqErr(x, part, ErrMalformed, "parameter %q contains %q; percent-encode it", name, c)
		}
	}
	v := raw
	if escaped {
		b := make([]byte, 0, len(raw))
		for i := 0; i < len(raw); i++ {
			if raw[i] == '%' {
				b = append(b, unhex(raw[i+1])<<4|unhex(raw[i+2]))
				i += 2
			} else {
				b = append(b, raw[i])
			}
		}
		v = string(b)
	}
	if err := checkText(x, part, name, v); err != nil {
		return "", err
	}
	return v, nil
}

// checkText requires valid UTF-8 without control characters.
func checkText(x Exchange, part, name, v string) error {
	if !utf8.ValidString(v) {
		return reqErr(x, part, ErrAmbiguous, "parameter %q is not valid UTF-8", name)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (0x80 <= r && r < 0xa0) {
			return reqErr(x, part, ErrMalformed, "parameter %q contains the control character %U", name, r)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// checkDuplicates refuses two parameters whose names differ only in case.
func checkDuplicates(x Exchange, part string, params []Param) error {
	for i := 1; i < len(params); i++ {
		for j := range i {
			if strings.EqualFold(params[i].Name, params[j].Name) {
				return reqErr(x, part, ErrAmbiguous, "%q appears twice (also as %q); send each parameter once", params[i].Name, params[j].Name)
			}
		}
	}
	return nil
}
