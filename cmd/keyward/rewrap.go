package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/hsm"
)

func rewrapCommand() *cli.Command {
	return &cli.Command{
		Name:  "rewrap",
		Usage: "move every data key to a new key-encryption key (HSM) or a new sealing (TPM)",
		Description: "With an HSM, rewrap creates (or finds) the key --new-object in the same token, re-wraps\n" +
			"every data key under it and switches the store to it, in one transaction: interrupted at\n" +
			"any point, the store stays readable with the old or the new key, and running rewrap again\n" +
			"completes it. --destroy-old then deletes the old key from the token, only after success.\n" +
			"With a TPM, it re-seals every data key to the current values of the configured PCRs.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "new-object", Usage: "label of the new key-encryption key (HSM)"},
			&cli.BoolFlag{Name: "destroy-old", Usage: "delete the old key from the token after success (HSM)"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := configNoArgs(c)
			if err != nil {
				return err
			}
			if cfg.Backend == "tpm" {
				s, d, err := tpmStore(c)
				if err != nil {
					return err
				}
				defer d.Close()
				n, err := s.Rewrap(c.Context, func(w []byte) ([]byte, error) { return d.Reseal(c.Context, w, d.PCRSelection()) })
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "re-sealed %d envelope(s) to %s\n", n, d.PCRSelection())
				return nil
			}
			label := c.String("new-object")
			if label == "" {
				return usagef("rewrap needs --new-object LABEL: the label of the new key-encryption key")
			}
			s, old, err := openStoreAlone(c, cfg)
			if err != nil {
				return err
			}
			defer old.Close()
			oldToken, ok := old.(*hsm.Token)
			if !ok {
				return errors.New("rewrap with --new-object needs the pkcs11 or hsm+tpm backend")
			}
			// The new key: the same token and PIN, another label.
			newBackend, created, err := openBackendObject(c.Context, cfg, true, label)
			if err != nil {
				return err
			}
			defer newBackend.Close()
			if newBackend.KeyID() == old.KeyID() && c.Bool("destroy-old") {
				// A re-run after an interrupted rewrap: finishing it is fine,
				// destroying the key the store is under is not.
				return usagef("--new-object %s is the key the store is already under; run without --destroy-old", label)
			}
			n, err := s.RewrapTo(c.Context, newBackend, label)
			if err != nil {
				return fmt.Errorf("%w\nkeyward: hint: the store is unchanged or half-way committed; run the same rewrap again to complete it", err)
			}
			verb := "found"
			if created {
				verb = "created"
			}
			fmt.Fprintf(c.App.Writer, "%s key-encryption key %s; re-wrapped %d envelope(s) under it; the store now uses it\n", verb, newBackend.KeyID(), n)
			if c.Bool("destroy-old") {
				if err := oldToken.Destroy(c.Context); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "destroyed the old key %s\n", old.KeyID())
			}
			fmt.Fprintln(c.App.Writer, "restart the agent (systemctl restart keyward) so that it opens the new key")
			return nil
		},
	}
}
