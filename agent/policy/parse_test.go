package policy

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ruleTable returns a valid [[rule]] table named name with extra lines added
// and the lines starting with any of drop removed.
func ruleTable(name string, extra string, drop ...string) string {
	lines := []string{
		"[[rule]]",
		`name = "` + name + `"`,
		`secrets = ["binance/*"]`,
		`users = ["1001"]`,
		`allow = ["get"]`,
	}
	var out []string
	for _, l := range lines {
		keep := true
		for _, d := range drop {
			keep = keep && !strings.HasPrefix(l, d+" ")
		}
		if keep {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n" + extra + "\n"
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		index int    // rule the error names, 0 for none
		rule  string // its name
		want  string // in the message
	}{
		{"unknown key", ruleTable("r", `usres = ["x"]`), 1, "r", `unknown key "usres"`},
		{"missing name", ruleTable("r", "", "name"), 1, "", "name is missing"},
		{"bad name", ruleTable("MM", ""), 1, "MM", `name "MM" is not`},
		{"missing secrets", ruleTable("r", "", "secrets"), 1, "r", "secrets is missing or empty"},
		{"empty secrets", ruleTable("r", "secrets = []", "secrets"), 1, "r", "secrets is missing or empty"},
		{"missing allow", ruleTable("r", "", "allow"), 1, "r", "allow is missing or empty"},
		{"duplicate name", ruleTable("a", "") + ruleTable("r", "") + ruleTable("r", ""), 3, "r", `name "r" is already used by rule 2`},
		{"no caller selector", ruleTable("r", "", "users"), 1, "r", "no caller selector"},
		{"empty users", ruleTable("r", "users = []", "users") + `groups = ["1"]`, 1, "r", "users is empty"},
		{"unknown op", ruleTable("r", `allow = ["read"]`, "allow"), 1, "r", `unknown operation "read"`},
		{"unknown user", ruleTable("r", `users = ["keyward-no-such-user"]`, "users"), 1, "r", `unknown user "keyward-no-such-user"`},
		{"unknown group", ruleTable("r", `groups = ["keyward-no-such-group"]`), 1, "r", `unknown group "keyward-no-such-group"`},
		{"uid out of range", ruleTable("r", `users = ["4294967296"]`, "users"), 1, "r", "out of range"},
		{"uid -1", ruleTable("r", `users = ["4294967295"]`, "users"), 1, "r", "out of range"},
		{"relative exe", ruleTable("r", `exes = ["bin/mm"]`), 1, "r", `exes: "bin/mm" is not an absolute path`},
		{"short sha256", ruleTable("r", `exe_sha256 = ["abcd"]`), 1, "r", `exe_sha256: "abcd" is not 64 hex digits`},
		{"long sha256", ruleTable("r", `exe_sha256 = ["`+strings.Repeat("a", 66)+`"]`), 1, "r", "is not 64 hex digits"},
		{"bad sha256 hex", ruleTable("r", `exe_sha256 = ["`+strings.Repeat("g", 64)+`"]`), 1, "r", "is not 64 hex digits"},
		{"unit without type", ruleTable("r", `units = ["mm-prod"]`), 1, "r", `units: "mm-prod" is not a service or scope`},
		{"burst without rate", ruleTable("r", "burst = 5"), 1, "r", "burst needs rate"},
		{"negative rate", ruleTable("r", "rate = -1.0"), 1, "r", "rate is -1"},
		{"zero rate", ruleTable("r", "rate = 0"), 1, "r", "rate is 0"},
		{"nan rate", ruleTable("r", "rate = nan"), 1, "r", "rate is NaN"},
		{"inf rate", ruleTable("r", "rate = inf"), 1, "r", "rate is +Inf"},
		{"zero burst", ruleTable("r", "rate = 1.0\nburst = 0"), 1, "r", "burst is 0"},
		{"bad glob", ruleTable("r", `secrets = ["binance/[a-"]`, "secrets"), 1, "r", `pattern "binance/[a-"`},
		{"misplaced **", ruleTable("r", `secrets = ["**/mm"]`, "secrets"), 1, "r", "** may only be the last segment"},
		{"invalid exact name", ruleTable("r", `secrets = ["../etc"]`, "secrets"), 1, "r", `invalid secret name "../etc"`},
		{"wrong type", ruleTable("r", `users = "trader"`, "users"), 1, "r", "incompatible types"},
		{"not a table", `rule = [1]`, 1, "", "is not a table"},
		{"second rule", ruleTable("a", "") + ruleTable("b", `allow = ["get", "write"]`, "allow"), 2, "b", `unknown operation "write"`},
		{"unknown top-level key", "rules = 1\n" + ruleTable("a", ""), 0, "", `unknown key "rules"`},
		{"table instead of array", "[rule]\nname = \"a\"\n", 0, "", "write each rule as [[rule]]"},
		{"syntax", "[[rule]\n", 0, "", "toml: line"},
		{"too large", strings.Repeat("#", MaxSize+1), 0, "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse(%q) = %d rules, want an error", tt.src, p.Rules())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want %q in it", tt.src, err, tt.want)
			}
			var re *RuleError
			switch {
			case !errors.As(err, &re):
				if tt.index != 0 {
					t.Errorf("Parse(%q) = %v, want a *RuleError for rule %d", tt.src, err, tt.index)
				}
			case re.Index != tt.index || re.Name != tt.rule:
				t.Errorf("Parse(%q) = %v, want rule %d %q", tt.src, err, tt.index, tt.rule)
			}
		})
	}
}

func TestParseBadPattern(t *testing.T) {
	_, err := Parse([]byte(ruleTable("r", `secrets = ["a/["]`, "secrets")))
	if !errors.Is(err, path.ErrBadPattern) {
		t.Errorf("Parse(bad glob) = %v, want path.ErrBadPattern", err)
	}
}

func TestParse(t *testing.T) {
	src := `
# An empty policy would deny everything; this one has two rules.
[[rule]]
name       = "mm-prod"
secrets    = ["binance/*", "okx/mm", "okx/mm", "venues/**"]
users      = ["root", "1001"]
groups     = ["root", "2000"]
exes       = ["/opt/mm//bin/./mm"]
exe_sha256 = ["` + strings.Repeat("aB", 32) + `"]
units      = ["mm-prod.service", "run-u7.scope", "mm@1.service"]
allow      = ["get", "list", "get"]
rate       = 200
burst      = 50

[[rule]]
name  = "ops"
secrets = ["*", "*/**"]
groups = ["0"]
allow = ["admin"]
`
	if _, err := user.Lookup("root"); err != nil {
		t.Skipf("no root user to resolve: %v", err)
	}
	p := mustParse(t, src)
	if p.Rules() != 2 {
		t.Fatalf("Rules() = %d, want 2", p.Rules())
	}
	r := p.rules[0]
	if r.users[0] != 0 || r.groups[0] != 0 || r.users[1] != 1001 {
		t.Errorf("users, groups = %v, %v, want [0 1001], [0 2000]", r.users, r.groups)
	}
	if r.exes[0] != "/opt/mm/bin/mm" {
		t.Errorf("exes = %q, want cleaned /opt/mm/bin/mm", r.exes)
	}
	if r.sums[0][0] != 0xab {
		t.Errorf("exe_sha256 = %x, want abab…", r.sums[0])
	}
	if r.limits.rate != 200 || r.limits.burst != 50 {
		t.Errorf("rate, burst = %v, %v, want 200, 50", r.limits.rate, r.limits.burst)
	}
	if r.ops != 1<<OpGet|1<<OpList || len(r.allow) != 2 {
		t.Errorf("ops = %b, allow = %q, want get, list", r.ops, r.allow)
	}
	if empty := mustParse(t, "# nothing\n"); empty.Rules() != 0 {
		t.Errorf("Rules() = %d, want 0", empty.Rules())
	}
}

// writePolicy writes src to a policy file with the given modes.
func writePolicy(t *testing.T, src string, dirMode, fileMode os.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keyward")
	name := filepath.Join(dir, "policy.toml")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, fileMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLoad(t *testing.T) {
	good := ruleTable("r", "")
	tests := []struct {
		name     string
		src      string
		dirMode  os.FileMode
		fileMode os.FileMode
		want     string // in the error; "" for success
	}{
		{"ok", good, 0o755, 0o644, ""},
		{"ok private", good, 0o700, 0o600, ""},
		{"group writable", good, 0o755, 0o664, "chmod go-w"},
		{"world writable", good, 0o755, 0o646, "writable by group or others"},
		{"group writable dir", good, 0o775, 0o644, "directory"},
		{"invalid", ruleTable("r", "", "allow"), 0o755, 0o644, "policy.toml: rule 1"},
		{"too large", strings.Repeat("#", MaxSize+1), 0o755, 0o644, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := writePolicy(t, tt.src, tt.dirMode, tt.fileMode)
			p, err := Load(name)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Load(%s) = %v, want success", tt.name, err)
			case tt.want == "" && p.Rules() != 1:
				t.Errorf("Load(%s).Rules() = %d, want 1", tt.name, p.Rules())
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Load(%s) = %v, want an error with %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(directory) = %v, want not a regular file", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(fifo) = %v, want not a regular file", err)
	}
	if os.Geteuid() == 0 {
		name := writePolicy(t, ruleTable("r", ""), 0o755, 0o644)
		if err := os.Chown(name, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(name); err == nil || !strings.Contains(err.Error(), "chown root") {
			t.Errorf("Load(owned by uid 12345) = %v, want chown root", err)
		}
	}
}
