package systemd

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// A Notifier reports the agent's state to the service manager over the
// sd_notify protocol. Its Event and Health methods fit
// [agent.RunConfig].Ready and HealthResult. Outside systemd (NOTIFY_SOCKET
// unset) it sends nothing.
//
// A Notifier is safe for concurrent use.
type Notifier struct {
	log      *slog.Logger
	watchdog time.Duration

	mu        sync.Mutex
	status    string // the agent's last status line
	unhealthy string // why the backend is unhealthy; "" when healthy
	failed    bool   // a send failed and was logged
}

// sdNotify sends a state to NOTIFY_SOCKET; tests replace it.
var sdNotify = func(state string) (bool, error) { return daemon.SdNotify(false, state) }

// NewNotifier returns a Notifier for this process. It reads the watchdog
// interval (WATCHDOG_USEC, when WATCHDOG_PID is unset or this process)
// once, and removes both variables from the environment. Failures to send
// are logged to log, once.
func NewNotifier(log *slog.Logger) (*Notifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wd, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		return nil, err
	}
	return &Notifier{log: log, watchdog: wd}, nil
}

// Watchdog returns the interval within which systemd expects a watchdog
// ping (WatchdogSec=), or 0 when the watchdog is off.
func (n *Notifier) Watchdog() time.Duration { return n.watchdog }

// HealthInterval returns how often the backend's health should be checked:
// every half watchdog interval when the watchdog is on, since each check
// that passes sends the ping, and never less often than def.
func (n *Notifier) HealthInterval(def time.Duration) time.Duration {
	if half := n.watchdog / 2; half > 0 && (def <= 0 || half < def) {
		return half
	}
	return def
}

// Event reports one of [agent.Run]'s events: "ready" (READY=1, the store
// is loaded and the backend answered, or a reload is done), "reloading"
// (RELOADING=1 with MONOTONIC_USEC) and "stopping" (STOPPING=1), each with
// STATUS= the agent's status line and the backend's state.
func (n *Notifier) Event(event, status string) {
	n.mu.Lock()
	n.status = status
	line := n.statusLine()
	n.mu.Unlock()
	switch event {
	case "ready":
		n.send(daemon.SdNotifyReady, line)
	case "reloading":
		n.send(daemon.SdNotifyReloading, strings.TrimSpace(daemon.SdNotifyMonotonicUsec()), line)
	case "stopping":
		n.send(daemon.SdNotifyStopping, line)
	default:
		n.send(line)
	}
}

// Health reports the result of a backend health check. Every check that
// completes sends the watchdog ping (when the watchdog is on), whatever its
// result: the agent serves what it holds through a backend outage and
// recovers by itself when the backend answers again, and a restart would
// lose what it holds. The watchdog so restarts only an agent whose checks
// stop completing: one that hangs. A change of state updates STATUS=.
func (n *Notifier) Health(err error) {
	why := ""
	if err != nil {
		why = err.Error()
		if why == "" {
			why = "unknown error"
		}
	}
	n.mu.Lock()
	changed := why != n.unhealthy
	n.unhealthy = why
	line := n.statusLine()
	n.mu.Unlock()
	var states []string
	if n.watchdog > 0 {
		states = append(states, daemon.SdNotifyWatchdog)
	}
	if changed {
		states = append(states, line)
	}
	if len(states) > 0 {
		n.send(states...)
	}
}

// statusLine returns STATUS=…; n.mu must be held.
func (n *Notifier) statusLine() string {
	s := n.status
	if s == "" {
		s = "starting"
	}
	if n.unhealthy != "" {
		s += "; backend unavailable, serving what the agent holds: " + n.unhealthy
	} else {
		s += "; backend healthy"
	}
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// send sends the non-empty states as one message.
func (n *Notifier) send(states ...string) {
	states = slices.DeleteFunc(states, func(s string) bool { return s == "" })
	_, err := sdNotify(strings.Join(states, "\n"))
	if err == nil {
		return
	}
	n.mu.Lock()
	first := !n.failed
	n.failed = true
	n.mu.Unlock()
	if first {
		n.log.Warn("cannot notify the service manager", "err", err)
	}
}
