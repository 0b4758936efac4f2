package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/internal/config"
)

// tellAgent asks a running agent to re-read name, so that what the command
// just changed in the store is served when the command returns. No agent
// running is fine; an agent that refuses is reported, since it keeps
// serving what it had.
func tellAgent(c *cli.Context, cfg config.Config, name string) {
	socket := os.Getenv(client.SocketEnv)
	if socket == "" {
		socket = cfg.Agent.Socket
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, socket)
	if err != nil {
		fmt.Fprintf(c.App.Writer, "no agent answers on %s; it will serve the change when it starts\n", socket)
		return
	}
	defer cl.Close()
	v, err := cl.Reload(ctx, name)
	switch {
	case err == nil && v == 0:
		fmt.Fprintf(c.App.Writer, "the agent no longer serves %s\n", name)
	case err == nil:
		fmt.Fprintf(c.App.Writer, "the agent now serves %s version %d\n", name, v)
	case errors.Is(err, client.ErrDenied):
		fmt.Fprintf(c.App.ErrWriter, "keyward: warning: the agent did not reload: this user has no admin permission on %s\n"+
			"keyward: hint: grant it in the policy (allow = [\"admin\"]), or run systemctl reload keyward\n", name)
	default:
		fmt.Fprintf(c.App.ErrWriter, "keyward: warning: the agent did not reload: %v\nkeyward: hint: run systemctl reload keyward\n", err)
	}
}
