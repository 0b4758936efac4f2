package policy

import (
	"crypto/subtle"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/internal/secretname"
)

// Caller is what the policy needs to know about a peer. The agent's
// attested peer implements it.
type Caller interface {
	// UID and GID are the ids the kernel reported for the peer.
	UID() uint32
	GID() uint32
	// Groups returns the supplementary group ids.
	Groups() []uint32
	// Exe returns the absolute path of the executable.
	Exe() string
	// ExeSHA256 returns the SHA-256 of the executable. It may be costly:
	// the policy calls it at most once per Decide, Explain or Visible, and
	// only when a rule that could decide has exe_sha256. An error means
	// that no exe_sha256 selector matches.
	ExeSHA256() ([32]byte, error)
	// Unit returns the systemd unit the process runs in, "" if none.
	Unit() string
}

// A Policy decides which callers may do what with which secrets. It is
// immutable after [Parse] or [Load] except for its rate limiters, and safe
// for concurrent use.
type Policy struct {
	rules   []*rule
	budgets []*budget

	now         func() time.Time
	limiters    atomic.Int64 // how many per-caller limiters exist
	maxLimiters int64
}

// A Decision is the answer to one request.
type Decision struct {
	// Allowed is true only when a rule grants the request.
	Allowed bool
	// Rule is the name of the deciding rule, "" when denied by default.
	Rule string
	// Reason explains the decision for the audit log. It is not for the
	// caller: a denial names the secret whether or not it exists.
	Reason string
	// Limiter is the deciding rule's rate limiter for this caller's uid,
	// nil when the rule sets no rate. The agent calls Allow on it.
	Limiter *Limiter
}

// A rule is one compiled [[rule]] table.
type rule struct {
	name  string
	ops   uint8 // 1<<op for each granted op
	exact map[string]*pattern
	globs []*pattern

	users  []uint32
	groups []uint32
	exes   []string
	sums   [][32]byte
	units  []string

	limits *limiterSet // nil without rate
	scope  *scope      // what a sign rule may sign; nil for other rules

	// For Explain.
	allow     []string
	userText  []string
	groupText []string
}

// input caches what the rules ask of a Caller during one call. Groups
// (which may copy) and the executable's hash (which may read the file) are
// asked for only when a rule needs them.
type input struct {
	c    Caller
	uid  uint32
	gid  uint32
	exe  string
	unit string

	grouped bool
	groups  []uint32

	summed bool
	sum    [32]byte
	sumErr error
}

func newInput(c Caller) input {
	return input{c: c, uid: c.UID(), gid: c.GID(), exe: c.Exe(), unit: c.Unit()}
}

func (in *input) supplementary() []uint32 {
	if !in.grouped {
		in.groups = in.c.Groups()
		in.grouped = true
	}
	return in.groups
}

func (in *input) exeSum() ([32]byte, error) {
	if !in.summed {
		in.sum, in.sumErr = in.c.ExeSHA256()
		in.summed = true
	}
	return in.sum, in.sumErr
}

// Rules returns the number of rules.
func (p *Policy) Rules() int { return len(p.rules) }

// Decide reports whether c may perform op on the secret named secret.
// The first rule in file order that matches the secret and the caller and
// grants op decides; without one the request is denied. For [OpSign],
// Decide says whether c may sign anything with the secret: the agent asks
// it before it reads the credential, and [Policy.DecideSign] once it has
// parsed the request.
func (p *Policy) Decide(c Caller, op Op, secret string) Decision {
	in := newInput(c)
	return p.decide(&in, op, secret, nil)
}

// DecideSign reports whether c may have the agent sign r with the
// credential named secret: the first rule in file order that matches the
// secret and the caller, grants sign and whose scope (requests, hosts,
// params, symbols) admits r decides. A denial's reason names the first
// rule that would have granted sign but for its scope, and why.
func (p *Policy) DecideSign(c Caller, secret string, r *exchange.Parsed) Decision {
	in := newInput(c)
	return p.decide(&in, OpSign, secret, r)
}

func (p *Policy) decide(in *input, op Op, secret string, req *exchange.Parsed) Decision {
	r, pat, refused := p.find(in, op, secret, req)
	switch {
	case r != nil:
		d := Decision{Allowed: true, Rule: r.name, Reason: pat.reasons[op]}
		if r.limits != nil {
			d.Limiter = r.limits.get(in.uid, &p.limiters, p.maxLimiters, p.now)
		}
		return d
	case refused != "":
		return Decision{Reason: refused}
	case !op.valid():
		return Decision{Reason: "unknown operation " + op.String()}
	case !secretname.Valid(secret):
		return Decision{Reason: "not a valid secret name"}
	}
	return Decision{Reason: "no rule grants " + op.String() + " on " + strconv.Quote(secret) + " to this caller"}
}

// find returns the deciding rule and its matching pattern, or nil and,
// for a sign request, why the first rule that matched all but its scope
// did not admit it.
func (p *Policy) find(in *input, op Op, secret string, req *exchange.Parsed) (*rule, *pattern, string) {
	if !op.valid() || !secretname.Valid(secret) {
		return nil, nil, ""
	}
	bit := uint8(1) << op
	refused := ""
	for _, r := range p.rules {
		if r.ops&bit == 0 || !r.matchCaller(in) {
			continue
		}
		pat := r.matchSecret(secret)
		if pat == nil || !r.matchSum(in) {
			continue
		}
		if req != nil {
			if why := r.scope.admit(req); why != "" {
				if refused == "" {
					refused = "rule " + strconv.Quote(r.name) + " grants sign on " + pat.text + ", but " + why
				}
				continue
			}
		}
		return r, pat, ""
	}
	return nil, nil, refused
}

// Names reports whether some rule names c as a caller, whatever it
// grants: the agent tells such callers how many secrets it serves, and
// others nothing, so watching the count reveals nothing to a stranger.
func (p *Policy) Names(c Caller) bool {
	in := newInput(c)
	for _, r := range p.rules {
		if r.matchCaller(&in) {
			return true
		}
	}
	return false
}

// Visible returns the names, in their order, that c may both list and
// get: the agent's answer to a list request, which so never shows a name
// the caller could not read.
func (p *Policy) Visible(c Caller, names []string) []string {
	in := newInput(c)
	var out []string
	for _, n := range names {
		if r, _, _ := p.find(&in, OpList, n, nil); r == nil {
			continue
		}
		if r, _, _ := p.find(&in, OpGet, n, nil); r != nil {
			out = append(out, n)
		}
	}
	return out
}

// Explain returns Decide's decision and, for every rule whose secrets
// match the name, one line saying why that rule does or does not match,
// as `keyward policy check` prints them.
func (p *Policy) Explain(c Caller, op Op, secret string) (Decision, []string) {
	return p.explain(c, op, secret, nil)
}

// ExplainSign is [Policy.Explain] for [Policy.DecideSign]: each line also
// says whether the rule's scope admits r.
func (p *Policy) ExplainSign(c Caller, secret string, r *exchange.Parsed) (Decision, []string) {
	return p.explain(c, OpSign, secret, r)
}

func (p *Policy) explain(c Caller, op Op, secret string, req *exchange.Parsed) (Decision, []string) {
	in := newInput(c)
	d := p.decide(&in, op, secret, req)
	if !op.valid() || !secretname.Valid(secret) {
		return d, nil
	}
	what := op.String()
	if req != nil {
		what = fmt.Sprintf("sign of %s %s", req.Method, req.Path)
	}
	var lines []string
	for _, r := range p.rules {
		pat := r.matchSecret(secret)
		if pat == nil {
			continue
		}
		why := r.explainCaller(&in)
		switch {
		case r.ops&(1<<op) == 0:
			why = append([]string{fmt.Sprintf("grants %s, not %s", strings.Join(r.allow, ", "), op)}, why...)
		case req != nil:
			if refused := r.scope.admit(req); refused != "" {
				why = append(why, refused)
			}
		}
		var line string
		switch {
		case len(why) > 0:
			line = strings.Join(why, "; ")
		case r.name == d.Rule:
			line = fmt.Sprintf("grants %s on %s to this caller: this rule decides", what, pat.text)
		default:
			line = fmt.Sprintf("would grant %s on %s too, but rule %s comes first", what, pat.text, d.Rule)
		}
		lines = append(lines, "rule "+r.name+": "+line)
	}
	if lines == nil {
		lines = []string{fmt.Sprintf("no rule's secrets match %q", secret)}
	}
	return d, lines
}

func (r *rule) matchSecret(name string) *pattern {
	if p := r.exact[name]; p != nil {
		return p
	}
	for _, p := range r.globs {
		if p.match(name) {
			return p
		}
	}
	return nil
}

// matchCaller checks every caller selector but exe_sha256, the costly one.
func (r *rule) matchCaller(in *input) bool {
	return (r.users == nil || slices.Contains(r.users, in.uid)) &&
		(r.groups == nil || r.matchGroups(in)) &&
		(r.exes == nil || slices.Contains(r.exes, in.exe)) &&
		(r.units == nil || slices.Contains(r.units, in.unit))
}

func (r *rule) matchGroups(in *input) bool {
	if slices.Contains(r.groups, in.gid) {
		return true
	}
	for _, g := range in.supplementary() {
		if slices.Contains(r.groups, g) {
			return true
		}
	}
	return false
}

func (r *rule) matchSum(in *input) bool {
	if r.sums == nil {
		return true
	}
	sum, err := in.exeSum()
	if err != nil {
		return false
	}
	for i := range r.sums {
		if subtle.ConstantTimeCompare(sum[:], r.sums[i][:]) == 1 {
			return true
		}
	}
	return false
}

// explainCaller says which caller selectors do not match.
func (r *rule) explainCaller(in *input) []string {
	var why []string
	if r.users != nil && !slices.Contains(r.users, in.uid) {
		why = append(why, fmt.Sprintf("uid %d is not in users [%s]", in.uid, strings.Join(r.userText, " ")))
	}
	if r.groups != nil && !r.matchGroups(in) {
		why = append(why, fmt.Sprintf("neither gid %d nor groups %v are in groups [%s]", in.gid, in.supplementary(), strings.Join(r.groupText, " ")))
	}
	if r.exes != nil && !slices.Contains(r.exes, in.exe) {
		why = append(why, fmt.Sprintf("exe %q is not in exes %q", in.exe, r.exes))
	}
	if r.units != nil && !slices.Contains(r.units, in.unit) {
		why = append(why, fmt.Sprintf("unit %q is not in units %q", in.unit, r.units))
	}
	if r.sums != nil && !r.matchSum(in) {
		if sum, err := in.exeSum(); err != nil {
			why = append(why, fmt.Sprintf("the exe's sha256 is unknown (%v), so exe_sha256 does not match", err))
		} else {
			why = append(why, fmt.Sprintf("exe sha256 %x is not in exe_sha256 %x", sum, r.sums))
		}
	}
	return why
}
