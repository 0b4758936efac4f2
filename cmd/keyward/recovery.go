package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/trust"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
	"github.com/keyward/keyward/store/recovery"
)

func recoveryCommand() *cli.Command {
	return &cli.Command{
		Name:  "recovery",
		Usage: "the break-glass recovery kit: survive a lost HSM, TPM or host (docs/recovery.md)",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create the host's kit, seal every data key to it, and print the shares once; or, with --fleet, a kit for many hosts",
				Description: "On a host: creates the host's own kit in its store and prints the shares once.\n\n" +
					"With --fleet, on a workstation (no store, no HSM): creates a fleet kit, writes its public\n" +
					"file (DIR/fleet.kit) for the hosts' recovery.fleet_kit setting, and writes each share\n" +
					"encrypted with age to its custodian's public key (--custodian FILE, one per custodian: an\n" +
					"age recipient or an ssh-ed25519 or ssh-rsa key) as DIR/share-N-NAME.age. No share is\n" +
					"printed or written in clear unless --print-shares-in-clear asks for it.",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "shares", Value: 5, Usage: "`N` shares, one per custodian (with --fleet: the number of --custodian files)"},
					&cli.IntFlag{Name: "threshold", Value: 3, Usage: "any `K` shares recover"},
					&cli.BoolFlag{Name: "replace", Usage: "replace the host's existing kit (its shares stop covering new secrets)"},
					&cli.BoolFlag{Name: "fleet", Usage: "make a fleet kit on this workstation instead of a host kit"},
					&cli.StringSliceFlag{Name: "custodian", Usage: "--fleet: a custodian's public key `FILE`; the share is encrypted to it"},
					&cli.StringFlag{Name: "out", Usage: "--fleet: the `DIR` to write the public file and the encrypted shares to"},
					&cli.BoolFlag{Name: "print-shares-in-clear", Usage: "--fleet: print the shares in clear instead (no --custodian): for paper"},
				},
				Action: func(c *cli.Context) error {
					if c.Bool("fleet") {
						return initFleetKit(c)
					}
					for _, f := range []string{"custodian", "out", "print-shares-in-clear"} {
						if c.IsSet(f) {
							return usagef("--%s is for a fleet kit: add --fleet", f)
						}
					}
					cfg, err := configNoArgs(c)
					if err != nil {
						return err
					}
					kit, shares, err := recovery.NewKit(c.Int("shares"), c.Int("threshold"), time.Now())
					if err != nil {
						return usagef("%v", err)
					}
					defer recovery.DestroyShares(shares)
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
					printShares(w, shares)
					return nil
				},
			},
			{
				Name:  "restore",
				Usage: "read K shares on stdin and re-wrap every data key to this host and its current backend",
				Description: "restore rebuilds a kit's private key from the shares given on standard input (in any\n" +
					"order, in clear or encrypted to the restore key it prints first), opens every data key\n" +
					"with it, and re-wraps them to this host and the backend now configured (a new HSM key,\n" +
					"a new TPM, a new boot state, a new machine), in one transaction. Each restored envelope\n" +
					"is opened with the new backend before anything is committed.",
				Action: restore,
			},
		},
	}
}

func printShares(w io.Writer, shares []recovery.Share) {
	fmt.Fprintf(w, "Give each line below to a different custodian. They are shown this once and stored nowhere.\n\n")
	for _, sh := range shares {
		fmt.Fprintln(w, sh.String())
	}
}

// A custodian is one --custodian file: a name (the file's, for the share
// file) and the key the share is encrypted to.
type custodian struct {
	name string
	key  *recovery.Recipient
}

var custodianName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// readCustodians reads the --custodian files.
func readCustodians(paths []string) ([]custodian, error) {
	var cs []custodian
	seen := map[string]string{}
	for _, p := range paths {
		name := filepath.Base(p)
		for _, ext := range []string{".pub", ".txt", ".age", ".key"} {
			name = strings.TrimSuffix(name, ext)
		}
		if !custodianName.MatchString(name) {
			return nil, usagef("--custodian %s: name the file after the custodian, with letters, digits, '.', '_' or '-' (e.g. alice.pub)", p)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("--custodian: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(f, recovery.MaxRecipientFile+1))
		f.Close()
		if err != nil {
			return nil, err
		}
		key, err := recovery.ParseRecipient(b)
		if err != nil {
			return nil, fmt.Errorf("--custodian %s: %w", p, err)
		}
		if prev, dup := seen[key.String()]; dup {
			return nil, usagef("--custodian %s and %s hold the same key: each share needs a custodian of its own", prev, p)
		}
		for _, c := range cs {
			if c.name == name {
				return nil, usagef("two custodian files are named %s: the share files are named after them", name)
			}
		}
		seen[key.String()] = p
		cs = append(cs, custodian{name, key})
	}
	return cs, nil
}

// initFleetKit is recovery init --fleet: the kit for many hosts, made on
// a workstation with no store or HSM.
func initFleetKit(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("recovery init takes no arguments")
	}
	if c.IsSet("replace") {
		return usagef("--replace is for a host kit: a fleet kit is replaced by making a new one and configuring the hosts with it")
	}
	paths := c.StringSlice("custodian")
	inClear := c.Bool("print-shares-in-clear")
	out := c.String("out")
	switch {
	case inClear && len(paths) > 0:
		return usagef("--print-shares-in-clear and --custodian exclude each other: shares are either encrypted to custodians or printed")
	case !inClear && len(paths) == 0:
		return withHint(usagef("give each custodian's public key with --custodian FILE (one per share)"),
			"or add --print-shares-in-clear to print the shares in clear, for paper")
	case out == "":
		return usagef("--out DIR is needed: where to write the kit's public file")
	case len(paths) > 0 && c.IsSet("shares") && c.Int("shares") != len(paths):
		return usagef("--shares %d, but %d --custodian files: there is one share per custodian", c.Int("shares"), len(paths))
	}
	custodians, err := readCustodians(paths)
	if err != nil {
		return err
	}
	n := c.Int("shares")
	if len(custodians) > 0 {
		n = len(custodians)
	}
	kit, shares, err := recovery.NewKit(n, c.Int("threshold"), time.Now())
	if err != nil {
		return usagef("%v", err)
	}
	defer recovery.DestroyShares(shares)
	files := map[string][]byte{"fleet.kit": kit.MarshalPublic()}
	names := make([]string, len(custodians))
	for i, cu := range custodians {
		b, err := shares[i].Encrypt(cu.key)
		if err != nil {
			return err
		}
		names[i] = fmt.Sprintf("share-%d-%s.age", i+1, cu.name)
		files[names[i]] = b
	}
	if err := writeNewFiles(out, files); err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "fleet recovery kit %s: %d of %d shares recover it.\n", kit.ID, kit.Threshold, kit.Shares)
	fmt.Fprintf(w, "public file: %s (install it on every host, named by recovery.fleet_kit)\n", filepath.Join(out, "fleet.kit"))
	if inClear {
		printShares(w, shares)
		return nil
	}
	for i, cu := range custodians {
		fmt.Fprintf(w, "share %d of %d for %s (%s): %s\n", i+1, kit.Shares, cu.name, cu.key, filepath.Join(out, names[i]))
	}
	fmt.Fprintln(w, "Send each custodian their file: only their key opens it. No share was written or printed in clear.")
	return nil
}

// writeNewFiles creates dir if needed and writes each file in it, mode
// 0644 (public or encrypted), never replacing one; on failure it removes
// what it wrote.
func writeNewFiles(dir string, files map[string][]byte) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := writeFileNew(p, b, 0o644); errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w (recovery init --fleet never overwrites: use a new --out directory)", err)
		} else if err != nil {
			return err
		}
		written = append(written, p)
	}
	return nil
}

// loadFleetKit reads the fleet kit recovery.fleet_kit names, nil if none.
// Whoever can replace it receives every data key sealed afterwards, so it
// is trusted like the configuration.
func loadFleetKit(cfg config.Config) (*recovery.Kit, error) {
	path := cfg.Recovery.FleetKit
	if path == "" {
		return nil, nil
	}
	b, err := trust.ReadFile("fleet recovery kit", path, trust.Public, recovery.MaxPublicFileSize)
	if err != nil {
		return nil, fmt.Errorf("recovery.fleet_kit: %w", err)
	}
	kit, err := recovery.ParsePublic(b)
	if err != nil {
		return nil, fmt.Errorf("recovery.fleet_kit %s: %w", path, err)
	}
	return kit, nil
}

// checkRestore checks, without a backend, that the store has something
// to restore.
func checkRestore(cfg config.Config, host store.HostID) error {
	s, err := store.New(store.Config{Dir: cfg.Store.Dir, Host: host})
	if err != nil {
		return err
	}
	return s.CheckRestore()
}

// restore is recovery restore.
func restore(c *cli.Context) error {
	cfg, err := configNoArgs(c)
	if err != nil {
		return err
	}
	fleet, err := loadFleetKit(cfg)
	if err != nil {
		return err
	}
	// What can fail before the shares are read fails first: custodians'
	// work is not asked for in vain.
	if err := noAgentRuns(c, cfg); err != nil {
		return err
	}
	host, err := store.ReadHostID(cfg.Store.MachineIDFile)
	if err != nil {
		return err
	}
	if err := checkRestore(cfg, host); err != nil {
		return err
	}
	key, err := recovery.NewRestoreKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "keyward: the restore key, which only this process holds (the second line for age older than 1.3):\n%s\n%s\n"+
		"keyward: each custodian, on their own machine: age -d -i KEY share-N-NAME.age | age -a -r RESTORE_KEY\n"+
		"keyward: paste what they send, or shares in clear, then end the input (Ctrl-D)\n",
		key.Recipient(), key.ClassicRecipient())
	text, err := io.ReadAll(io.LimitReader(c.App.Reader, recovery.MaxSharesInput+1))
	if err != nil {
		return err
	}
	defer clear(text)
	shares, err := recovery.ReadShares(text, key)
	if err != nil {
		return err
	}
	defer recovery.DestroyShares(shares)
	if len(shares) == 0 {
		return fmt.Errorf("%w: no share on standard input", recovery.ErrNotEnoughShares)
	}
	b, records, err := backend.ForRestore(c.Context, cfg, backendOptions(c))
	if err != nil {
		return err
	}
	defer b.Close()
	s, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: host, FleetKit: fleet})
	if err != nil {
		return err
	}
	kit, err := s.RecoveryKit(shares[0].KitID)
	if err != nil {
		return err
	}
	priv, err := recovery.Combine(kit, shares)
	if err != nil {
		return err
	}
	defer priv.Destroy()
	res, err := s.Restore(c.Context, priv, records)
	if errors.Is(err, store.ErrIntegrity) {
		return withHint(err, "nothing was changed; check that store.machine_id_file and the backend settings are this host's")
	}
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "restored %d envelope(s) to %s, host %s, with recovery kit %s\n", res.Envelopes, b.KeyID(), host, kit.ID)
	for _, id := range res.Dropped {
		warn(c.App.ErrWriter, fmt.Sprintf("recovery kit %s could not be verified with these shares and was dropped", id),
			"make a new host kit with keyward recovery init if this host needs one")
	}
	// Anyone who could write the store could have planted an envelope
	// sealed to the kit's public key: show what was restored, for the
	// operator to check.
	if envs, _, err := s.List(); err == nil {
		for _, e := range envs {
			fmt.Fprintf(w, "  %s version %d, created %s\n", e.Name, e.Version, formatTime(e.Created))
		}
		fmt.Fprintln(w, "check that these are the secrets you expect before serving them")
	}
	return nil
}
