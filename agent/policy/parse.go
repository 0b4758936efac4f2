package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/keyward/keyward/internal/secretname"
	"github.com/keyward/keyward/internal/trust"
)

// DefaultPath is where the agent reads its policy.
const DefaultPath = "/etc/keyward/policy.toml"

// MaxSize bounds a policy file.
const MaxSize = 1 << 20

// maxRate bounds rate and burst.
const maxRate = 1e6

// A RuleError reports what is wrong with one [[rule]] table.
type RuleError struct {
	Index int    // position of the table in the file, from 1
	Name  string // the rule's name, "" if it has none
	Err   error
}

// Error says which rule is wrong and how.
func (e *RuleError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("rule %d: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("rule %d (%q): %v", e.Index, e.Name, e.Err)
}

// Unwrap returns the underlying error.
func (e *RuleError) Unwrap() error { return e.Err }

// fileRule is a [[rule]] table as written.
type fileRule struct {
	Name      string   `toml:"name"`
	Secrets   []string `toml:"secrets"`
	Users     []string `toml:"users"`
	Groups    []string `toml:"groups"`
	Exes      []string `toml:"exes"`
	ExeSHA256 []string `toml:"exe_sha256"`
	Units     []string `toml:"units"`
	Allow     []string `toml:"allow"`
	Rate      float64  `toml:"rate"`
	Burst     int64    `toml:"burst"`
	Requests  []string `toml:"requests"`
	Hosts     []string `toml:"hosts"`
	Params    []string `toml:"params"`
	Symbols   []string `toml:"symbols"`
}

var ruleKeys = []string{"name", "secrets", "users", "groups", "exes", "exe_sha256", "units", "allow", "rate", "burst",
	"requests", "hosts", "params", "symbols"}

// scopeKeys are the keys of a sign rule's scope.
var scopeKeys = []string{"requests", "hosts", "params", "symbols"}

var callerKeys = []string{"users", "groups", "exes", "exe_sha256", "units"}

// Load reads and parses the policy file at name. Whoever can write the
// policy can grant themselves every secret, so Load refuses anything but a
// regular file, and a file or directory holding it that is not owned by
// root or the effective uid or that group or others may write. The errors
// say which chmod or chown fixes it.
func Load(name string) (*Policy, error) {
	b, err := readFile(name)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

func readFile(name string) ([]byte, error) {
	return trust.ReadFile("policy", name, trust.Public, MaxSize)
}

// Parse parses a policy file's contents. An error names the rule, by
// position and name, and what is wrong with it.
func Parse(b []byte) (*Policy, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("policy is larger than %d bytes", MaxSize)
	}
	var doc struct {
		Rule   []toml.Primitive `toml:"rule"`
		Budget []toml.Primitive `toml:"budget"`
	}
	md, err := toml.Decode(string(b), &doc)
	if err != nil {
		var probe map[string]any
		if _, e := toml.Decode(string(b), &probe); e == nil {
			for _, k := range []string{"rule", "budget"} {
				if _, single := probe[k].(map[string]any); single {
					return nil, fmt.Errorf("%s is a single table: write each %s as [[%s]], with two pairs of brackets", k, k, k)
				}
			}
		}
		return nil, err
	}
	for _, k := range md.Keys() {
		if len(k) > 0 && k[0] != "rule" && k[0] != "budget" {
			return nil, fmt.Errorf("unknown key %q: a policy holds only [[rule]] and [[budget]] tables", k[0])
		}
	}
	p := &Policy{now: time.Now, maxLimiters: maxLimiters}
	seen := make(map[string]int)
	for i, prim := range doc.Rule {
		r, err := compileRule(md, prim)
		if err == nil {
			if j, dup := seen[r.name]; dup {
				err = fmt.Errorf("name %q is already used by rule %d", r.name, j)
			}
		}
		if err != nil {
			e := &RuleError{Index: i + 1, Err: err}
			if r != nil {
				e.Name = r.name
			}
			return nil, e
		}
		seen[r.name] = i + 1
		p.rules = append(p.rules, r)
	}
	if p.budgets, err = compileBudgets(md, doc.Budget); err != nil {
		return nil, err
	}
	return p, nil
}

// compileRule decodes and checks one [[rule]] table. On error the rule it
// returns, if any, carries only the name.
func compileRule(md toml.MetaData, prim toml.Primitive) (*rule, error) {
	var keys map[string]any
	if err := md.PrimitiveDecode(prim, &keys); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New("is not a table; write [[rule]]")
	}
	named := &rule{}
	named.name, _ = keys["name"].(string)
	var unknown []string
	for k := range keys {
		if !slices.Contains(ruleKeys, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return named, fmt.Errorf("unknown key %s (keys are %s)", strings.Join(unknown, ", "), strings.Join(ruleKeys, ", "))
	}
	var fr fileRule
	if err := md.PrimitiveDecode(prim, &fr); err != nil {
		return named, err
	}
	r, err := fr.compile(keys)
	if err != nil {
		return named, err
	}
	return r, nil
}

func (fr *fileRule) compile(keys map[string]any) (*rule, error) {
	has := func(k string) bool { _, ok := keys[k]; return ok }
	r := &rule{name: fr.Name}
	if !has("name") {
		return nil, errors.New("name is missing")
	}
	if !validRuleName(fr.Name) {
		return nil, fmt.Errorf("name %q is not 1 to 64 bytes of a-z, 0-9, '.', '_' and '-'", fr.Name)
	}
	if len(fr.Secrets) == 0 {
		return nil, errors.New("secrets is missing or empty: name at least one secret or pattern")
	}
	if len(fr.Allow) == 0 {
		return nil, errors.New("allow is missing or empty: grant at least one of get, list, watch, admin, sign, hmac")
	}
	if !slices.ContainsFunc(callerKeys, has) {
		return nil, errors.New("no caller selector: give users, groups, exes, exe_sha256 or units (a rule without one would match every process)")
	}
	for _, k := range callerKeys {
		if list, _ := keys[k].([]any); has(k) && len(list) == 0 {
			return nil, fmt.Errorf("%s is empty: remove it or name at least one", k)
		}
	}
	if (has("exes") || has("exe_sha256")) && !has("users") && !has("groups") && !has("units") {
		// Anyone who can run the binary would pass: with LD_PRELOAD, a
		// debugger or its own arguments, any local user could get the
		// secret. And any caller could make the agent hash large files.
		return nil, errors.New("exes and exe_sha256 need users, groups or units too: on their own they match any user who can run the binary")
	}

	for _, s := range fr.Allow {
		op, err := ParseOp(s)
		if err != nil {
			return nil, fmt.Errorf("allow: %w", err)
		}
		if r.ops&(1<<op) == 0 {
			r.allow = append(r.allow, op.String())
		}
		r.ops |= 1 << op
	}
	r.exact = make(map[string]*pattern)
	for _, s := range fr.Secrets {
		p, exact, err := compilePattern(s)
		if err != nil {
			return nil, fmt.Errorf("secrets: %w", err)
		}
		for op := OpGet; op <= OpHMAC; op++ {
			if r.ops&(1<<op) != 0 {
				p.reasons[op] = fmt.Sprintf("rule %q grants %s on %s", r.name, op, p.text)
			}
		}
		if !exact {
			r.globs = append(r.globs, p)
		} else if r.exact[s] == nil {
			r.exact[s] = p
		}
	}

	for _, s := range fr.Users {
		id, err := resolveID(s, "user")
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		r.users = append(r.users, id)
		r.userText = append(r.userText, idText(s, id))
	}
	for _, s := range fr.Groups {
		id, err := resolveID(s, "group")
		if err != nil {
			return nil, fmt.Errorf("groups: %w", err)
		}
		r.groups = append(r.groups, id)
		r.groupText = append(r.groupText, idText(s, id))
	}
	for _, s := range fr.Exes {
		if !path.IsAbs(s) {
			return nil, fmt.Errorf("exes: %q is not an absolute path", s)
		}
		r.exes = append(r.exes, path.Clean(s))
	}
	for _, s := range fr.ExeSHA256 {
		var sum [32]byte
		if len(s) != hex.EncodedLen(len(sum)) || hexDecode(sum[:], s) != nil {
			return nil, fmt.Errorf("exe_sha256: %q is not 64 hex digits (the output of sha256sum)", s)
		}
		r.sums = append(r.sums, sum)
	}
	for _, s := range fr.Units {
		if err := checkUnit(s); err != nil {
			return nil, fmt.Errorf("units: %w", err)
		}
		r.units = append(r.units, s)
	}

	if err := fr.compileScope(r, has); err != nil {
		return nil, err
	}

	if has("rate") {
		if !(fr.Rate > 0 && fr.Rate <= maxRate) {
			return nil, fmt.Errorf("rate is %v: give requests per second above 0 and at most %g, or remove it for no limit", fr.Rate, float64(maxRate))
		}
		burst := int64(math.Ceil(fr.Rate))
		if has("burst") {
			if fr.Burst < 1 || fr.Burst > maxRate {
				return nil, fmt.Errorf("burst is %d: give 1 to %d requests", fr.Burst, int64(maxRate))
			}
			burst = fr.Burst
		}
		r.limits = &limiterSet{rate: fr.Rate, burst: int(burst), byUID: make(map[uint32]*Limiter)}
	} else if has("burst") {
		return nil, errors.New("burst needs rate: give rate, or remove burst")
	}
	return r, nil
}

func hexDecode(dst []byte, s string) error {
	_, err := hex.Decode(dst, []byte(s))
	return err
}

func validRuleName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !secretname.IsNameByte(s[i]) {
			return false
		}
	}
	return true
}

// resolveID returns the id that s, a user or group name or a decimal id,
// stands for. Names are looked up now: an unknown name is an error.
func resolveID(s, kind string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("empty %s name", kind)
	}
	if strings.Trim(s, "0123456789") == "" {
		id, err := strconv.ParseUint(s, 10, 32)
		if err != nil || id == math.MaxUint32 {
			return 0, fmt.Errorf("%s id %s is out of range", kind, s)
		}
		return uint32(id), nil
	}
	var (
		idText string
		err    error
	)
	if kind == "user" {
		var u *user.User
		if u, err = user.Lookup(s); err == nil {
			idText = u.Uid
		}
	} else {
		var g *user.Group
		if g, err = user.LookupGroup(s); err == nil {
			idText = g.Gid
		}
	}
	var unknownUser user.UnknownUserError
	var unknownGroup user.UnknownGroupError
	switch {
	case errors.As(err, &unknownUser), errors.As(err, &unknownGroup):
		return 0, fmt.Errorf("unknown %s %q: create it first, or give its numeric id", kind, s)
	case err != nil:
		return 0, fmt.Errorf("failed to look up %s %q: %w", kind, s, err)
	}
	id, err := strconv.ParseUint(idText, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q has id %q, which is not a number", kind, s, idText)
	}
	return uint32(id), nil
}

func idText(s string, id uint32) string {
	if n := strconv.FormatUint(uint64(id), 10); n != s {
		return s + "(" + n + ")"
	}
	return s
}

// checkUnit accepts the name of a systemd service or scope: the only unit
// types processes run in.
func checkUnit(s string) error {
	base, ok := strings.CutSuffix(s, ".service")
	if !ok {
		base, ok = strings.CutSuffix(s, ".scope")
	}
	if !ok || base == "" || len(s) > 255 {
		return fmt.Errorf("%q is not a service or scope name: write e.g. \"mm-prod.service\"", s)
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(":_.@-\\", c) >= 0) {
			return fmt.Errorf("unit %q: %q is not allowed in a unit name", s, c)
		}
	}
	return nil
}
