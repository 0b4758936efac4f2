package main

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestJSONDocumented checks that docs/cli.md lists exactly the fields each
// --json document has: the tables are the contract scripts rely on.
func TestJSONDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for heading, doc := range map[string]any{
		"keyward list --json":         listJSON{},
		"keyward inspect --json":      inspectJSON{},
		"keyward status --json":       statusJSON{},
		"keyward policy check --json": policyCheckJSON{},
		"keyward pcrs --json":         pcrsJSON{},
	} {
		t.Run(heading, func(t *testing.T) {
			documented := documentedFields(t, string(b), heading)
			printed := jsonPaths(reflect.TypeOf(doc), "")
			slices.Sort(documented)
			slices.Sort(printed)
			if !slices.Equal(documented, printed) {
				t.Errorf("docs/cli.md lists %q,\nthe document has %q", documented, printed)
			}
		})
	}
}

var fieldRow = regexp.MustCompile("^\\| `([^`]+)` \\|")

// documentedFields returns the first column of the table under the
// heading "### `HEADING`".
func documentedFields(t *testing.T, doc, heading string) []string {
	_, section, ok := strings.Cut(doc, "### `"+heading+"`\n")
	if !ok {
		t.Fatalf("docs/cli.md has no section ### `%s`", heading)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	var out []string
	for _, line := range strings.Split(section, "\n") {
		if m := fieldRow.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// jsonPaths returns the paths of every field of a document type, with
// "[]" for array elements: secrets, secrets[].name, ...
func jsonPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		out = append(out, path)
		out = append(out, jsonPaths(f.Type, path)...)
	}
	return out
}
