package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestInterspersed(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rotate NAME --grace 1h", "rotate --grace 1h -- NAME"},
		{"rotate --grace 1h NAME", "rotate --grace 1h -- NAME"},
		{"rotate NAME --grace=1h --keep-newline", "rotate --grace=1h --keep-newline -- NAME"},
		// A value that begins with '-' is the flag's value.
		{"put NAME --expires -1h", "put --expires -1h -- NAME"},
		// After "--", everything is an argument.
		{"get -- --version", "get -- --version"},
		{"get NAME -- -x --out f", "get -- NAME -x --out f"},
		// Global flags move before the command.
		{"list --config /etc/k.toml --json", "--config /etc/k.toml list --json"},
		{"--pin-stdin init --backend tpm", "--pin-stdin init --backend tpm"},
		// Subcommands.
		{"policy check NAME --uid alice --op admin", "policy check --uid alice --op admin -- NAME"},
		// An unknown flag stays among the flags, for the parser to refuse.
		{"rm NAME --nosuch", "rm --nosuch -- NAME"},
		// Left alone: exec's program, unknown commands, parents.
		{"exec --env A=b prog -v --env x", "exec --env A=b prog -v --env x"},
		{"nosuch a --b", "nosuch a --b"},
		{"policy chek a --uid 0", "policy chek a --uid 0"},
		{"help rotate", "help rotate"},
		{"list", "list"},
	}
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	for _, tt := range tests {
		out, err := interspersed(app, append([]string{"keyward"}, strings.Fields(tt.in)...))
		if err != nil {
			t.Errorf("interspersed(%q): %v", tt.in, err)
			continue
		}
		if got := strings.Join(out[1:], " "); got != tt.want {
			t.Errorf("interspersed(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"list", "rotate", "rm", "render", "prune", "check"}
	for word, want := range map[string]string{
		"lsit": "list", "rotat": "rotate", "chek": "check", "rendr": "render", "xyzzy": "", "r": "rm", "prnue": "prune",
	} {
		if got := suggest(word, cands); got != want {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}

// FuzzInterspersed checks that reordering a command line keeps every word
// (adding at most one "--"), keeps the program name first, and is stable:
// a reordered line reorders to itself.
func FuzzInterspersed(f *testing.F) {
	for _, seed := range []string{
		"rotate NAME --grace 1h", "get -- --version", "list --config /x --json", "--pin-stdin init --backend tpm",
		"policy check NAME --uid alice", "exec --env A=b prog -v", "put NAME --expires", "rm --yes -- a -- b", "--config",
	} {
		f.Add(seed)
	}
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	f.Fuzz(func(t *testing.T, line string) {
		in := append([]string{"keyward"}, strings.Fields(line)...)
		out, err := interspersed(app, slices.Clone(in))
		if err != nil {
			return // a value-taking flag at the end: refused before parsing
		}
		if out[0] != "keyward" {
			t.Fatalf("interspersed(%q)[0] = %q", in, out[0])
		}
		got, want := slices.Clone(out), slices.Clone(in)
		if len(got) == len(want)+1 {
			got = slices.Delete(got, slices.Index(got, "--"), slices.Index(got, "--")+1)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("interspersed(%q) = %q: words lost or added", in, out)
		}
		if again, err := interspersed(app, slices.Clone(out)); err != nil || !slices.Equal(again, out) {
			t.Fatalf("interspersed(%q) = %q, but that reorders to %q, %v", in, out, again, err)
		}
	})
}
