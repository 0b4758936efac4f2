package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
)

// The agent matches `exes` against the path the kernel reports for the
// caller's executable (/proc/PID/exe): symbolic links resolved, and the
// file that was exec'd, which for a script is its interpreter.

// ResolveExe returns the path the agent would see for a process running
// the file at path: symbolic links resolved, as the kernel reports it.
// If path cannot be resolved (it does not exist here), it is returned
// cleaned.
func ResolveExe(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if abs, err := filepath.Abs(real); err == nil {
			return abs
		}
	}
	return filepath.Clean(path)
}

// interpreter matches the names of programs that run other programs: an
// exes entry naming one admits every script its users run with it.
var interpreter = regexp.MustCompile(`^(python|pypy|perl|ruby|node|nodejs|deno|bun|java|php|lua|luajit|Rscript|julia|bash|sh|dash|zsh|ksh|fish|tclsh|wish|env|busybox)[0-9.]*$`)

// ExeWarnings returns, for the exes entries of the policy, what an
// operator should know: an entry that is a symbolic link (it never matches,
// since the kernel reports the file it points to) and an entry that names
// an interpreter (it admits every script of the users the rule names).
// The checks read the local file system, so they are warnings for
// `keyward policy check` and the agent's log, not load errors.
func (p *Policy) ExeWarnings() []string {
	var out []string
	for _, r := range p.rules {
		for _, e := range r.exes {
			if real := ResolveExe(e); real != e {
				out = append(out, fmt.Sprintf("rule %s: exes entry %s is a symbolic link to %s and never matches: "+
					"the agent sees the resolved path; write %s", r.name, e, real, real))
			}
			if interpreter.MatchString(filepath.Base(e)) {
				out = append(out, fmt.Sprintf("rule %s: exes entry %s is an interpreter: it admits every script its users run with it; "+
					"prefer a unit or a dedicated user (docs/attestation.md)", r.name, e))
			}
		}
	}
	return out
}
