package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/tpm"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "work with the configuration",
		Subcommands: []*cli.Command{{
			Name:      "check",
			Usage:     "validate the configuration and the policy it names, for config-management CI",
			ArgsUsage: "[FILE]",
			Description: "check reads the configuration FILE (default: --config) as the agent would, strictly,\n" +
				"with the trust checks on its owner and mode, parses the PKCS #11 URI and the PCR\n" +
				"selection, and loads the policy (agent.policy, or --policy) with every rule compiled.\n" +
				"It opens no token, TPM or socket. What depends on the host it runs on (the socket\n" +
				"group, the module file) is a warning. Exit status: 0 valid (warnings allowed), 1\n" +
				"invalid, 2 a usage error.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "policy", Usage: "check this policy `FILE` instead of agent.policy"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 1 {
					return usagef("config check takes at most one configuration FILE")
				}
				path := c.String(configFlag)
				if c.NArg() == 1 {
					path = c.Args().First()
				}
				cfg, err := config.Load(path, true)
				if err != nil {
					return err
				}
				if err := checkStatic(cfg); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "configuration %s: valid (backend %s)\n", path, cfg.Backend)
				for _, msg := range hostWarnings(cfg) {
					warn(c.App.ErrWriter, msg)
				}
				polPath := cfg.Agent.Policy
				if p := c.String("policy"); p != "" {
					polPath = p
				}
				pol, err := policy.Load(polPath)
				if err != nil {
					return err
				}
				for _, msg := range pol.ExeWarnings() {
					warn(c.App.ErrWriter, msg)
				}
				fmt.Fprintf(w, "policy %s: valid (%d rule(s))\n", polPath, pol.Rules())
				return nil
			},
		}},
	}
}

// checkStatic checks the settings the agent would only parse when it
// opens its backend.
func checkStatic(cfg config.Config) error {
	if cfg.Backend != config.BackendTPM {
		if _, err := hsm.ParseURI(cfg.PKCS11.URI); err != nil {
			return fmt.Errorf("pkcs11.uri: %w", err)
		}
	}
	if cfg.Backend != config.BackendPKCS11 {
		if _, err := tpm.ParseSelection(cfg.TPM.PCRs); err != nil {
			return fmt.Errorf("tpm.pcrs: %w", err)
		}
	}
	return nil
}

// hostWarnings are what would fail on this host but may be right on the
// host the configuration is for.
func hostWarnings(cfg config.Config) []string {
	var out []string
	if _, err := lookupGroup(cfg.Agent.SocketGroup); err != nil {
		out = append(out, "on this host: "+err.Error())
	}
	if cfg.Backend != config.BackendTPM {
		if u, err := hsm.ParseURI(cfg.PKCS11.URI); err == nil {
			if p, err := u.ModulePath(); err != nil {
				out = append(out, "on this host: pkcs11.uri: "+err.Error())
			} else if _, err := os.Stat(p); err != nil {
				out = append(out, fmt.Sprintf("on this host: the PKCS #11 module %s: %v", p, err))
			}
		}
	}
	return out
}
