package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/tpm"
)

// tpmStore opens the configured store when its backend is "tpm".
func tpmStore(c *cli.Context) (*store.Store, *tpmBackend, error) {
	cfg, err := configNoArgs(c)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Backend != "tpm" {
		return nil, nil, fmt.Errorf("%s works on the tpm backend; this configuration has backend = %q", c.Command.Name, cfg.Backend)
	}
	s, b, err := openStoreAlone(c, cfg)
	if err != nil {
		return nil, nil, err
	}
	return s, b.(*tpmBackend), nil
}

func pcrsCommand() *cli.Command {
	return &cli.Command{
		Name:  "pcrs",
		Usage: "show the PCRs secrets are sealed to, and whether each secret would unseal now",
		Action: func(c *cli.Context) error {
			s, d, err := tpmStore(c)
			if err != nil {
				return err
			}
			defer d.Close()
			sel := d.PCRSelection()
			values, err := d.PCRs(c.Context, sel)
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "configured selection: %s\n", sel)
			for _, i := range sel.PCRs() {
				fmt.Fprintf(w, "  pcr %2d  %s\n", i, hex.EncodeToString(values[i]))
			}
			envs, damaged, err := s.List()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSEALED TO\tPOLICY")
			unsatisfied := 0
			for _, e := range envs {
				bl, err := tpm.ParseBlob(e.WrappedKey)
				if err != nil {
					fmt.Fprintf(tw, "%s\t%d\t-\tnot a TPM-sealed key: %v\n", e.Name, e.Version, err)
					unsatisfied++
					continue
				}
				state := "satisfied"
				changed, err := d.Check(c.Context, e.WrappedKey)
				switch {
				case err != nil:
					state = err.Error()
					unsatisfied++
				case len(changed) > 0:
					state = fmt.Sprintf("NOT satisfied: PCR %v changed since sealing", changed)
					unsatisfied++
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.Name, e.Version, bl.PCRs, state)
			}
			tw.Flush()
			for _, d := range damaged {
				fmt.Fprintf(c.App.ErrWriter, "keyward: warning: %v\n", d)
			}
			if unsatisfied > 0 {
				return cli.Exit(fmt.Sprintf("keyward: error: %d secret(s) would not unseal in this boot state; see docs/tpm.md", unsatisfied), exitFailed)
			}
			return nil
		},
	}
}

func resealCommand() *cli.Command {
	return &cli.Command{
		Name:  "reseal",
		Usage: "re-seal every data key to the current PCR values (or a new selection)",
		Description: "reseal unseals each data key under its current policy, which must still hold, and\n" +
			"seals it again to the current values of the configured PCRs or of --pcrs. All envelopes\n" +
			"are replaced in one transaction: an interrupted reseal leaves the old store, or is\n" +
			"finished by the next write. Run it before a planned firmware, kernel or Secure Boot\n" +
			"change is measured (see docs/operations.md); afterwards, set tpm.pcrs to the new selection.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pcrs", Usage: "seal to this PCR `SELECTION` (e.g. 7 or sha256:0+2+7) instead of the configured one"},
		},
		Action: func(c *cli.Context) error {
			var sel tpm.Selection
			if p := c.String("pcrs"); p != "" {
				var err error
				if sel, err = tpm.ParseSelection(p); err != nil {
					return usagef("--pcrs: %v", err)
				}
			}
			s, d, err := tpmStore(c)
			if err != nil {
				return err
			}
			defer d.Close()
			if sel.IsZero() {
				sel = d.PCRSelection()
			}
			n, err := s.Rewrap(c.Context, func(w []byte) ([]byte, error) { return d.Reseal(c.Context, w, sel) })
			if err != nil {
				if errors.Is(err, tpm.ErrPolicy) {
					return fmt.Errorf("%w\nthe measured state already changed: re-sealing needs the old state; recover with the break-glass kit (docs/recovery.md)", err)
				}
				return err
			}
			fmt.Fprintf(c.App.Writer, "re-sealed %d envelope(s) to %s\n", n, sel)
			return nil
		},
	}
}
