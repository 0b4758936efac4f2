package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestDocsCommandLines checks every `keyward COMMAND … --flag` written in
// README.md and docs/*.md: operators run these lines as written, so the
// command, its subcommand and each flag must exist. A line is read from
// the command to the first shell separator, comment or end of code span.
func TestDocsCommandLines(t *testing.T) {
	app := newApp(nil, io.Discard, io.Discard)
	global := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			global[n] = true
		}
	}
	global["help"], global["version"] = true, true
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	start := regexp.MustCompile(`\bkeyward ([a-z][a-z-]*)\b`)
	end := regexp.MustCompile("[|;`#<>]|&&|\\$\\(| -- |\\)")
	flag := regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range start.FindAllStringSubmatchIndex(line, -1) {
				name := line[m[2]:m[3]]
				cmd := app.Command(name)
				if cmd == nil {
					continue // prose: "keyward serve", "keyward is installed"
				}
				rest := line[m[1]:]
				if loc := end.FindStringIndex(rest); loc != nil {
					rest = rest[:loc[0]]
				}
				if words := strings.Fields(rest); len(words) > 0 {
					if sub := cmd.Command(words[0]); sub != nil {
						cmd, name = sub, name+" "+words[0]
					}
				}
				for _, f := range flag.FindAllStringSubmatch(rest, -1) {
					checked++
					if !global[f[1]] && !hasFlag(cmd, f[1]) {
						t.Errorf("%s:%d: keyward %s has no flag --%s: %s", filepath.Base(file), i+1, name, f[1], strings.TrimSpace(line))
					}
				}
			}
		}
	}
	t.Logf("%d flags checked", checked)
	if checked < 100 {
		t.Errorf("checked only %d flags in the docs: the parsing is broken", checked)
	}
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}
