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
	"os/exec"
	"os/signal"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/metrics"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/systemd"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the agent: load every secret and serve it to the callers policy names",
		Description: "serve makes the process non-dumpable, unwraps every secret into locked memory, and\n" +
			"listens on agent.socket, or on the socket systemd passes (keyward.socket). SIGHUP reloads\n" +
			"policy and store; SIGTERM or SIGINT drains connections, zeroes the secrets and exits 0.\n" +
			"Under systemd it reports READY/RELOADING/STOPPING, feeds the watchdog while the backend\n" +
			"is healthy, and logs to the journal (audit events as keyward-audit).",
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
			defer trail.Close(10 * time.Second)
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
			importInbox, err := fleetImporter(ctx, cfg, st, log)
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
	Usage:   "agent socket `PATH`",
	EnvVars: []string{client.SocketEnv},
	Value:   client.DefaultSocket,
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print a secret fetched from the running agent",
		ArgsUsage: "NAME",
		Description: "get asks the agent for the secret and writes its value, exactly, with no newline\n" +
			"added, to stdout or to a new file created 0600 (--out). It reads no configuration.",
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
			cl, err := client.Dial(c.Context, c.String("socket"))
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
		Flags: []cli.Flag{socketFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("status takes no arguments")
			}
			path := c.String("socket")
			ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
			defer cancel()
			cl, err := client.Dial(ctx, path)
			if err != nil {
				return fmt.Errorf("the agent at %s cannot be reached: %w", path, err)
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
			w := c.App.Writer
			fmt.Fprintf(w, "agent:    %s\n", st.Agent)
			fmt.Fprintf(w, "socket:   %s\n", path)
			fmt.Fprintf(w, "health:   %s\n", overallHealth(h))
			fmt.Fprintf(w, "backend:  %s, %s\n", st.Backend, backendHealth(h))
			fmt.Fprintf(w, "secrets:  %d\n", st.Secrets)
			fmt.Fprintf(w, "uptime:   %s\n", st.Uptime.Truncate(time.Second))
			for _, p := range h.Problems {
				fmt.Fprintf(w, "problem:  %s\n", describeProblem(p))
			}
			printExpiring(c, w)
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

// printExpiring lists, from the store's metadata when this user can read
// it, the current versions that expire within the warning window.
func printExpiring(c *cli.Context, w io.Writer) {
	cfg, err := loadConfig(c)
	if err != nil {
		return
	}
	s, err := openStoreNoBackend(cfg)
	if err != nil {
		return
	}
	secrets, _, err := s.Secrets()
	if err != nil {
		return
	}
	window := cfg.Store.ExpiryWarning.Duration
	now := time.Now()
	var soon []string
	for _, sec := range secrets {
		v := sec.Latest()
		if v.State(now, window) == store.StateExpiresSoon {
			soon = append(soon, fmt.Sprintf("%s version %d at %s", sec.Name, v.Version, formatTime(v.Until)))
		}
	}
	if len(soon) == 0 {
		fmt.Fprintf(w, "expiring: none within %s\n", window)
		return
	}
	fmt.Fprintf(w, "expiring: %d within %s:\n", len(soon), window)
	for _, l := range soon {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a program with secrets in its environment",
		ArgsUsage: "--env VAR=NAME... -- COMMAND [ARG...]",
		Description: "exec fetches each NAME from the agent and replaces itself with COMMAND, with VAR set\n" +
			"to the value. For tools that only read environment variables: any process of the same\n" +
			"user can read a process's environment, so prefer the Go client or `get --out`.",
		Flags: []cli.Flag{
			socketFlag,
			&cli.StringSliceFlag{Name: "env", Usage: "set `VAR=NAME`: environment variable VAR to secret NAME"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("exec needs a COMMAND after --")
			}
			vars := c.StringSlice("env")
			if len(vars) == 0 {
				return usagef("exec needs at least one --env VAR=NAME")
			}
			path, err := exec.LookPath(c.Args().First())
			if err != nil {
				return err
			}
			cl, err := client.Dial(c.Context, c.String("socket"))
			if err != nil {
				return err
			}
			defer cl.Close()
			env := os.Environ()
			for _, kv := range vars {
				name, secret, ok := strings.Cut(kv, "=")
				if !ok || name == "" || strings.ContainsAny(name, "=\x00") {
					return usagef("--env %q is not VAR=NAME", kv)
				}
				sec, err := cl.Get(c.Context, secret)
				if err != nil {
					return fmt.Errorf("%s: %w", secret, err)
				}
				if strings.IndexByte(string(sec.Bytes()), 0) >= 0 {
					sec.Wipe()
					return fmt.Errorf("%s contains a NUL byte and cannot go into an environment variable", secret)
				}
				// Drop an inherited VAR first: most programs read the first
				// VAR= entry, and would get the old value.
				env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
				env = append(env, name+"="+string(sec.Bytes()))
				sec.Wipe()
			}
			return syscall.Exec(path, c.Args().Slice(), env)
		},
	}
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
				&cli.UintFlag{Name: "uid", Usage: "caller `UID`", Required: true},
				&cli.UintFlag{Name: "gid", Usage: "caller primary `GID`"},
				&cli.UintSliceFlag{Name: "group", Usage: "caller supplementary `GID` (repeatable)"},
				&cli.StringFlag{Name: "exe", Usage: "caller executable `PATH`"},
				&cli.StringFlag{Name: "sha256", Usage: "caller executable SHA-256 `HEX`"},
				&cli.StringFlag{Name: "unit", Usage: "caller systemd `UNIT`"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("policy check takes exactly one secret NAME")
				}
				op, err := policy.ParseOp(c.String("op"))
				if err != nil {
					return usagef("%v", err)
				}
				caller := &staticCaller{uid: uint32(c.Uint("uid")), gid: uint32(c.Uint("gid")),
					exe: c.String("exe"), unit: c.String("unit")}
				if caller.exe != "" {
					// As the agent sees it: the kernel reports the file
					// exec'd, symbolic links resolved.
					caller.exe = policy.ResolveExe(caller.exe)
					if caller.exe != c.String("exe") {
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
				w := c.App.Writer
				for _, w := range pol.ExeWarnings() {
					warn(c.App.ErrWriter, w)
				}
				verdict := "deny"
				if d.Allowed {
					verdict = "allow"
				}
				fmt.Fprintf(w, "%s: %s\n", verdict, d.Reason)
				for _, l := range lines {
					fmt.Fprintln(w, l)
				}
				if !d.Allowed {
					return cli.Exit("", exitFailed)
				}
				return nil
			},
		}},
	}
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
