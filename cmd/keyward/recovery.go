package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
	"github.com/keyward/keyward/store/recovery"
)

func recoveryCommand() *cli.Command {
	return &cli.Command{
		Name:  "recovery",
		Usage: "the break-glass recovery kit: survive a lost HSM or TPM (docs/recovery.md)",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create the kit, seal every data key to it, and print the shares once",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "shares", Value: 5, Usage: "`N` shares, one per custodian"},
					&cli.IntFlag{Name: "threshold", Value: 3, Usage: "any `K` shares recover"},
					&cli.BoolFlag{Name: "replace", Usage: "replace the existing kit (its shares stop covering new secrets)"},
				},
				Action: func(c *cli.Context) error {
					cfg, err := configNoArgs(c)
					if err != nil {
						return err
					}
					kit, shares, err := recovery.NewKit(c.Int("shares"), c.Int("threshold"), time.Now())
					if err != nil {
						return usagef("%v", err)
					}
					defer func() {
						for i := range shares {
							shares[i].Destroy()
						}
					}()
					s, b, err := openStoreAlone(c, cfg)
					if err != nil {
						return err
					}
					defer b.Close()
					n, err := s.InitRecovery(c.Context, kit, c.Bool("replace"))
					if err != nil {
						return err
					}
					w := c.App.Writer
					fmt.Fprintf(w, "recovery kit %s: %d of %d shares recover it; %d data key(s) sealed to it.\n", kit.ID, kit.Threshold, kit.Shares, n)
					fmt.Fprintf(w, "Give each line below to a different custodian. They are shown this once and stored nowhere.\n\n")
					for _, sh := range shares {
						fmt.Fprintln(w, sh.String())
					}
					return nil
				},
			},
			{
				Name:  "restore",
				Usage: "read K shares on stdin and re-wrap every data key to the current backend",
				Description: "restore rebuilds the kit's private key from the shares given on standard input (one\n" +
					"per line, in any order), opens every data key with it, and re-wraps them to the backend\n" +
					"now configured (a new HSM key, a new TPM, a new boot state), in one transaction.",
				Action: func(c *cli.Context) error {
					cfg, err := configNoArgs(c)
					if err != nil {
						return err
					}
					text, err := io.ReadAll(io.LimitReader(c.App.Reader, 64<<10))
					if err != nil {
						return err
					}
					defer clear(text)
					shares, err := recovery.ParseShares(string(text))
					if err != nil {
						return err
					}
					defer func() {
						for i := range shares {
							shares[i].Destroy()
						}
					}()
					if err := noAgentRuns(c, cfg); err != nil {
						return err
					}
					b, records, err := backend.ForRestore(c.Context, cfg, backendOptions(c))
					if err != nil {
						return err
					}
					defer b.Close()
					host, err := store.ReadHostID(cfg.Store.MachineIDFile)
					if err != nil {
						return err
					}
					s, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: host})
					if err != nil {
						return err
					}
					kit, err := s.KitUnverified()
					if err != nil {
						return err
					}
					priv, err := recovery.Combine(kit, shares)
					if err != nil {
						return err
					}
					defer priv.Destroy()
					n, err := s.Restore(c.Context, priv, records)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "restored %d envelope(s) to %s with recovery kit %s\n", n, b.KeyID(), kit.ID)
					// Anyone who could write the store could have planted an
					// envelope sealed to the kit's public key: show what was
					// restored, for the operator to check.
					if envs, _, err := s.List(); err == nil {
						for _, e := range envs {
							fmt.Fprintf(c.App.Writer, "  %s version %d, created %s\n", e.Name, e.Version, formatTime(e.Created))
						}
						fmt.Fprintln(c.App.Writer, "check that these are the secrets you expect before serving them")
					}
					return nil
				},
			},
		},
	}
}
