package metrics

import (
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
)

// alertRules returns the YAML block under "## Alert rules" in
// docs/metrics.md.
func alertRules(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Alert rules\n")
	if !ok {
		t.Fatal("docs/metrics.md has no section \"Alert rules\"")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("the alert rules section has no yaml block")
	}
	rules, _, ok := strings.Cut(block, "```")
	if !ok {
		t.Fatal("the alert rules block is not closed")
	}
	return rules
}

// fullScrape drives every metric once and returns a scrape.
func fullScrape(t *testing.T) []byte {
	t.Helper()
	m := New(Config{Version: "test", Revision: "test", AuditQueued: func() int { return 0 }})
	m.Request("get", "allow", "", time.Millisecond)
	m.AuditDropped()
	m.Connections(1)
	m.Refused("rate")
	m.Reloaded("policy", nil)
	m.Secrets(1, map[string]time.Time{"binance/mm-prod": time.Now().Add(time.Hour)})
	m.Backend(true, time.Now())
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return body
}

// TestAlertRules checks the example rules of docs/metrics.md with
// promtool, and that every keyward metric they name is served.
func TestAlertRules(t *testing.T) {
	rules := alertRules(t)
	scrape := string(fullScrape(t))
	for _, name := range regexp.MustCompile(`keyward_[a-z_]+`).FindAllString(rules, -1) {
		if !strings.Contains(scrape, "\n"+name) {
			t.Errorf("the alert rules name %s, which the agent does not serve", name)
		}
	}
	promtool := testenv.Require(t, "promtool")
	file := filepath.Join(t.TempDir(), "keyward.rules.yml")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestMetricsLint runs promtool check metrics (Prometheus' naming and
// help conventions) on a scrape.
func TestMetricsLint(t *testing.T) {
	promtool := testenv.Require(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(fullScrape(t))
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// The Go runtime's own metrics are client_golang's; only ours are
		// this project's to fix.
		if strings.HasPrefix(line, "keyward_") {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 || err != nil && len(out) == 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

// TestMetricsDocumented checks the table under "## Metrics" in
// docs/metrics.md against a scrape: a row for every keyward metric served,
// none for one that is not, each with the metric's type and labels.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(keyward_[a-z_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	type metric struct{ typ, labels string }
	documented := map[string]metric{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		labels := strings.Fields(strings.NewReplacer("`", "", ",", "").Replace(m[3]))
		slices.Sort(labels)
		documented[m[1]] = metric{m[2], strings.Join(labels, ",")}
	}
	served := map[string]metric{}
	scrape := string(fullScrape(t))
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (keyward_[a-z_]+) ([a-z]+)$`).FindAllStringSubmatch(scrape, -1) {
		served[m[1]] = metric{typ: m[2]}
	}
	for _, m := range regexp.MustCompile(`(?m)^(keyward_[a-z_]+)\{([^}]*)\}`).FindAllStringSubmatch(scrape, -1) {
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")
		var labels []string
		for _, pair := range regexp.MustCompile(`([a-z_]+)="`).FindAllStringSubmatch(m[2], -1) {
			if pair[1] != "le" {
				labels = append(labels, pair[1])
			}
		}
		slices.Sort(labels)
		if s, ok := served[name]; ok && s.labels == "" {
			s.labels = strings.Join(labels, ",")
			served[name] = s
		}
	}
	if len(served) < 10 {
		t.Fatalf("the scrape serves only %d keyward metrics:\n%s", len(served), scrape)
	}
	for name, s := range served {
		d, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("docs/metrics.md has no row for %s", name)
		case d != s:
			t.Errorf("docs/metrics.md: %s is a %s with labels %q; the agent serves a %s with labels %q", name, d.typ, d.labels, s.typ, s.labels)
		}
	}
	for name := range documented {
		if _, ok := served[name]; !ok {
			t.Errorf("docs/metrics.md lists %s, which the agent does not serve", name)
		}
	}
}
