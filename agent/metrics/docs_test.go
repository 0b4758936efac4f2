package metrics

import (
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
