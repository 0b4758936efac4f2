package agent

import "time"

// Metrics receives what the agent counts and the states it is in, for an
// exporter (package agent/metrics implements it for Prometheus). The
// agent calls it as things happen; the exporter keeps the numbers.
//
// Implementations must be safe for concurrent use. Request, AuditDropped,
// Connections and Refused are called on the request path or in the accept
// loop: they must not block, and should not allocate.
type Metrics interface {
	// Request counts an answered request: its operation, its audit
	// decision ("allow", "deny" or "error"), its error code ("" when
	// none), and the time from its frame read to its answer written.
	Request(op, decision, code string, latency time.Duration)
	// AuditDropped counts a request refused over its uid's budget of
	// audited denials: its event is counted in a summary event instead
	// of written.
	AuditDropped()
	// Connections reports the number of open client connections.
	Connections(open int)
	// Refused counts a connection closed at accept, by reason: "per_uid",
	// "rate", "full", "closing" or "credentials".
	Refused(reason string)
	// Reloaded reports a reload on SIGHUP of what ("policy" or "store"),
	// with its error, nil when it worked.
	Reloaded(what string, err error)
	// Secrets reports, whenever the secrets served change, how many there
	// are and, for each whose current version stops being served at a
	// known time (its expiry, or the end of an older version's grace),
	// that time.
	Secrets(loaded int, expires map[string]time.Time)
	// Backend reports a health check of the backend made at at.
	Backend(ok bool, at time.Time)
}

// noMetrics is the Metrics of a Server configured without any.
type noMetrics struct{}

func (noMetrics) Request(string, string, string, time.Duration) {}
func (noMetrics) AuditDropped()                                 {}
func (noMetrics) Connections(int)                               {}
func (noMetrics) Refused(string)                                {}
func (noMetrics) Reloaded(string, error)                        {}
func (noMetrics) Secrets(int, map[string]time.Time)             {}
func (noMetrics) Backend(bool, time.Time)                       {}

// expiries returns when the current version of each secret that has an
// end stops being served, as of now.
func (c *Cache) expiries(now time.Time) map[string]time.Time {
	m := make(map[string]time.Time)
	for name, e := range c.secrets {
		if v, _ := e.current(now); v != nil && !v.until.IsZero() {
			m[name] = v.until
		}
	}
	return m
}
