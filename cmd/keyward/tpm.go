package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store/backend"
	"github.com/keyward/keyward/tpm"
)

// tpmConfig loads the configuration of a command that works on the tpm
// backend.
func tpmConfig(c *cli.Context) (config.Config, error) {
	cfg, err := configNoArgs(c)
	if err == nil && cfg.Backend != config.BackendTPM {
		err = fmt.Errorf("%s works on the tpm backend; this configuration has backend = %q", c.Command.Name, cfg.Backend)
	}
	return cfg, err
}

func pcrsCommand() *cli.Command {
	return &cli.Command{
		Name:  "pcrs",
		Usage: "show the PCRs the store's keys are sealed to, and whether they would unseal now",
		Description: "pcrs reads the configured PCRs and checks the store's TPM store key (or, in a store\n" +
			"made before store keys, each data key) against them, without unsealing anything. It\n" +
			"exits 1 when a key would not unseal in this boot state.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			cfg, err := tpmConfig(c)
			if err != nil {
				return err
			}
			if err := noAgentRuns(c, cfg); err != nil {
				return err
			}
			s, err := openStoreNoBackend(cfg)
			if err != nil {
				return err
			}
			r, err := backend.CheckTPM(c.Context, cfg, backendOptions(c), s)
			if err != nil {
				return err
			}
			doc := pcrsJSON{Selection: r.Selection.String(), PCRs: []pcrJSON{}, Keys: []sealedJSON{}, Legacy: r.Legacy}
			for _, i := range r.Selection.PCRs() {
				doc.PCRs = append(doc.PCRs, pcrJSON{Index: i, Value: hex.EncodeToString(r.Values[i])})
			}
			unsatisfied := 0
			for _, st := range r.Sealed {
				k := sealedJSON{Name: st.Name, Version: st.Version, Satisfied: st.Err == nil && len(st.Changed) == 0,
					Changed: append([]int{}, st.Changed...)}
				if !st.PCRs.IsZero() {
					sel := st.PCRs.String()
					k.SealedTo = &sel
				}
				if st.Err != nil {
					msg := st.Err.Error()
					k.Error = &msg
				}
				if !k.Satisfied {
					unsatisfied++
				}
				doc.Keys = append(doc.Keys, k)
			}
			if c.Bool(jsonFlag.Name) {
				if err := writeJSON(c.App.Writer, doc); err != nil {
					return err
				}
			} else {
				printPCRs(c.App.Writer, &doc)
			}
			if r.Legacy && len(r.Sealed) > 0 {
				warn(c.App.ErrWriter, "", "this store seals each data key on its own, which costs TPM commands per secret at every start; move it to a store key with keyward rewrap (docs/tpm.md)")
			}
			if unsatisfied > 0 {
				return withHint(fmt.Errorf("%d key(s) would not unseal in this boot state", unsatisfied),
					"if the change was planned, reseal with the old state back, or recover with keyward recovery restore (docs/tpm.md)")
			}
			return nil
		},
	}
}

// printPCRs writes pcrs's text.
func printPCRs(w io.Writer, doc *pcrsJSON) {
	fmt.Fprintf(w, "configured selection: %s\n", doc.Selection)
	for _, p := range doc.PCRs {
		fmt.Fprintf(w, "  pcr %2d  %s\n", p.Index, p.Value)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSEALED TO\tPOLICY")
	for _, k := range doc.Keys {
		key := "store key"
		if k.Name != "" {
			key = fmt.Sprintf("%s version %d", k.Name, k.Version)
		}
		state := "satisfied"
		switch {
		case k.Error != nil:
			state = *k.Error
		case len(k.Changed) > 0:
			state = fmt.Sprintf("NOT satisfied: PCR %v changed since sealing", k.Changed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", key, orDash(k.SealedTo), state)
	}
	tw.Flush()
}

func resealCommand() *cli.Command {
	return &cli.Command{
		Name:  "reseal",
		Usage: "re-seal the store's TPM keys to the current PCR values (or a new selection)",
		Description: "reseal unseals the store key under its current policy, which must still hold, and\n" +
			"seals it again to the current values of the configured PCRs or of --pcrs. (In a store\n" +
			"made before store keys, every data key, in one transaction.) Run it before a planned\n" +
			"firmware, kernel or Secure Boot change is measured (see docs/tpm.md); afterwards, set\n" +
			"tpm.pcrs to the new selection.",
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
			cfg, err := tpmConfig(c)
			if err != nil {
				return err
			}
			s, b, err := openStoreAlone(c, cfg)
			if err != nil {
				if errors.Is(err, tpm.ErrPolicy) {
					return withHint(err, "the measured state already changed: re-sealing needs the old state; recover with the break-glass kit (docs/recovery.md)")
				}
				return err
			}
			defer b.Close()
			n, err := backend.ResealTPM(c.Context, s, b, sel)
			if err != nil {
				if errors.Is(err, tpm.ErrPolicy) {
					return withHint(err, "the measured state already changed: re-sealing needs the old state; recover with the break-glass kit (docs/recovery.md)")
				}
				return err
			}
			if sel.IsZero() {
				sel, _ = tpm.ParseSelection(cfg.TPM.PCRs)
			}
			fmt.Fprintf(c.App.Writer, "re-sealed %d key(s) to %s\n", n, sel)
			return nil
		},
	}
}
