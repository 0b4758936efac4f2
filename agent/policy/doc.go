// Package policy decides which local processes may do what with which
// secrets. The operator writes the policy as a TOML file of [[rule]] tables
// (default [DefaultPath]); docs/policy.md in this repository describes the
// format with examples.
//
// # Model
//
// The policy denies by default. A request (a [Caller], an [Op] and a secret
// name) is allowed if and only if some rule matches the secret name, matches
// the caller and grants the operation. Within a rule every selector given
// must match; within one selector's list any entry may. The first such rule
// in file order decides: its name is reported in the [Decision] and its rate
// limit applies. Root is a caller like any other: it gets nothing unless a
// rule names it, and a rule that names it gets no more than it says.
//
// Every rule needs at least one caller selector (users, groups, exes,
// exe_sha256, units), so no rule can match every process. User and group
// names are resolved to ids when the policy is parsed; an unknown name makes
// the whole policy invalid.
//
// # Signing
//
// A rule that grants [OpSign] must name what it may sign: requests
// (METHOD /path patterns), and optionally hosts, parameter names and
// symbols (scope.go). The agent asks [Policy.Decide] for OpSign before it
// reads the credential (may this caller sign anything with it?), then
// [Policy.DecideSign] with the parsed request. A fund-movement parameter
// passes only a rule whose params names it. [[budget]] tables (budget.go)
// give each API key a request weight per window, shared by every caller;
// [Policy.Charge] takes a request's weight, and [Policy.Inherit] carries
// what was spent across a reload.
//
// # Failing closed
//
// [Parse] and [Load] refuse the whole file on any error: an unknown key, a
// bad pattern, an unknown user. A caller whose executable hash cannot be
// computed matches no exe_sha256 selector. An invalid secret name or an
// unknown operation is denied. [Load] refuses a file that anyone but root or
// the agent's own user can write.
//
// # Patterns
//
// A rule's secrets are exact names or [path.Match] patterns matched segment
// by segment, so '*' and '?' never match '/'. A pattern ending in "/**"
// matches every name below its prefix at any depth: "binance/**" matches
// "binance/a" and "binance/a/b" but not "binance". "**" anywhere else is an
// error.
//
// # Rate limits
//
// A rule with a rate gives each caller uid its own [Limiter], owned by the
// [Policy], so a reloaded policy starts with full buckets. At most 65536
// limiters exist per policy; beyond that, new callers of a rule share one.
// [Policy.Decide] only hands the limiter out: the agent calls
// [Limiter.Allow].
//
// # Concurrency
//
// A [Policy] is immutable once parsed (its limiters aside) and safe for
// concurrent use. Decide does not allocate when it allows a request.
package policy
