package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/store"
)

// RunConfig configures [Run]: the daemon's whole life.
type RunConfig struct {
	// Server configures the server; its Policy is loaded by Run from
	// PolicyPath and need not be set.
	Server Config
	// Store is the store to serve, opened with its backend.
	Store *store.Store
	// PolicyPath is the policy file, re-read on SIGHUP.
	PolicyPath string
	// Listener is the socket to serve on, from [Listen] or systemd.
	Listener net.Listener
	// Health, if set, is called every HealthInterval to check the
	// backend; status reports the result.
	Health func(ctx context.Context) error
	// HealthInterval defaults to 30s.
	HealthInterval time.Duration
	// HealthResult, if set, is called with the result of every Health
	// check (nil when the backend is healthy): a service manager's
	// watchdog is fed from it, so it stops when the backend does.
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

// Run loads the policy and every secret, serves on cfg.Listener until ctx
// is done, reloads policy and store on SIGHUP, and on exit drains
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
	cache, err := loadCache(ctx, cfg.Store, nil, log)
	if err != nil {
		return err
	}
	sc := cfg.Server
	sc.Policy = pol
	var s *Server
	var storeMu sync.Mutex // one store reload or prune at a time
	reloadStore := func(ctx context.Context) error {
		storeMu.Lock()
		defer storeMu.Unlock()
		cache, err := loadCache(ctx, cfg.Store, s.servedCache(), log)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			cache.Destroy() // the agent is stopping
			return ctx.Err()
		}
		s.SetCache(cache)
		return nil
	}
	sc.Reload = reloadStore
	s, err = New(sc)
	if err != nil {
		cache.Destroy()
		return err
	}
	defer s.Close()
	s.SetCache(cache)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(cfg.Listener) }()
	go pruneEvery(ctx, time.Minute, func() {
		storeMu.Lock()
		pruned, err := cfg.Store.Prune(s.cfg.Now())
		storeMu.Unlock()
		if err != nil {
			log.Error("pruning retired versions failed", "err", err)
		}
		for _, p := range pruned {
			s.audit.LogAttrs(context.Background(), slog.LevelInfo, "decision",
				slog.String("op", "prune"), slog.String("decision", "allow"),
				slog.String("secret", p.Name), slog.Uint64("version", uint64(p.Version)),
				slog.String("reason", "retired at "+p.Retired.UTC().Format(time.RFC3339)+": deleted from the store"))
		}
		if len(pruned) > 0 {
			if err := reloadStore(ctx); err != nil {
				log.Error("store reload after pruning failed", "err", err)
			}
		}
	})
	if cfg.ExpiryWarning > 0 {
		go pruneEvery(ctx, 24*time.Hour, func() { s.warnExpiring(cfg.ExpiryWarning) })
	}
	if cfg.Health != nil {
		hctx, stopHealth := context.WithCancel(ctx) // ends with Run, not after
		defer stopHealth()
		go monitorHealth(hctx, s, cfg.Health, cfg.HealthResult, orDefault(cfg.HealthInterval, 30*time.Second), log)
	}
	status := func() string {
		return fmt.Sprintf("serving %d secrets, %d policy rules", s.Secrets(), s.policy.Load().Rules())
	}
	log.Info("agent ready", "socket", cfg.Listener.Addr().String(), "secrets", s.Secrets(), "rules", pol.Rules())
	notify("ready", status())

	// A reload runs beside this loop, so that a hung HSM call during one
	// cannot keep SIGTERM from being handled; SIGHUPs that arrive during
	// a reload are folded into one more reload after it.
	reloaded := make(chan struct{})
	reloading, again := false, false
	startReload := func() {
		reloading = true
		notify("reloading", "reloading policy and store")
		go func() {
			reload(ctx, s, cfg, log)
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
			notify("ready", status())
			if again {
				again = false
				startReload()
			}
		case err := <-serveErr:
			return fmt.Errorf("agent stopped serving: %w", err)
		case <-ctx.Done():
			notify("stopping", "draining connections")
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

// reload re-reads the policy and the store, keeping what runs when either
// fails.
func reload(ctx context.Context, s *Server, cfg RunConfig, log *slog.Logger) {
	if pol, err := policy.Load(cfg.PolicyPath); err != nil {
		log.Error("policy reload refused; the running policy stays", "path", cfg.PolicyPath, "err", err)
	} else {
		s.SetPolicy(pol)
		log.Info("policy reloaded", "rules", pol.Rules())
		logPolicyWarnings(log, pol)
	}
	if err := s.cfg.Reload(ctx); err != nil {
		log.Error("store reload failed; the running secrets stay", "err", err)
	} else {
		log.Info("store reloaded", "secrets", s.Secrets())
	}
}

func loadCache(ctx context.Context, st *store.Store, prev *Cache, log *slog.Logger) (*Cache, error) {
	cache, skipped, err := LoadCache(ctx, st, prev)
	for _, e := range skipped {
		log.Error("secret not loaded", "err", e)
	}
	return cache, err
}

// pruneEvery runs prune (or any periodic job) at start and then every
// interval until ctx ends.
func pruneEvery(ctx context.Context, every time.Duration, prune func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		prune()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func monitorHealth(ctx context.Context, s *Server, check func(context.Context) error, report func(error),
	every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, every/2)
		err := check(cctx)
		cancel()
		if was := s.healthy.Swap(err == nil); was != (err == nil) {
			if err != nil {
				log.Error("backend unhealthy; serving from memory continues", "err", err)
			} else {
				log.Info("backend healthy again")
			}
		}
		if report != nil && ctx.Err() == nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func logPolicyWarnings(log *slog.Logger, pol *policy.Policy) {
	for _, w := range pol.ExeWarnings() {
		log.Warn("policy: " + w)
	}
}
