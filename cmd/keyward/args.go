package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsEndAtFirstArg names the commands whose arguments are another
// program's command line: their flags end at the first argument, as the
// flag package has it, so that `keyward exec --env A=x prog -v` passes -v
// to prog.
var flagsEndAtFirstArg = map[string]bool{"exec": true}

// interspersed rewrites a command line so that flags may come after the
// arguments, as the README writes them (`keyward rotate NAME --grace 1h`):
// urfave/cli v2, like the flag package, stops at a command's first
// argument. The command's flags go first, then "--", then the arguments
// in their order; a global flag written after the command moves before
// it. A flag that takes a value takes the next word, even one that begins
// with '-'; one that ends the line without its value is a usage error.
// Everything after a "--" the operator wrote is an argument. A word that
// is no flag of the command stays among the flags, for the parser to
// refuse by name. Command lines that name no command, or a command that
// has subcommands, are left alone.
func interspersed(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	n := leadingFlags(app.Flags, args[1:])
	pre, rest := args[:1+n], args[1+n:]
	var cmd *cli.Command
	var path []string
	for cmds := app.Commands; len(rest) > 0; rest = rest[1:] {
		c := findCommand(cmds, rest[0])
		if c == nil {
			break
		}
		cmd, cmds, path = c, c.Subcommands, append(path, rest[0])
	}
	if cmd == nil || len(cmd.Subcommands) > 0 || flagsEndAtFirstArg[cmd.Name] {
		return args, nil
	}
	own := append([]cli.Flag{cli.HelpFlag}, cmd.Flags...)
	var flags, globals, positional []string
	dashes := false // the operator wrote "--"
	for i := 0; i < len(rest); i++ {
		w := rest[i]
		if w == "--" {
			positional, dashes = append(positional, rest[i+1:]...), true
			break
		}
		if !isFlagWord(w) {
			positional = append(positional, w)
			continue
		}
		dst := &flags
		f := lookupFlag(own, w)
		if f == nil {
			if f = lookupFlag(app.Flags, w); f != nil {
				dst = &globals
			}
		}
		*dst = append(*dst, w)
		if f != nil && takesValue(f) && !strings.Contains(w, "=") {
			if i+1 == len(rest) {
				return nil, usagef("flag needs an argument: %s", w)
			}
			i++
			*dst = append(*dst, rest[i])
		}
	}
	out := make([]string, 0, len(args)+1)
	out = append(out, pre...)
	out = append(out, globals...)
	out = append(out, path...)
	out = append(out, flags...)
	if len(positional) > 0 || dashes {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out, nil
}

// leadingFlags returns how many words at the start of args are flags
// among fs, with their values.
func leadingFlags(fs []cli.Flag, args []string) int {
	i := 0
	for i < len(args) && isFlagWord(args[i]) && args[i] != "--" {
		f := lookupFlag(fs, args[i])
		if f == nil {
			return i
		}
		i++
		if takesValue(f) && !strings.Contains(args[i-1], "=") {
			i++
		}
	}
	return min(i, len(args))
}

func isFlagWord(w string) bool { return len(w) > 1 && w[0] == '-' }

// lookupFlag returns the flag of fs that the word -name, --name or
// --name=value names, or nil.
func lookupFlag(fs []cli.Flag, word string) cli.Flag {
	name := strings.TrimLeft(word, "-")
	name, _, _ = strings.Cut(name, "=")
	for _, f := range fs {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	v, ok := f.(interface{ TakesValue() bool })
	return ok && v.TakesValue()
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// suggest returns the candidate closest to word when it is close enough
// to be a likely typo (an edit distance of at most a third of its length,
// and at least 1), or "".
func suggest(word string, candidates []string) string {
	best, bestD := "", max(1, len(word)/3)+1
	for _, c := range candidates {
		if d := editDistance(word, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// commandNames returns the names and aliases of cmds.
func commandNames(cmds []*cli.Command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.Names()...)
	}
	return out
}
