// Package metrics exports what the keyward agent counts to Prometheus
// (github.com/prometheus/client_golang): a [Metrics] receives the agent's
// events and states (it implements agent.Metrics) and serves them over
// HTTP in the Prometheus text format.
//
// # Metrics
//
//	keyward_requests_total{op,decision,code}   counter   requests answered; code "ok" when no error
//	keyward_request_duration_seconds{op}       histogram frame read to answer written
//	keyward_connections_open                   gauge     client connections open
//	keyward_connections_refused_total{reason}  counter   connections closed at accept
//	keyward_secrets_loaded                     gauge     secrets the agent serves
//	keyward_secret_expiry_seconds{secret}      gauge     seconds until the current version stops being served
//	keyward_backend_up                         gauge     1 when the last backend check passed
//	keyward_backend_last_success_timestamp_seconds gauge the last check that passed (0: none yet)
//	keyward_reloads_total{what}                counter   SIGHUP reloads of the policy and of the store
//	keyward_reload_failures_total{what}        counter   those refused; the running one was kept
//	keyward_audit_events_queued                gauge     audit events waiting to be written
//	keyward_audit_events_dropped_total         counter   denials over a uid's audit budget, counted not written
//	keyward_build_info{version,revision}       gauge     1
//
// plus the Go runtime's go_* and the process's process_* metrics.
// docs/metrics.md explains each and gives alert rules.
//
// # Cost
//
// Request is on every request's path: it finds the request's counter and
// histogram in a map under a read lock and adds to them, with no
// allocation. Label values come from the agent, never from a caller, and
// the number of series is bounded (maxSeries): past it, new operations
// are counted as "other".
//
// # Exposure
//
// The metrics name secrets (names are not secret material) and count
// requests, but hold no value, caller or policy detail. The endpoint has
// no authentication: bind it to loopback, where every local user can read
// it, or restrict it with the socket unit's IPAddressAllow=.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxSeries bounds the request counters and the latency histograms each;
// past it, new label sets are counted under the operation "other".
const maxSeries = 512

// Config configures [New]. Every field is optional.
type Config struct {
	// Version and Revision are keyward's, for keyward_build_info.
	Version, Revision string
	// AuditQueued, if set, returns the number of audit events waiting to
	// be written (audit.Log.Queued); it is called at each scrape.
	AuditQueued func() int
	// Now returns the current time, for the seconds until expiry; nil
	// means time.Now.
	Now func() time.Time
}

// Metrics holds the agent's metrics. It is safe for concurrent use.
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	conns        prometheus.Gauge
	refused      *prometheus.CounterVec
	loaded       prometheus.Gauge
	backendUp    prometheus.Gauge
	backendLast  prometheus.Gauge
	reloads      *prometheus.CounterVec
	reloadFails  *prometheus.CounterVec
	auditDropped prometheus.Counter

	mu     sync.RWMutex // guards byReq and byOp
	byReq  map[requestKey]prometheus.Counter
	byOp   map[string]prometheus.Observer
	expiry expiryCollector
}

type requestKey struct{ op, decision, code string }

// latencyBuckets span a get served from memory (tens of microseconds) to
// an administrative request that waits on the HSM (up to seconds).
var latencyBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5,
}

// New returns the agent's metrics, registered with the Go runtime's and
// the process's.
func New(cfg Config) *Metrics {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_requests_total",
			Help: "Requests answered, by operation, audit decision (allow, deny, error) and error code (ok when none).",
		}, []string{"op", "decision", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyward_request_duration_seconds",
			Help:    "Time from a request read to its answer written, by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_connections_open",
			Help: "Client connections open.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_connections_refused_total",
			Help: "Connections closed at accept, by reason (per_uid, rate, full, closing, credentials).",
		}, []string{"reason"}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_secrets_loaded",
			Help: "Secrets (names) the agent holds.",
		}),
		backendUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_backend_up",
			Help: "1 when the last health check of the HSM or TPM passed (or none has run since the store loaded), 0 when it failed.",
		}),
		backendLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_backend_last_success_timestamp_seconds",
			Help: "Unix time of the last backend health check that passed; 0 when none has yet.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_reloads_total",
			Help: "Reloads on SIGHUP (systemctl reload), of the policy and of the store.",
		}, []string{"what"}),
		reloadFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_reload_failures_total",
			Help: "Reloads on SIGHUP that failed; the running policy or secrets were kept.",
		}, []string{"what"}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_audit_events_dropped_total",
			Help: "Denied or malformed requests over their uid's audit budget: not written one by one, counted in a summary audit event.",
		}),
		byReq:  make(map[requestKey]prometheus.Counter),
		byOp:   make(map[string]prometheus.Observer),
		expiry: expiryCollector{now: now},
	}
	m.backendUp.Set(1)
	m.reg.MustRegister(m.requests, m.latency, m.conns, m.refused, m.loaded, m.backendUp, m.backendLast,
		m.reloads, m.reloadFails, m.auditDropped, &m.expiry,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, what := range []string{"policy", "store"} {
		m.reloads.WithLabelValues(what)
		m.reloadFails.WithLabelValues(what)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "keyward_build_info",
		Help:        "Always 1; the labels name the running keyward's version and VCS revision.",
		ConstLabels: prometheus.Labels{"version": cfg.Version, "revision": cfg.Revision},
	})
	build.Set(1)
	m.reg.MustRegister(build)
	if cfg.AuditQueued != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keyward_audit_events_queued",
			Help: "Audit events waiting to be written; serving stops while the queue is full.",
		}, func() float64 { return float64(cfg.AuditQueued()) }))
	}
	return m
}

// Request counts an answered request and observes its latency.
func (m *Metrics) Request(op, decision, code string, latency time.Duration) {
	if code == "" {
		code = "ok"
	}
	k := requestKey{op, decision, code}
	m.mu.RLock()
	c, okC := m.byReq[k]
	h, okH := m.byOp[op]
	m.mu.RUnlock()
	if !okC || !okH {
		c, h = m.series(k)
	}
	c.Inc()
	h.Observe(latency.Seconds())
}

// series returns, creating them, the counter of k and the histogram of
// its operation; past maxSeries, those of the operation "other". The maps
// are keyed by what the agent passed, so each key takes the lock once.
func (m *Metrics) series(k requestKey) (prometheus.Counter, prometheus.Observer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.byReq[k]
	if !ok {
		op := k.op
		if len(m.byReq) >= maxSeries {
			op = "other"
		}
		c = m.requests.WithLabelValues(op, k.decision, k.code)
		m.byReq[k] = c
	}
	h, ok := m.byOp[k.op]
	if !ok {
		op := k.op
		if len(m.byOp) >= maxSeries {
			op = "other"
		}
		h = m.latency.WithLabelValues(op)
		m.byOp[k.op] = h
	}
	return c, h
}

// AuditDropped counts a request whose audit event was counted instead of
// written.
func (m *Metrics) AuditDropped() { m.auditDropped.Inc() }

// Connections sets the number of open connections.
func (m *Metrics) Connections(open int) { m.conns.Set(float64(open)) }

// Refused counts a connection refused at accept.
func (m *Metrics) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// Reloaded counts a SIGHUP reload of what ("policy" or "store").
func (m *Metrics) Reloaded(what string, err error) {
	m.reloads.WithLabelValues(what).Inc()
	if err != nil {
		m.reloadFails.WithLabelValues(what).Inc()
	}
}

// Secrets sets the secrets loaded and when the current version of each
// that expires stops being served.
func (m *Metrics) Secrets(loaded int, expires map[string]time.Time) {
	m.loaded.Set(float64(loaded))
	m.expiry.set(expires)
}

// Backend records a backend health check made at at.
func (m *Metrics) Backend(ok bool, at time.Time) {
	if ok {
		m.backendUp.Set(1)
		m.backendLast.Set(float64(at.UnixNano()) / 1e9)
		return
	}
	m.backendUp.Set(0)
}

// Handler returns the HTTP handler of the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Serve answers GET /metrics on l until ctx is done, then closes l. Every
// other path is 404. It returns nil after ctx is done.
func (m *Metrics) Serve(ctx context.Context, l net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		case <-done:
		}
	}()
	defer close(done)
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// expiryCollector reports, at each scrape, the seconds until each
// secret's current version stops being served.
type expiryCollector struct {
	now     func() time.Time
	mu      sync.Mutex
	expires map[string]time.Time
}

var expiryDesc = prometheus.NewDesc("keyward_secret_expiry_seconds",
	"Seconds until the current version of a secret stops being served (its expiry; negative once past). Only secrets that expire.",
	[]string{"secret"}, nil)

func (e *expiryCollector) set(expires map[string]time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expires = expires
}

// Describe implements [prometheus.Collector].
func (e *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect implements [prometheus.Collector].
func (e *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	for name, t := range e.expires {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, t.Sub(now).Seconds(), name)
	}
}
