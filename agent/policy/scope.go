package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/keyward/keyward/agent/exchange"
)

// A requestPattern is one entry of a sign rule's requests or of a
// budget's weights: a method and a path pattern, "POST /api/v3/order",
// "GET /api/v3/*", "GET /sapi/**" or "WS session.logon".
type requestPattern struct {
	text   string
	method string
	segs   []string // path.Match patterns, one per segment, '*' their only special
	deep   bool     // the path ends in "/**"
}

// requestMethods are the methods a request pattern may name.
var requestMethods = []string{exchange.GET, exchange.POST, exchange.PUT, exchange.DELETE, exchange.WS}

func compileRequest(s string) (*requestPattern, error) {
	method, p, ok := strings.Cut(s, " ")
	if !ok || !slices.Contains(requestMethods, method) {
		return nil, fmt.Errorf("%q is not METHOD PATH with a method of %s, as in \"POST /api/v3/order\"", s, strings.Join(requestMethods, ", "))
	}
	if len(p) > maxPatternLen {
		return nil, fmt.Errorf("%.40q… is longer than %d bytes", s, maxPatternLen)
	}
	r := &requestPattern{text: s, method: method}
	body := p
	if method == exchange.WS {
		if strings.Contains(p, "/") {
			return nil, fmt.Errorf("%q: a WS request names a login or method (\"WS session.logon\", \"WS login\"), not a path", s)
		}
	} else {
		var rooted bool
		if body, rooted = strings.CutPrefix(p, "/"); !rooted {
			return nil, fmt.Errorf("%q: the path must start with '/'", s)
		}
		body, r.deep = strings.CutSuffix(body, "/**")
		if body == "**" {
			body, r.deep = "", true
		}
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !isPathByte(c) && c != '*' && c != '/' {
			return nil, fmt.Errorf("%q: %q cannot be in a pattern (letters, digits, '*' and _.:@~- only)", s, c)
		}
	}
	if body != "" || !r.deep {
		r.segs = strings.Split(body, "/")
	}
	for _, seg := range r.segs {
		switch {
		case seg == "":
			return nil, fmt.Errorf("%q has an empty path segment", s)
		case strings.Contains(seg, "**"):
			return nil, fmt.Errorf("%q: ** may only be the last segment, as in \"GET /api/**\"", s)
		case seg == "." || seg == "..":
			return nil, fmt.Errorf("%q: %q segments never reach the agent (it refuses them)", s, seg)
		}
	}
	return r, nil
}

// isPathByte reports whether c may be in a pattern's path or WS name
// besides '*' and '/'.
func isPathByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.:@~-", c) >= 0
}

// match reports whether a parsed request's method and path match r.
func (r *requestPattern) match(method, p string) bool {
	if method != r.method {
		return false
	}
	if method != exchange.WS {
		var rooted bool
		if p, rooted = strings.CutPrefix(p, "/"); !rooted {
			return false
		}
	}
	return matchSegments(r.segs, r.deep, p)
}

// A scope is what a sign rule lets its callers sign.
type scope struct {
	requests []*requestPattern
	hosts    []string // nil: any host
	params   []string // nil: any parameter that moves no funds
	symbols  []string // nil: any symbol
}

// admit returns "" if the scope admits the request, else why not.
//
// Parameters that move funds (a withdrawal's address, a transfer's
// amount) are refused unless params names them: Binance and Bybit do not
// sign the path, so a signature for an order carrying them is a
// withdrawal (docs/signing.md).
func (sc *scope) admit(r *exchange.Parsed) string {
	if sc.hosts != nil && !slices.Contains(sc.hosts, r.Host) {
		return fmt.Sprintf("host %q is not in hosts %q", r.Host, sc.hosts)
	}
	if !slices.ContainsFunc(sc.requests, func(p *requestPattern) bool { return p.match(r.Method, r.Path) }) {
		return fmt.Sprintf("%s %s is not in requests", r.Method, r.Path)
	}
	if (sc.params != nil || sc.symbols != nil) && !r.SignsParams {
		return fmt.Sprintf("%s's signature does not cover the parameters, so params and symbols cannot be enforced: grant its requests in a rule without them", r.Exchange)
	}
	for _, name := range r.FundParams {
		if !slices.Contains(sc.params, name) {
			return fmt.Sprintf("parameter %q moves funds, and params does not name it", name)
		}
	}
	if sc.params != nil {
		if name := sc.unlisted(r.Params); name != "" {
			return fmt.Sprintf("parameter %q is not in params", name)
		}
		for _, item := range r.Items {
			if name := sc.unlisted(item); name != "" {
				return fmt.Sprintf("parameter %q of a batch item is not in params", name)
			}
		}
	}
	if sc.symbols != nil {
		for _, sym := range r.Symbols {
			if !slices.Contains(sc.symbols, sym) {
				return fmt.Sprintf("symbol %s is not in symbols", strconv.Quote(sym))
			}
		}
	}
	return ""
}

func (sc *scope) unlisted(params []exchange.Param) string {
	for _, p := range params {
		if !slices.Contains(sc.params, p.Name) {
			return p.Name
		}
	}
	return ""
}

// Bounds on a scope's entries.
const (
	maxHostLen   = 253
	maxParamLen  = 64
	maxSymbolLen = 64
)

// compileScope compiles a rule's requests, hosts, params and symbols: a
// rule that grants sign must name what it signs, and only such a rule may
// have a scope.
func (fr *fileRule) compileScope(r *rule, has func(string) bool) error {
	if r.ops&(1<<OpSign) == 0 {
		if k := slices.IndexFunc(scopeKeys, has); k >= 0 {
			return fmt.Errorf("%s applies to sign only, and this rule does not grant sign", scopeKeys[k])
		}
		return nil
	}
	if len(fr.Requests) == 0 {
		return errors.New(`a rule that grants sign needs requests, the requests it may sign, as in requests = ["POST /api/v3/order", "DELETE /api/v3/order"]`)
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"hosts", fr.Hosts}, {"params", fr.Params}, {"symbols", fr.Symbols}} {
		if has(l.key) && len(l.list) == 0 {
			return fmt.Errorf("%s is empty: remove it or name at least one", l.key)
		}
	}
	sc := &scope{}
	for _, s := range fr.Requests {
		p, err := compileRequest(s)
		if err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		sc.requests = append(sc.requests, p)
	}
	for _, h := range fr.Hosts {
		if h == "" || len(h) > maxHostLen || strings.Trim(h, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			return fmt.Errorf("hosts: %q is not a host name in lower case, as in \"api.binance.com\"", h)
		}
		sc.hosts = append(sc.hosts, h)
	}
	for _, name := range fr.Params {
		if name == "" || len(name) > maxParamLen || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != "" {
			return fmt.Errorf("params: %q is not a parameter name (letters, digits and _.- only)", name)
		}
		sc.params = append(sc.params, name)
	}
	for _, sym := range fr.Symbols {
		if sym == "" || len(sym) > maxSymbolLen || strings.ContainsFunc(sym, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
			return fmt.Errorf("symbols: %q is not a symbol as the exchange writes it, as in \"BTCUSDT\" or \"BTC-USDT\"", sym)
		}
		sc.symbols = append(sc.symbols, sym)
	}
	r.scope = sc
	return nil
}
