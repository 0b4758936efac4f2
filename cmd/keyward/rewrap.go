package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
	"github.com/keyward/keyward/tpm"
)

func rewrapCommand() *cli.Command {
	return &cli.Command{
		Name:  "rewrap",
		Usage: "move every data key to a new key-encryption key (HSM) or a new TPM store key",
		Description: "With an HSM, rewrap creates (or finds) the key --new-object in the same token, re-wraps\n" +
			"every data key under it and switches the store to it, in one transaction: interrupted at\n" +
			"any point, the store stays readable with the old or the new key, and running rewrap again\n" +
			"completes it. --destroy-old then deletes the old key from the token, only after success.\n" +
			"With a TPM, it moves every data key to a new store key sealed to the configured PCRs (a\n" +
			"store made before store keys is so migrated). The agent must be stopped. --dry-run says\n" +
			"what it would do, opening neither the token nor the TPM.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "new-object", Usage: "label of the new key-encryption key (HSM)"},
			&cli.BoolFlag{Name: "destroy-old", Usage: "delete the old key from the token after success (HSM)"},
			dryRunFlag,
		},
		Action: func(c *cli.Context) error {
			cfg, err := configNoArgs(c)
			if err != nil {
				return err
			}
			if c.Bool(dryRunFlag.Name) {
				return dryRunRewrap(c, cfg)
			}
			if cfg.Backend == config.BackendTPM {
				return rewrapTPM(c, cfg)
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
			opts := backendOptions(c)
			opts.Create, opts.Object = true, label
			newBackend, created, err := backend.Open(c.Context, cfg, opts)
			if err != nil {
				return err
			}
			defer newBackend.Close()
			if newBackend.KeyID() == old.KeyID() && c.Bool("destroy-old") {
				// A re-run after an interrupted rewrap: finishing it is fine,
				// destroying the key the store is under is not.
				return usagef("--new-object %s is the key the store is already under; run without --destroy-old", label)
			}
			n, err := s.RewrapTo(c.Context, newBackend, map[string][]byte{store.RootKeyFile: []byte(label + "\n")})
			if err != nil {
				return withHint(err, "the store is unchanged or half-way committed; run the same rewrap again to complete it")
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
			return nil
		},
	}
}

// rewrapTPM moves every data key to a new TPM store key: from a store
// sealed per secret (a migration), or from the store key in use (a key
// rotation).
func rewrapTPM(c *cli.Context, cfg config.Config) error {
	s, b, err := openStoreAlone(c, cfg)
	if err != nil {
		return err
	}
	var to *backend.StoreKey
	var n int
	switch b := b.(type) {
	case *backend.Legacy:
		to, n, err = backend.MigrateTPM(c.Context, s, b)
		if err != nil {
			b.Close()
			return withHint(err, "the store is unchanged or half-way committed; run the same rewrap again to complete it")
		}
		defer to.Close()
		fmt.Fprintf(c.App.Writer, "moved %d envelope(s) to a TPM store key %s: the agent now starts in a fixed number of TPM commands\n", n, to.KeyID())
	case *backend.StoreKey:
		defer b.Close()
		k, sealed, err := tpm.NewStoreKey(c.Context, b.Device.Device)
		if err != nil {
			return err
		}
		defer k.Close()
		if n, err = s.RewrapTo(c.Context, k, map[string][]byte{store.TPMKeyFile: sealed}); err != nil {
			return withHint(err, "the store is unchanged or half-way committed; run the same rewrap again to complete it")
		}
		fmt.Fprintf(c.App.Writer, "re-wrapped %d envelope(s) under a new TPM store key %s\n", n, k.KeyID())
	}
	return nil
}
