package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/metrics"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/systemd"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the agent: load every secret and serve it to the callers policy names",
		Description: "serve makes the process non-dumpable, unwraps every secret into locked memory, and\n" +
			"listens on agent.socket, or on the socket systemd passes (keyward.socket). SIGHUP reloads\n" +
			"policy and store and reopens a file audit log (for logrotate); SIGTERM or SIGINT drains connections, zeroes the secrets and exits 0.\n" +
			"Under systemd it reports READY/RELOADING/STOPPING, feeds the watchdog after every backend\n" +
			"check that completes (whether or not the backend answered), and logs to the journal (audit events as keyward-audit).",
		Action: func(c *cli.Context) error {
			cfg, err := configNoArgs(c)
			if err != nil {
				return err
			}
			if err := agent.Harden(); err != nil {
				return err
			}
			journal := systemd.JournalStream()
			log, err := newLogger(c.App.ErrWriter, cfg.Agent.LogLevel, journal)
			if err != nil {
				return err
			}
			trail, err := audit.Open(audit.Config{Path: cfg.Agent.AuditLog, Stderr: c.App.ErrWriter, Journal: journal,
				OnError: func(err error) {
					log.Error("audit events cannot be written; they are kept and retried, and serving stops when 16 MiB are waiting", "err", err)
				}})
			if err != nil {
				return err
			}
			defer func() {
				// The head, in the operational log, is what verify --head checks later.
				if err := trail.Close(10 * time.Second); err != nil {
					log.Error("audit events were not all written", "err", err)
				} else if h := trail.Head(); h.Seq != 0 {
					log.Info("audit trail closed", "head", h)
				}
			}()
			mode, err := cfg.Agent.Mode()
			if err != nil {
				return err
			}
			gid, err := lookupGroup(cfg.Agent.SocketGroup)
			if err != nil {
				return err
			}
			notify, err := systemd.NewNotifier(log)
			if err != nil {
				return err
			}
			// The socket first: with socket activation, clients already
			// wait in its backlog while the store loads.
			socks, err := systemd.Listeners(func() (net.Listener, error) {
				l, err := agent.Listen(agent.ListenConfig{Path: cfg.Agent.Socket, Mode: mode, GID: gid})
				if err != nil {
					return nil, err // not a nil *UnixListener in a non-nil interface
				}
				return l, nil
			})
			if err != nil {
				return err
			}
			l := socks.Agent
			defer l.Close()
			if socks.Activated {
				log.Info("using the socket systemd passed", "socket", l.Addr().String())
				if addr := l.Addr().String(); addr != cfg.Agent.Socket {
					log.Warn("the socket systemd passed is not agent.socket; clients use the configured path unless told otherwise",
						"passed", addr, "agent.socket", cfg.Agent.Socket)
				}
			}
			ml, err := metricsListener(socks, cfg.Agent.MetricsAddress)
			if err != nil {
				return err
			}
			if ml != nil {
				defer ml.Close()
			}
			st, b, err := openStore(c, cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			// Keys put before the host was given its fleet kit are
			// sealed to it before serving (docs/recovery.md).
			if n, err := st.AdoptFleetKit(c.Context); err != nil {
				return err
			} else if n > 0 {
				log.Info("sealed data keys to the fleet recovery kit", "keys", n, "kit", cfg.Recovery.FleetKit)
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			importInbox, err := fleetImporter(ctx, cfg, func() (config.Config, error) { return loadConfig(c) }, st, log)
			if err != nil {
				return err
			}
			var m agent.Metrics
			if ml != nil {
				m = serveMetrics(ctx, ml, trail, log)
			}
			return agent.Run(ctx, agent.RunConfig{
				Server: agent.Config{
					Backend:      cfg.Backend,
					Agent:        "keyward " + Version,
					Logger:       log,
					Audit:        trail,
					MaxConns:     cfg.Agent.MaxConnections,
					FrameTimeout: cfg.Agent.FrameTimeout.Duration,
					IdleTimeout:  cfg.Agent.IdleTimeout.Duration,
					Import:       importInbox,
					Metrics:      m,
				},
				Store:          st,
				PolicyPath:     cfg.Agent.Policy,
				Listener:       l,
				Health:         b.Healthy,
				HealthInterval: notify.HealthInterval(5 * time.Second),
				HealthResult:   notify.Health,
				ExpiryWarning:  cfg.Store.ExpiryWarning.Duration,
				Ready:          notify.Event,
			})
		},
	}
}

// serveMetrics serves the agent's Prometheus metrics on l until ctx is
// done, and returns them for the agent to count into.
func serveMetrics(ctx context.Context, l net.Listener, trail *audit.Log, log *slog.Logger) agent.Metrics {
	m := metrics.New(metrics.Config{Version: Version, Revision: revision(), AuditQueued: trail.Queued})
	go func() {
		if err := m.Serve(ctx, l, log); err != nil {
			log.Error("the metrics endpoint stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	log.Info("serving metrics", "addr", l.Addr().String())
	return m
}

// metricsListener returns the metrics endpoint's socket: the one systemd
// passed (keyward-metrics.socket), else one on agent.metrics_address, else
// nil: no metrics.
func metricsListener(socks systemd.Sockets, addr string) (net.Listener, error) {
	if socks.Metrics != nil || addr == "" {
		return socks.Metrics, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent.metrics_address: %w; under systemd, enable keyward-metrics.socket instead (docs/metrics.md)", err)
	}
	return l, nil
}

// newLogger returns the operational log: JSON on w, or, when stderr is a
// journal stream (under systemd), journal entries with structured fields
// and SYSLOG_IDENTIFIER=keyward.
func newLogger(w io.Writer, level string, journal bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: l}
	if journal {
		return slog.New(systemd.NewJournalHandler(systemd.LogIdentifier, w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// lookupGroup resolves a group name or number; "" means -1, no change.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("agent.socket_group %q: %w; create the group or fix the setting", name, err)
	}
	return strconv.Atoi(g.Gid)
}

var socketFlag = &cli.StringFlag{
	Name:    "socket",
	Usage:   "agent socket `PATH` (default: agent.socket of the configuration given with --config, else " + client.DefaultSocket + ")",
	EnvVars: []string{client.SocketEnv},
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print a secret fetched from the running agent",
		ArgsUsage: "NAME",
		Description: "get asks the agent for the secret and writes its value, exactly, with no newline\n" +
			"added, to stdout or to a new file created 0600 (--out). It reads a configuration only\n" +
			"when one is given (--config or $KEYWARD_CONFIG), for agent.socket.",
		Flags: []cli.Flag{
			socketFlag,
			&cli.UintFlag{Name: "version", Usage: "a given `VERSION` instead of the current one"},
			&cli.StringFlag{Name: "out", Usage: "write the value to a new `FILE` (mode 0600) instead of stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("get takes exactly one secret NAME")
			}
			v := c.Uint("version")
			if v > 1<<32-1 {
				return usagef("--version %d is out of range", v)
			}
			cl, _, err := dialAgent(c.Context, c)
			if err != nil {
				return err
			}
			defer cl.Close()
			sec, err := cl.GetVersion(c.Context, c.Args().First(), uint32(v))
			if err != nil {
				return err
			}
			defer sec.Wipe()
			if path := c.String("out"); path != "" {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
				if err != nil {
					return fmt.Errorf("failed to create %s: %w (get --out never overwrites)", path, err)
				}
				if _, err := f.Write(sec.Bytes()); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			}
			_, err = c.App.Writer.Write(sec.Bytes())
			return err
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the running agent's health, backend, secrets loaded, uptime and version",
		Description: "status asks the agent over its socket. It exits 0 when the agent answers, its\n" +
			"backend is healthy and it serves every secret from its newest version, and 1 when the\n" +
			"agent cannot be reached or something needs attention. Any caller that can connect may\n" +
			"ask; secrets and their problems are shown only to callers the policy names.",
		Flags: []cli.Flag{socketFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("status takes no arguments")
			}
			ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
			defer cancel()
			cl, path, err := dialAgent(ctx, c)
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.Status(ctx)
			if err != nil {
				return fmt.Errorf("the agent at %s did not answer: %w", path, err)
			}
			h, err := cl.Health(ctx)
			if err != nil {
				return fmt.Errorf("the agent at %s did not answer: %w", path, err)
			}
			doc := statusJSON{Agent: st.Agent, Socket: path, Health: "healthy", Secrets: st.Secrets,
				UptimeSeconds: int64(st.Uptime / time.Second), Problems: []problemJSON{}, Expiring: expiring(c),
				Backend: backendJSON{Name: st.Backend, Healthy: h.BackendOK, Since: jsonTime(h.BackendSince), LastOK: jsonTime(h.LastOK)}}
			for _, p := range h.Problems {
				doc.Problems = append(doc.Problems, problemJSON{Name: p.Name, State: p.State, Serving: p.Serving, Newest: p.Newest})
			}
			switch {
			case !h.BackendOK:
				doc.Health = "unhealthy"
			case len(h.Problems) > 0:
				doc.Health = "degraded"
			}
			if c.Bool(jsonFlag.Name) {
				if err := writeJSON(c.App.Writer, doc); err != nil {
					return err
				}
			} else {
				printStatus(c.App.Writer, &doc, h)
			}
			switch {
			case !h.BackendOK:
				return withHint(errors.New("the agent's backend does not answer; it serves what it holds and retries"),
					"see journalctl -u keyward; for the HSM, check the token is present and its module answers")
			case len(h.Problems) > 0:
				return withHint(fmt.Errorf("%d secret(s) are not served from their newest version", len(h.Problems)),
					"see journalctl -u keyward and keyward list; restore a damaged envelope from a backup or rotate the secret")
			}
			return nil
		},
	}
}

// printStatus writes status's text.
func printStatus(w io.Writer, doc *statusJSON, h *client.Health) {
	fmt.Fprintf(w, "agent:    %s\n", doc.Agent)
	fmt.Fprintf(w, "socket:   %s\n", doc.Socket)
	fmt.Fprintf(w, "health:   %s\n", overallHealth(h))
	fmt.Fprintf(w, "backend:  %s, %s\n", doc.Backend.Name, backendHealth(h))
	fmt.Fprintf(w, "secrets:  %d\n", doc.Secrets)
	fmt.Fprintf(w, "uptime:   %s\n", time.Duration(doc.UptimeSeconds)*time.Second)
	for _, p := range h.Problems {
		fmt.Fprintf(w, "problem:  %s\n", describeProblem(p))
	}
	e := doc.Expiring
	switch {
	case e == nil:
	case len(e.Versions) == 0:
		fmt.Fprintf(w, "expiring: none within %s\n", time.Duration(e.WindowSeconds)*time.Second)
	default:
		fmt.Fprintf(w, "expiring: %d within %s:\n", len(e.Versions), time.Duration(e.WindowSeconds)*time.Second)
		for _, v := range e.Versions {
			fmt.Fprintf(w, "  %s version %d at %s\n", v.Name, v.Version, v.At)
		}
	}
}

// overallHealth sums up the agent's health in a word or a phrase.
func overallHealth(h *client.Health) string {
	switch {
	case !h.BackendOK:
		return "UNHEALTHY (the backend does not answer; serving what the agent holds)"
	case len(h.Problems) > 0:
		return fmt.Sprintf("DEGRADED (%d secret(s) not served from their newest version)", len(h.Problems))
	}
	return "healthy"
}

// backendHealth describes the agent's backend state.
func backendHealth(h *client.Health) string {
	since := ""
	if !h.BackendSince.IsZero() {
		since = " since " + formatTime(h.BackendSince)
	}
	if h.BackendOK {
		return "healthy" + since
	}
	last := "never"
	if !h.LastOK.IsZero() {
		last = formatTime(h.LastOK)
	}
	return "UNAVAILABLE" + since + " (last answered " + last + "; serving what the agent holds)"
}

// describeProblem says what a problem means for the secret's callers.
func describeProblem(p client.Problem) string {
	switch p.State {
	case "stale":
		return fmt.Sprintf("%s: version %d did not load (backend); serving version %d within its grace", p.Name, p.Newest, p.Serving)
	case "unavailable":
		return fmt.Sprintf("%s: version %d did not load (backend); nothing is served", p.Name, p.Newest)
	case "damaged":
		if p.Serving != 0 {
			return fmt.Sprintf("%s: version %d is DAMAGED on disk; serving the copy loaded before", p.Name, p.Newest)
		}
		return fmt.Sprintf("%s: version %d is DAMAGED on disk; nothing is served", p.Name, p.Newest)
	}
	return fmt.Sprintf("%s: %s (version %d, serving %d)", p.Name, p.State, p.Newest, p.Serving)
}

// expiring lists, from the store's metadata when this user can read it,
// the current versions that expire within the warning window; nil when it
// cannot be read.
func expiring(c *cli.Context) *expiringJSON {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil
	}
	s, err := openStoreNoBackend(cfg)
	if err != nil {
		return nil
	}
	secrets, _, err := s.Secrets()
	if err != nil {
		return nil
	}
	window := cfg.Store.ExpiryWarning.Duration
	out := &expiringJSON{WindowSeconds: int64(window / time.Second), Versions: []expiryEntryJSON{}}
	now := time.Now()
	for _, sec := range secrets {
		v := sec.Latest()
		if v.State(now, window) == store.StateExpiresSoon {
			out.Versions = append(out.Versions, expiryEntryJSON{Name: sec.Name, Version: v.Version, At: formatTime(v.Until)})
		}
	}
	return out
}

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "work with the access policy",
		Subcommands: []*cli.Command{{
			Name:      "check",
			Usage:     "explain whether a caller may use a secret, and which rule decides",
			ArgsUsage: "NAME",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "policy", Usage: "policy `FILE` (default: agent.policy from the configuration)"},
				&cli.StringFlag{Name: "op", Value: "get", Usage: "operation: get, list, watch, admin, sign or hmac"},
				&cli.StringFlag{Name: "request", Usage: "with --op sign: the request `\"METHOD URL\"` to sign, e.g. \"POST https://api.binance.com/api/v3/order?symbol=BTCUSDT\""},
				&cli.StringFlag{Name: "body", Usage: "with --request: the request `BODY`"},
				&cli.StringFlag{Name: "exchange", Usage: "with --request: the credential's `EXCHANGE` (binance, bybit, okx, kraken, coinbase)"},
				&cli.StringFlag{Name: "uid", Usage: "the caller: a `USER` name or uid (required)"},
				&cli.UintFlag{Name: "gid", Usage: "caller primary `GID`"},
				&cli.UintSliceFlag{Name: "group", Usage: "caller supplementary `GID` (repeatable)"},
				&cli.StringFlag{Name: "exe", Usage: "caller executable `PATH`"},
				&cli.StringFlag{Name: "sha256", Usage: "caller executable SHA-256 `HEX`"},
				&cli.StringFlag{Name: "unit", Usage: "caller systemd `UNIT`"},
				jsonFlag,
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("policy check takes exactly one secret NAME")
				}
				op, err := policy.ParseOp(c.String("op"))
				if err != nil {
					return usagef("%v", err)
				}
				if !c.IsSet("uid") {
					return usagef("policy check needs --uid USER: the caller whose access to explain")
				}
				uid, err := lookupUID(c.String("uid"))
				if err != nil {
					return err
				}
				caller := &staticCaller{uid: uid, gid: uint32(c.Uint("gid")),
					exe: c.String("exe"), unit: c.String("unit")}
				asJSON := c.Bool(jsonFlag.Name)
				if caller.exe != "" {
					// As the agent sees it: the kernel reports the file
					// exec'd, symbolic links resolved.
					caller.exe = policy.ResolveExe(caller.exe)
					if caller.exe != c.String("exe") && !asJSON {
						fmt.Fprintf(c.App.Writer, "note: --exe %s resolves to %s, the path the agent sees\n", c.String("exe"), caller.exe)
					}
				}
				for _, g := range c.UintSlice("group") {
					caller.groups = append(caller.groups, uint32(g))
				}
				if !c.IsSet("gid") && !c.IsSet("group") {
					// Describe the user as the system knows it, not as gid 0.
					if err := caller.lookupGroups(); err != nil {
						return usagef("uid %d: %v; give --gid (and --group) explicitly", caller.uid, err)
					}
				}
				if h := c.String("sha256"); h != "" {
					b, err := hex.DecodeString(h)
					if err != nil || len(b) != 32 {
						return usagef("--sha256 %q is not 64 hexadecimal digits", h)
					}
					caller.sum, caller.hasSum = [32]byte(b), true
				}
				path := c.String("policy")
				if path == "" {
					cfg, err := loadConfig(c)
					if err != nil {
						return err
					}
					path = cfg.Agent.Policy
				}
				pol, err := policy.Load(path)
				if err != nil {
					return err
				}
				var d policy.Decision
				var lines []string
				if c.IsSet("request") {
					parsed, err := signRequestToCheck(c, op)
					if err != nil {
						return err
					}
					d, lines = pol.ExplainSign(caller, c.Args().First(), parsed)
				} else {
					d, lines = pol.Explain(caller, op, c.Args().First())
				}
				verdict := "deny"
				if d.Allowed {
					verdict = "allow"
				}
				w := c.App.Writer
				if asJSON {
					doc := policyCheckJSON{Decision: verdict, Rule: d.Rule, Reason: d.Reason, Op: op.String(), Secret: c.Args().First(),
						Caller: callerJSON{UID: caller.uid, GID: caller.gid, Groups: append([]uint32{}, caller.groups...), Exe: caller.exe, Unit: caller.unit},
						Rules:  append([]string{}, lines...), Warnings: append([]string{}, pol.ExeWarnings()...)}
					if err := writeJSON(w, doc); err != nil {
						return err
					}
				} else {
					for _, w := range pol.ExeWarnings() {
						warn(c.App.ErrWriter, w)
					}
					fmt.Fprintf(w, "%s: %s\n", verdict, d.Reason)
					for _, l := range lines {
						fmt.Fprintln(w, l)
					}
				}
				if !d.Allowed {
					return cli.Exit("", exitFailed)
				}
				return nil
			},
		}},
	}
}

// lookupUID resolves --uid: a user name, or a number (which need not be
// a known user).
func lookupUID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, usagef("--uid %q: no such user (%v); give a user name or a uid", s, err)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %s has uid %q", s, u.Uid)
	}
	return uint32(n), nil
}

// staticCaller is a caller described on the command line.
type staticCaller struct {
	uid, gid  uint32
	groups    []uint32
	exe, unit string
	sum       [32]byte
	hasSum    bool
}

// lookupGroups fills in the primary and supplementary groups of the uid
// from the user database.
func (s *staticCaller) lookupGroups() error {
	u, err := user.LookupId(strconv.FormatUint(uint64(s.uid), 10))
	if err != nil {
		return err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return err
	}
	s.gid = uint32(gid)
	ids, err := u.GroupIds()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != s.gid {
			s.groups = append(s.groups, uint32(g))
		}
	}
	return nil
}

func (s *staticCaller) UID() uint32      { return s.uid }
func (s *staticCaller) GID() uint32      { return s.gid }
func (s *staticCaller) Groups() []uint32 { return s.groups }
func (s *staticCaller) Exe() string      { return s.exe }
func (s *staticCaller) Unit() string     { return s.unit }
func (s *staticCaller) ExeSHA256() ([32]byte, error) {
	if !s.hasSum {
		return [32]byte{}, errors.New("no --sha256 given")
	}
	return s.sum, nil
}
