package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/store"
)

// RunConfig configures [Run]: the daemon's whole life.
type RunConfig struct {
	// Server configures the server. Run sets its Policy, from PolicyPath,
	// and its Store.
	Server Config
	// Store is the store to serve, opened with its backend.
	Store *store.Store
	// PolicyPath is the policy file, re-read on SIGHUP.
	PolicyPath string
	// Listener is the socket to serve on, from [Listen] or systemd.
	Listener net.Listener
	// Health, if set, is called every HealthInterval to check the
	// backend; status and health report the result, and when the backend
	// answers again after an outage, the versions it could not unwrap
	// meanwhile are loaded.
	Health func(ctx context.Context) error
	// HealthInterval defaults to 5s.
	HealthInterval time.Duration
	// HealthResult, if set, is called with the result of every Health
	// check (nil when the backend is healthy), for a service manager's
	// status and watchdog.
	HealthResult func(err error)
	// ShutdownTimeout bounds how long SIGTERM waits for requests in
	// flight. Default 10s.
	ShutdownTimeout time.Duration
	// ExpiryWarning: once a day, a warning audit event names each secret
	// whose current version stops being served within this window.
	// 0 disables the warnings.
	ExpiryWarning time.Duration
	// Ready, if set, is called once the agent serves, after each reload
	// and when it starts to stop, with a short status line.
	Ready func(event, status string)
}

// Lifecycle events passed to RunConfig.Ready.
const (
	EventReady     = "ready"
	EventReloading = "reloading"
	EventStopping  = "stopping"
)

// Run loads the policy and every secret, serves on cfg.Listener until ctx
// is done, reopens a file audit trail (after logrotate renamed it) and
// reloads policy and store on SIGHUP, and on exit drains
// connections and zeroes every secret. A policy or store that fails to
// load at start is an error; on reload it is logged and the running one
// kept, so the agent never fails open and never drops what it serves.
func Run(ctx context.Context, cfg RunConfig) error {
	log := orDefault(cfg.Server.Logger, slog.New(slog.DiscardHandler))
	notify := cfg.Ready
	if notify == nil {
		notify = func(string, string) {}
	}
	pol, err := policy.Load(cfg.PolicyPath)
	if err != nil {
		return err
	}
	logPolicyWarnings(log, pol)
	// Never load a store half-way through a killed re-wrap or restore.
	if err := cfg.Store.FinishPending(); err != nil {
		log.Warn("could not check the store for an unfinished re-wrap", "err", err)
	}
	sc := cfg.Server
	sc.Policy, sc.Store = pol, cfg.Store
	s, err := New(sc)
	if err != nil {
		return err
	}
	defer s.Close()
	s.importInbox(ctx)
	cache, _, err := LoadCache(ctx, cfg.Store, nil)
	if err != nil {
		return err
	}
	s.reportLoad(nil, cache)
	s.SetCache(cache)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(cfg.Listener) }()
	go every(ctx, time.Minute, func() {
		if _, err := s.prune(nil); err != nil {
			log.Error("pruning retired versions failed", "err", err)
		}
	})
	if cfg.ExpiryWarning > 0 {
		go every(ctx, 24*time.Hour, func() { s.warnExpiring(cfg.ExpiryWarning) })
	}
	if cfg.Health != nil {
		hctx, stopHealth := context.WithCancel(ctx) // ends with Run, not after
		defer stopHealth()
		interval := orDefault(cfg.HealthInterval, 5*time.Second)
		go every(hctx, interval, func() { s.monitor(hctx, cfg.Health, cfg.HealthResult, interval) })
	}
	status := func() string {
		return fmt.Sprintf("serving %d secrets, %d policy rules", s.Secrets(), s.policy.Load().Rules())
	}
	log.Info("agent ready", "socket", cfg.Listener.Addr().String(), "secrets", s.Secrets(), "rules", pol.Rules())
	notify(EventReady, status())

	// A reload runs beside this loop, so that a hung HSM call during one
	// cannot keep SIGTERM from being handled; SIGHUPs that arrive during
	// a reload are folded into one more reload after it.
	reloaded := make(chan struct{})
	reloading, again := false, false
	startReload := func() {
		reloading = true
		notify(EventReloading, "reloading policy and store")
		go func() {
			s.reopenAudit()
			s.reload(ctx, cfg.PolicyPath)
			reloaded <- struct{}{}
		}()
	}
	for {
		select {
		case <-hup:
			if reloading {
				again = true
			} else {
				startReload()
			}
		case <-reloaded:
			reloading = false
			notify(EventReady, status())
			if again {
				again = false
				startReload()
			}
		case err := <-serveErr:
			return fmt.Errorf("agent stopped serving: %w", err)
		case <-ctx.Done():
			notify(EventStopping, "draining connections")
			log.Info("agent stopping")
			sctx, cancel := context.WithTimeout(context.Background(), orDefault(cfg.ShutdownTimeout, 10*time.Second))
			defer cancel()
			if err := s.Shutdown(sctx); err != nil {
				log.Warn("connections did not finish in time; closed them", "err", err)
			}
			if err := <-serveErr; !errors.Is(err, ErrServerClosed) {
				log.Warn("listener ended with an error", "err", err)
			}
			return nil
		}
	}
}

// reopenAudit moves a file audit trail to a new file at its path when
// the file there was renamed (see audit.Log.Reopen); the new file's first
// event, logged as the head, links it to the old one.
func (s *Server) reopenAudit() {
	ok, err := s.audit.Reopen()
	switch {
	case err != nil:
		s.log.Error("the audit log could not be reopened; events go on to the renamed file", "err", err)
	case ok:
		s.log.Info("audit log reopened", "head", s.audit.Head())
	}
}

// reload re-reads the policy and the store, keeping what runs when either
// fails.
func (s *Server) reload(ctx context.Context, policyPath string) {
	pol, err := policy.Load(policyPath)
	s.metrics.Reloaded("policy", err)
	if err != nil {
		s.log.Error("policy reload refused; the running policy stays", "path", policyPath, "err", err)
	} else {
		s.SetPolicy(pol)
		s.log.Info("policy reloaded", "rules", pol.Rules())
		logPolicyWarnings(s.log, pol)
	}
	err = s.reloadStore(ctx)
	s.metrics.Reloaded("store", err)
	if err != nil {
		s.log.Error("store reload failed; the running secrets stay", "err", err)
	} else {
		s.log.Info("store reloaded", "secrets", s.Secrets())
	}
}

// monitor checks the backend once and reports the result; when it
// answers and versions did not load for lack of it, the store is
// reloaded, so that rotations made during an outage are served without a
// restart.
func (s *Server) monitor(ctx context.Context, check func(context.Context) error, report func(error), interval time.Duration) {
	err := s.checkBackend(ctx, check, interval)
	if ctx.Err() != nil {
		return
	}
	if report != nil {
		report(err)
	}
	if err == nil && s.backendFailures() > 0 {
		if rerr := s.reloadStore(ctx); rerr != nil && ctx.Err() == nil {
			s.log.Warn("reloading what the backend could not unwrap failed; retrying at the next check", "err", rerr)
		}
	}
}

func logPolicyWarnings(log *slog.Logger, pol *policy.Policy) {
	for _, w := range pol.ExeWarnings() {
		log.Warn("policy: " + w)
	}
}

// every runs job at once and then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, job func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		job()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
