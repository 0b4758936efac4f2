package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
)

// The commands that change the store (put, rotate, rm, prune) go through a
// running agent, which seals with the backend session it already holds:
// the CLI then never opens the token (SoftHSM rewrites its token file at
// every login, and a process killed at that moment destroyed the token),
// the administrator needs the admin permission instead of the PIN, and the
// agent serves the change before the command returns. With no agent
// running, the CLI works on the store itself.

// agentSocket is the socket the administrative commands talk to:
// $KEYWARD_SOCKET, else the configured one.
func agentSocket(cfg config.Config) string {
	if s := os.Getenv(client.SocketEnv); s != "" {
		return s
	}
	return cfg.Agent.Socket
}

// runningAgent returns a client of the agent answering on the socket; nil
// when no agent runs there (no socket, or nothing listens), so that the
// command may open the store itself; or an error when that cannot be told
// (permission denied, no answer), since opening the backend under a
// running agent is what must not happen.
func runningAgent(c *cli.Context, cfg config.Config) (*client.Client, error) {
	socket := agentSocket(cfg)
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, socket)
	switch {
	case err == nil:
		return cl, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, nil
	}
	return nil, withHint(fmt.Errorf("cannot tell whether an agent runs on %s: %w", socket, err),
		"a running agent must do this change: run as a member of the socket's group (keyward-clients), "+
			"or stop the agent (systemctl stop keyward keyward.socket) to work on the store directly; "+
			"$KEYWARD_SOCKET or agent.socket names the socket")
}

// clientSocket is the socket get, status, exec and render talk to:
// --socket or $KEYWARD_SOCKET; else agent.socket of the configuration when
// one is given (--config or $KEYWARD_CONFIG); else client.DefaultSocket.
// Without a configuration given, they read none: a trading user needs
// nothing but the socket.
func clientSocket(c *cli.Context) (string, error) {
	if c.IsSet(socketFlag.Name) {
		return c.String(socketFlag.Name), nil
	}
	if c.IsSet(configFlag) {
		cfg, err := loadConfig(c)
		if err != nil {
			return "", err
		}
		return cfg.Agent.Socket, nil
	}
	return client.DefaultSocket, nil
}

// dialAgent connects to the agent on the socket clientSocket names, and
// returns it with the socket; when it cannot, the error says why in words
// and what to check.
func dialAgent(ctx context.Context, c *cli.Context) (*client.Client, string, error) {
	socket, err := clientSocket(c)
	if err != nil {
		return nil, "", err
	}
	cl, err := client.Dial(ctx, socket)
	if err != nil {
		return nil, socket, agentUnreachable(err, socket)
	}
	return cl, socket, nil
}

// agentUnreachable explains a failed connection to the agent on socket.
func agentUnreachable(err error, socket string) error {
	which := "--socket, $KEYWARD_SOCKET or agent.socket in the configuration (--config) name another socket"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return withHint(fmt.Errorf("no agent socket at %s", socket),
			"is the agent's socket unit running? systemctl status keyward.socket (enable it with systemctl enable --now keyward.socket)", which)
	case errors.Is(err, syscall.ECONNREFUSED):
		return withHint(fmt.Errorf("no agent listens on %s", socket),
			"systemctl status keyward.socket keyward.service; journalctl -u keyward says why the agent stopped", which)
	case errors.Is(err, fs.ErrPermission):
		return withHint(fmt.Errorf("permission denied connecting to the agent at %s", socket),
			"the socket admits the members of its group, keyward-clients: usermod -aG keyward-clients USER, then log in again (a service: SupplementaryGroups=keyward-clients)", which)
	}
	return withHint(fmt.Errorf("the agent at %s does not answer: %w", socket, err),
		"systemctl status keyward.service; journalctl -u keyward")
}

// agentRefused explains an administrative request the agent refused.
func agentRefused(err error, name string) error {
	if errors.Is(err, client.ErrDenied) {
		return withHint(fmt.Errorf("the agent refused: this user has no admin permission on %s", name),
			`grant it in the policy: allow = ["admin"] on the name, for this user or group (docs/policy.md)`)
	}
	return fmt.Errorf("the agent did not do it: %w", err)
}

// noAgent says that the change is on disk and will be served at start.
func noAgent(c *cli.Context, cfg config.Config) {
	fmt.Fprintf(c.App.Writer, "no agent answers on %s; it will serve the change when it starts\n", agentSocket(cfg))
}

// openStoreAlone opens the store with its backend for a command that must
// not run beside an agent: one that opens the token the agent holds, or
// replaces the key under it.
func openStoreAlone(c *cli.Context, cfg config.Config) (*store.Store, backend.Backend, error) {
	if err := noAgentRuns(c, cfg); err != nil {
		return nil, nil, err
	}
	return openStore(c, cfg)
}

// noAgentRuns refuses to go on while an agent answers on the socket.
func noAgentRuns(c *cli.Context, cfg config.Config) error {
	cl, err := runningAgent(c, cfg)
	if err != nil {
		return err
	}
	if cl == nil {
		return nil
	}
	cl.Close()
	return withHint(fmt.Errorf("an agent runs on %s, and %s must not open the backend beside it", agentSocket(cfg), commandPath(c)),
		"stop the agent first (systemctl stop keyward.socket keyward.service), and start it again after (systemctl start keyward.socket)")
}

// commandPath returns the command run as typed, with its parents:
// "keyward recovery init", not "init" (urfave/cli's FullName gives only
// the last name).
func commandPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" {
			names = append([]string{ctx.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}
