package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/keyward/keyward/internal/config"
)

// A budget is one compiled [[budget]] table: a request weight per API
// key per window, shared by every caller and every secret it covers, so
// that bots sharing a key cannot together exceed what the exchange
// allows and get the key banned.
type budget struct {
	name    string
	secrets []*pattern
	weights []weight // most specific first
	dflt    int      // the weight of a request no weight pattern matches
	state   *budgetState
}

// A weight is a request pattern and what a matching request costs.
type weight struct {
	req    *requestPattern
	weight int
}

// budgetState holds a budget's buckets, one per API key. A reloaded
// policy keeps the state of a budget with the same name, limit and
// window ([Policy.Inherit]).
type budgetState struct {
	limit  int
	window time.Duration

	mu    sync.Mutex
	byKey map[string]*Limiter
}

// fileBudget is a [[budget]] table as written.
type fileBudget struct {
	Name          string           `toml:"name"`
	Secrets       []string         `toml:"secrets"`
	Limit         int64            `toml:"limit"`
	Window        string           `toml:"window"`
	DefaultWeight *int64           `toml:"default_weight"`
	Weights       map[string]int64 `toml:"weights"`
}

var budgetKeys = []string{"name", "secrets", "limit", "window", "default_weight", "weights"}

// Bounds on a budget.
const (
	maxBudgetLimit = 1 << 30
	maxWindow      = 24 * time.Hour
)

// A BudgetError reports what is wrong with one [[budget]] table.
type BudgetError struct {
	Index int    // position of the table in the file, from 1
	Name  string // the budget's name, "" if it has none
	Err   error
}

// Error says which budget is wrong and how.
func (e *BudgetError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("budget %d: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("budget %d (%q): %v", e.Index, e.Name, e.Err)
}

// Unwrap returns the underlying error.
func (e *BudgetError) Unwrap() error { return e.Err }

// compileBudgets compiles the [[budget]] tables.
func compileBudgets(md toml.MetaData, prims []toml.Primitive) ([]*budget, error) {
	var out []*budget
	for i, prim := range prims {
		b, err := compileBudget(md, prim)
		if err == nil && slices.ContainsFunc(out, func(o *budget) bool { return o.name == b.name }) {
			err = fmt.Errorf("name %q is already used by another budget", b.name)
		}
		if err != nil {
			e := &BudgetError{Index: i + 1, Err: err}
			if b != nil {
				e.Name = b.name
			}
			return nil, e
		}
		out = append(out, b)
	}
	return out, nil
}

func compileBudget(md toml.MetaData, prim toml.Primitive) (*budget, error) {
	var keys map[string]any
	if err := md.PrimitiveDecode(prim, &keys); err != nil {
		return nil, err
	}
	named := &budget{}
	named.name, _ = keys["name"].(string)
	for k := range keys {
		if !slices.Contains(budgetKeys, k) {
			return named, fmt.Errorf("unknown key %q (keys are %s)", k, strings.Join(budgetKeys, ", "))
		}
	}
	var fb fileBudget
	if err := md.PrimitiveDecode(prim, &fb); err != nil {
		return named, err
	}
	b := &budget{name: fb.Name, dflt: 1}
	switch {
	case !validRuleName(fb.Name):
		return named, fmt.Errorf("name %q is not 1 to 64 bytes of a-z, 0-9, '.', '_' and '-'", fb.Name)
	case len(fb.Secrets) == 0:
		return named, errors.New("secrets is missing or empty: name the credentials whose API keys the budget counts")
	case fb.Limit < 1 || fb.Limit > maxBudgetLimit:
		return named, fmt.Errorf("limit is %d: give the weight the exchange allows per window, 1 to %d", fb.Limit, maxBudgetLimit)
	}
	window, err := config.ParseDuration(fb.Window)
	if err != nil || window < time.Second || window > maxWindow {
		return named, fmt.Errorf("window %q is not a duration from 1s to 24h, as in \"1m\"", fb.Window)
	}
	if fb.DefaultWeight != nil {
		if *fb.DefaultWeight < 0 || *fb.DefaultWeight > fb.Limit {
			return named, fmt.Errorf("default_weight is %d: give 0 (not counted) to limit", *fb.DefaultWeight)
		}
		b.dflt = int(*fb.DefaultWeight)
	}
	for _, s := range fb.Secrets {
		p, _, err := compilePattern(s)
		if err != nil {
			return named, fmt.Errorf("secrets: %w", err)
		}
		b.secrets = append(b.secrets, p)
	}
	for text, w := range fb.Weights {
		req, err := compileRequest(text)
		if err != nil {
			return named, fmt.Errorf("weights: %w", err)
		}
		if w < 0 || w > fb.Limit {
			return named, fmt.Errorf("weights: %q weighs %d: give 0 (not counted) to limit", text, w)
		}
		b.weights = append(b.weights, weight{req, int(w)})
	}
	slices.SortFunc(b.weights, func(x, y weight) int { return compareSpecificity(x.req, y.req) })
	b.state = &budgetState{limit: int(fb.Limit), window: window, byKey: make(map[string]*Limiter)}
	return b, nil
}

// compareSpecificity orders request patterns most specific first: without
// '*' before with, longer before shorter, then by text.
func compareSpecificity(x, y *requestPattern) int {
	xg, yg := strings.Contains(x.text, "*"), strings.Contains(y.text, "*")
	switch {
	case xg != yg && !xg:
		return -1
	case xg != yg:
		return 1
	case len(x.text) != len(y.text):
		return len(y.text) - len(x.text)
	}
	return strings.Compare(x.text, y.text)
}

// covers reports whether the budget counts the secret's requests.
func (b *budget) covers(secret string) bool {
	return slices.ContainsFunc(b.secrets, func(p *pattern) bool { return p.text == secret || p.segs != nil && p.match(secret) })
}

// weigh returns what a request costs in the budget.
func (b *budget) weigh(method, path string) int {
	for _, w := range b.weights {
		if w.req.match(method, path) {
			return w.weight
		}
	}
	return b.dflt
}

// bucket returns key's bucket, full when new.
func (st *budgetState) bucket(key string, now func() time.Time) *Limiter {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.byKey[key]
	if l == nil {
		l = newLimiter(float64(st.limit)/st.window.Seconds(), st.limit, now)
		st.byKey[key] = l
	}
	return l
}

// Charge takes a request's weight from every budget that covers the
// secret, on the bucket of its API key (key: the exchange and the key id,
// so two secrets holding one key share it). It returns "" when each had
// the weight, else the name of the first budget that did not, and the
// weight it lacked: the request must then be refused. The budgets before
// that one keep what they took: a refused request counts, which errs on
// the side of the exchange's limit.
func (p *Policy) Charge(secret, key, method, path string) (over string, weight int) {
	for _, b := range p.budgets {
		if !b.covers(secret) {
			continue
		}
		w := b.weigh(method, path)
		if w > 0 && !b.state.bucket(key, p.now).AllowN(w) {
			return b.name, w
		}
	}
	return "", 0
}

// Inherit carries each budget's use over from old, the policy this one
// replaces, where old has a budget of the same name, limit and window:
// a reload must not hand out a fresh budget that the exchange would still
// count as spent. Call it before p serves.
func (p *Policy) Inherit(old *Policy) {
	if old == nil {
		return
	}
	for _, b := range p.budgets {
		for _, ob := range old.budgets {
			if ob.name == b.name && ob.state.limit == b.state.limit && ob.state.window == b.state.window {
				b.state = ob.state
			}
		}
	}
}

// Budgets returns the number of budgets.
func (p *Policy) Budgets() int { return len(p.budgets) }
