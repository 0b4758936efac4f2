package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves m on a loopback port, GETs path, and returns the answer's
// status and, for a 200, the metric families parsed with the Prometheus
// text parser.
func scrape(t *testing.T, m *Metrics, path string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, l, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v after its context ended, want nil", err)
		}
	}()
	resp, err := http.Get("http://" + l.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return resp.StatusCode, fams
}

// value returns the value of the series of family name with labels, and
// whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
series:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	queued := 3
	m := New(Config{Version: "1.2.3", Revision: "abc", AuditQueued: func() int { return queued }, Now: func() time.Time { return now }})

	_, fams := scrape(t, m, "/metrics")
	for _, want := range []struct {
		name   string
		labels []string
		v      float64
	}{
		{"keyward_backend_up", nil, 1},
		{"keyward_backend_last_success_timestamp_seconds", nil, 0},
		{"keyward_connections_open", nil, 0},
		{"keyward_secrets_loaded", nil, 0},
		{"keyward_reloads_total", []string{"what", "policy"}, 0},
		{"keyward_reload_failures_total", []string{"what", "store"}, 0},
		{"keyward_audit_events_queued", nil, 3},
		{"keyward_audit_events_dropped_total", nil, 0},
		{"keyward_build_info", []string{"version", "1.2.3", "revision", "abc"}, 1},
	} {
		if v, ok := value(fams, want.name, want.labels...); !ok || v != want.v {
			t.Errorf("before any event, %s%v = %v (present %v), want %v", want.name, want.labels, v, ok, want.v)
		}
	}
	if _, ok := fams["process_open_fds"]; !ok {
		t.Error("no process_* metrics")
	}

	m.Request("get", "allow", "", 40*time.Microsecond)
	m.Request("get", "allow", "", 60*time.Microsecond)
	m.Request("get", "deny", "denied", 30*time.Microsecond)
	m.Request("put", "error", "unavailable", 2*time.Second)
	m.AuditDropped()
	m.Connections(5)
	m.Refused("rate")
	m.Refused("rate")
	m.Reloaded("policy", nil)
	m.Reloaded("store", errors.New("backend down"))
	m.Secrets(2, map[string]time.Time{"binance/mm-prod": now.Add(6 * 24 * time.Hour)})
	m.Backend(true, now.Add(-time.Minute))
	m.Backend(false, now)
	queued = 0

	_, fams = scrape(t, m, "/metrics")
	for _, want := range []struct {
		name   string
		labels []string
		v      float64
	}{
		{"keyward_requests_total", []string{"op", "get", "decision", "allow", "code", "ok"}, 2},
		{"keyward_requests_total", []string{"op", "get", "decision", "deny", "code", "denied"}, 1},
		{"keyward_requests_total", []string{"op", "put", "decision", "error", "code", "unavailable"}, 1},
		{"keyward_request_duration_seconds", []string{"op", "get"}, 3},
		{"keyward_request_duration_seconds", []string{"op", "put"}, 1},
		{"keyward_audit_events_dropped_total", nil, 1},
		{"keyward_connections_open", nil, 5},
		{"keyward_connections_refused_total", []string{"reason", "rate"}, 2},
		{"keyward_reloads_total", []string{"what", "policy"}, 1},
		{"keyward_reloads_total", []string{"what", "store"}, 1},
		{"keyward_reload_failures_total", []string{"what", "policy"}, 0},
		{"keyward_reload_failures_total", []string{"what", "store"}, 1},
		{"keyward_secrets_loaded", nil, 2},
		{"keyward_secret_expiry_seconds", []string{"secret", "binance/mm-prod"}, 6 * 24 * 3600},
		{"keyward_backend_up", nil, 0},
		{"keyward_backend_last_success_timestamp_seconds", nil, float64(now.Add(-time.Minute).Unix())},
		{"keyward_audit_events_queued", nil, 0},
	} {
		if v, ok := value(fams, want.name, want.labels...); !ok || v != want.v {
			t.Errorf("%s%v = %v (present %v), want %v", want.name, want.labels, v, ok, want.v)
		}
	}
	// The put took 2s: it is in the histogram's 2.5s bucket, not in 1s.
	for _, s := range fams["keyward_request_duration_seconds"].Metric {
		if s.Label[0].GetValue() != "put" {
			continue
		}
		for _, b := range s.Histogram.Bucket {
			want := uint64(0)
			if b.GetUpperBound() >= 2 {
				want = 1
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("put latency bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}

	if code, _ := scrape(t, m, "/"); code != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404", code)
	}
}

// TestSeriesBound: operations past maxSeries label sets are counted as
// "other", so that the number of series stays bounded.
func TestSeriesBound(t *testing.T) {
	m := New(Config{})
	for i := range maxSeries + 10 {
		m.Request("op"+string(rune('a'+i%26))+string(rune('a'+i/26)), "allow", "", time.Microsecond)
	}
	_, fams := scrape(t, m, "/metrics")
	if n := len(fams["keyward_requests_total"].Metric); n != maxSeries+1 {
		t.Errorf("%d request series, want %d and one \"other\"", n, maxSeries)
	}
	if v, _ := value(fams, "keyward_requests_total", "op", "other"); v != 10 {
		t.Errorf("requests counted as other = %v, want 10", v)
	}
}

// BenchmarkRequest is the cost Request adds to every request.
func BenchmarkRequest(b *testing.B) {
	m := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("get", "allow", "", 20*time.Microsecond)
		}
	})
}

func BenchmarkRequestSerial(b *testing.B) {
	m := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		m.Request("get", "allow", "", 20*time.Microsecond)
	}
}
