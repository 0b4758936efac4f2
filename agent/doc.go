// Package agent is the keyward daemon: it serves secrets from memory over
// a Unix socket to the local processes its policy names, after checking
// who is on the other end with the kernel's peer credentials, audits every
// decision, and does the store's administration with the backend session
// it holds. [Run] is its whole life; [Server] is the part that serves.
//
// # The request path
//
//	Serve (server.go)            accept loop
//	  accept, admit (admit.go)   SO_PEERCRED uid; per-uid cap and connect rate;
//	                             fair eviction when every slot is taken — before any /proc work
//	  conn.serve (conn.go)       one goroutine per connection: peer.Attest, then frames
//	    frameReader, arm         idle and frame deadlines
//	    handle                   Hello first; parse; peer.Verify before every answer
//	      authorize              name rule, policy.Decide, rule rate limit — one step for all
//	      get, list (conn.go)    from the Cache, under Server.mu read lock
//	      sign (sign.go)         gate on sign, the credential, exchange.Parse, policy.DecideSign,
//	                             rate, policy.Charge (per-key budgets), a nonce (nonce.go), SignTo
//	      hmac, describe         MAC with a secret; a credential's public attributes
//	      health (health.go)     the backend's state and the secrets not served fresh
//	      watch (watch.go)       subscribe; Changed frames on another goroutine
//	      reload, put, remove,   administration: store writes under storeMu, then a reload,
//	      prune (admin.go)       answered once the change is served
//	    denial budget            countsAsDenial (audit.go) spends budgets (budget.go, denials.go)
//	    answer, then audit       the event is emitted after the answer is written
//
// # The cache
//
// A [Cache] (cache.go) holds every servable version in locked memory and is
// immutable: [LoadCache] builds a new one from the store's metadata
// (store.Secrets) and [Server.SetCache] swaps it in, destroys the old one
// once no request copies from it, and tells watchers what changed. A
// reload keeps, from the cache being served, what no longer loads (a
// backend that does not answer, a file damaged since) and does not decrypt
// again what did not change. Each entry remembers why a version did not
// load, which decides the answer: the newest version held within its
// grace, unavailable, or internal for a damaged envelope (cacheEntry.current).
//
// # The audit trail
//
// Every request records one audit.Event while it is handled (audit.go) and
// emits it through the connection's audit.Source after the answer. The
// agent's own acts — prune, expiry warnings, backend outages and
// recoveries, versions that do not load, denial-budget reports — go through
// Server.systemEvent. Package audit formats and writes them off the
// request path, in batches.
//
// # Health and reloads (run.go, health.go)
//
// Run checks the backend every few seconds (Server.monitor): a change of
// state is logged and audited once; when the backend answers again and
// versions did not load for lack of it, the store is reloaded, so that a
// rotation made during an outage is served without a restart. SIGHUP
// reopens a file audit trail that logrotate renamed, and reloads the
// policy and the store, beside the signal loop, so that a hung
// backend call cannot keep SIGTERM from being handled; a policy or store
// that fails to reload is logged and the running one kept. Before the
// store is read, at start and at every reload (SIGHUP, a Reload request,
// the backend coming back), the bundles delivered to the fleet inbox are
// imported (Config.Import, inbox.go): a rotation shipped by a provisioner
// is served without a restart.
//
// # Metrics (metrics.go)
//
// A [Metrics] given in [Config] is told what the agent does as it happens:
// each request as its audit event is emitted (operation, decision, code,
// latency), connections opened, closed and refused at accept, SIGHUP
// reloads, the secrets served and when each stops being served after
// every cache swap, and every backend check. Package agent/metrics
// implements it for Prometheus; the agent imports no exporter.
//
// # Shutdown
//
// [Server.Shutdown] cancels work done for connections (the stop context of
// the administrative requests), closes the listeners, lets requests in
// flight finish, ends idle connections, and after its context expires
// closes the rest and abandons any still stuck in a system call.
// [Server.Close] then zeroes every secret. The caller closes the audit Log
// last.
//
// # Files
//
//	server.go   Config, Server, New, Serve, Shutdown, Close, Harden
//	admit.go    admission by uid at accept
//	conn.go     one connection: read loop, deadlines, dispatch, get and list
//	authorize.go the one authorization step: name, decision, rate; refusing an allowed request
//	admin.go    reload, put, remove, prune; store reloads and writes
//	sign.go     Sign, HMAC, Describe, PutCredential; credentials in the cache
//	nonce.go    exchange nonces per API key, kept growing across restarts by marks in the store
//	health.go   backend state; the Health answer
//	watch.go    Watch and Changed
//	cache.go    Cache, LoadCache, what failed to load and why
//	audit.go    a request's audit event, and its count in the metrics
//	metrics.go  Metrics: what the agent reports to an exporter
//	budget.go   per-uid token buckets; denials.go: the audit budget
//	run.go      Run: load, serve, signals, prune, expiry warnings, health
//	listen.go   Listen: the agent's own socket, made safely
//	inbox.go    the fleet inbox imported before the store is read
//
// Subpackages: wire (the protocol), peer (who is asking), policy (who may
// do what), audit (the trail), exchange (the signing schemes), metrics
// (the Prometheus endpoint).
package agent
