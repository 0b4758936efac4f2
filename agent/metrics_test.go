package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keyward/keyward/agent/metrics"
	"github.com/keyward/keyward/client"
)

// TestMetricsScrape: requests made to a running agent move the counters
// of its Prometheus endpoint, scraped over HTTP and parsed with the
// Prometheus text parser.
func TestMetricsScrape(t *testing.T) {
	m := metrics.New(metrics.Config{Version: "test"})
	ta := startAgent(t, selfPolicy, map[string]string{"binance/mm-prod": "v-mm", "okx/exec": "v-okx"}, agentOpts{metrics: m})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go m.Serve(ctx, l, slog.New(slog.DiscardHandler))
	url := "http://" + l.Addr().String() + "/metrics"

	get := `keyward_requests_total{code="ok",decision="allow",op="get"}`
	denied := `keyward_requests_total{code="denied",decision="deny",op="get"}`
	notFound := `keyward_requests_total{code="not_found",decision="error",op="get"}`
	before := scrapeAgent(t, url)
	if before["keyward_secrets_loaded"] != 2 {
		t.Errorf("keyward_secrets_loaded = %v, want 2", before["keyward_secrets_loaded"])
	}

	c, err := client.Dial(context.Background(), ta.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		s, err := c.Get(context.Background(), "binance/mm-prod")
		if err != nil {
			t.Fatal(err)
		}
		s.Wipe()
	}
	if _, err := c.Get(context.Background(), "coinbase/x"); !errors.Is(err, client.ErrDenied) {
		t.Fatalf("Get(coinbase/x) = %v, want denied", err)
	}
	if _, err := c.Get(context.Background(), "binance/none"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get(binance/none) = %v, want not found", err)
	}
	latency := `keyward_request_duration_seconds_count{op="get"}`
	after := scrapeWhen(t, url, func(m map[string]float64) bool { return m[latency]-before[latency] >= 5 })
	for series, want := range map[string]float64{get: 3, denied: 1, notFound: 1} {
		if d := after[series] - before[series]; d != want {
			t.Errorf("%s moved by %v, want %v", series, d, want)
		}
	}
	if d := after[latency] - before[latency]; d != 5 {
		t.Errorf("get latency observations moved by %v, want 5", d)
	}
	if after["keyward_connections_open"] != 1 {
		t.Errorf("keyward_connections_open = %v with one client connected, want 1", after["keyward_connections_open"])
	}
	c.Close()

	// Denials past the uid's audit budget (a burst of 200) are refused as
	// rate limited, counted in the metrics, and dropped from the trail.
	refused := 0
	for range 300 {
		c, err := client.Dial(context.Background(), ta.socket)
		if err != nil {
			t.Fatal(err)
		}
		for range 300 - refused {
			if _, err := c.Get(context.Background(), "coinbase/x"); errors.Is(err, client.ErrRateLimited) {
				refused++
				break
			} else if !errors.Is(err, client.ErrDenied) {
				t.Fatalf("Get(coinbase/x) = %v, want denied or rate limited", err)
			}
		}
		c.Close()
		if refused >= 3 {
			break
		}
	}
	final := scrapeWhen(t, url, func(m map[string]float64) bool { return m["keyward_audit_events_dropped_total"] >= float64(refused) })
	limited := `keyward_requests_total{code="rate_limited",decision="deny",op="get"}`
	if final[limited] < 3 || final["keyward_audit_events_dropped_total"] != final[limited] {
		t.Errorf("over the audit budget: %s = %v, keyward_audit_events_dropped_total = %v; want equal and at least 3",
			limited, final[limited], final["keyward_audit_events_dropped_total"])
	}
}

// scrapeWhen scrapes url until ready accepts the samples, for at most 10
// seconds: the agent counts a request once it has answered it, so a
// scrape made as soon as the client has its answer can miss it.
func scrapeWhen(t *testing.T, url string, ready func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrapeAgent(t, url)
		if ready(m) || time.Now().After(deadline) {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrapeAgent GETs url and returns every sample, keyed as the text
// format writes it (name{label="value",…}, labels sorted).
func scrapeAgent(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := func(suffix string) string {
				k := name + suffix
				if len(m.Label) > 0 {
					k += "{"
					for i, l := range m.Label {
						if i > 0 {
							k += ","
						}
						k += l.GetName() + `="` + l.GetValue() + `"`
					}
					k += "}"
				}
				return k
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}
