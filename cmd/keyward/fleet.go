package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/pin"
	"github.com/keyward/keyward/internal/secretname"
	"github.com/keyward/keyward/internal/trust"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/fleet"
)

// Fleet provisioning (docs/fleet.md): enroll on each host, seal on a
// workstation, import on each host. seal needs no configuration, no
// backend and no cgo (with a key file).

// provisionerPINCredential is the systemd credential that may hold the
// PIN of a provisioner key in a token.
const provisionerPINCredential = "keyward-provisioner-pin"

func enrollCommand() *cli.Command {
	return &cli.Command{
		Name:  "enroll",
		Usage: "make this host's import key and print its recipient file (safe to run again)",
		Description: "enroll makes the host's import key, wrapped by the backend like a data key and bound to\n" +
			"this host, and prints the recipient file that provisioners seal bundles to (docs/fleet.md).\n" +
			"Run again, it prints the same file without opening the backend, also beside a running agent.\n" +
			"--rotate replaces the key: bundles sealed to the old one are refused from then on.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rotate", Usage: "replace the import key"},
			&cli.StringFlag{Name: "out", Usage: "write the recipient file to `FILE` instead of standard output"},
			&cli.StringFlag{Name: "hostname", Usage: "the host's `NAME` in the recipient file (default: its hostname)"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := configNoArgs(c)
			if err != nil {
				return err
			}
			hostname := c.String("hostname")
			if hostname == "" {
				if hostname, err = os.Hostname(); err != nil {
					return err
				}
			}
			s, err := openStoreNoBackend(cfg)
			if err != nil {
				return err
			}
			r, err := s.Recipient(hostname)
			created := false
			switch {
			case err == nil && !c.Bool("rotate"):
			case err == nil, errors.Is(err, store.ErrNotEnrolled):
				if r, err = newImportKey(c, cfg, hostname); err != nil {
					return err
				}
				created = true
			default:
				return err
			}
			if err := writeRecipient(c, r); err != nil {
				return err
			}
			verb := "import key"
			if created {
				verb = "created import key"
			}
			fmt.Fprintf(c.App.ErrWriter, "keyward: %s %s (host %x, created %s); compare this fingerprint with the recipient file the provisioner seals to\n",
				verb, r.ID(), r.Host, formatTime(r.Created))
			return nil
		},
	}
}

// newImportKey makes (or replaces) the import key with the backend, which
// no running agent may hold.
func newImportKey(c *cli.Context, cfg config.Config, hostname string) (*fleet.Recipient, error) {
	s, b, err := openStoreAlone(c, cfg)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	k, _, err := s.Enroll(c.Context, c.Bool("rotate"))
	if err != nil {
		return nil, err
	}
	return k.Recipient(hostname, b.KeyID()), nil
}

// writeRecipient checks and writes r to --out or standard output.
func writeRecipient(c *cli.Context, r *fleet.Recipient) error {
	b := r.Marshal()
	if _, err := fleet.ParseRecipient(b); err != nil {
		return withHint(err, "give the host a name of letters, digits, '.', '-' and '_' with --hostname")
	}
	out := c.String("out")
	if out == "" {
		_, err := c.App.Writer.Write(b)
		return err
	}
	return writeFileAtomic(out, b, 0o644)
}

func sealCommand() *cli.Command {
	return &cli.Command{
		Name:      "seal",
		Usage:     "seal a secret for hosts, as signed bundles to ship to them (on a workstation; no HSM needed)",
		ArgsUsage: "NAME",
		Description: "seal reads the value like put (standard input, or --from-file; with --exchange and --api-key an\n" +
			"exchange credential, checked first) and writes, for each\n" +
			"recipient file given with --to, a bundle OUT/HOST/NAME.kwb, where HOST is the recipient\n" +
			"file's name without its extension and '/' in NAME is '+'. Each bundle is encrypted to that\n" +
			"host's import key and signed by the provisioner key (--key FILE, or --pkcs11 URI for a key in\n" +
			"a token: a smart card, a YubiKey, an HSM). Ship the bundles to the hosts' inboxes\n" +
			"(fleet.inbox) and reload their agents, or run keyward import there. A newer bundle for the\n" +
			"same secret replaces an older one; a host refuses one older than what it imported last.",
		Flags: append(append(provisionerFlags(), sealValueFlags()...),
			&cli.StringSliceFlag{Name: "to", Usage: "seal for the host of recipient `FILE` (repeat, or use a shell glob)", Required: true},
			&cli.StringFlag{Name: "out", Usage: "write the bundles under `DIR`", Value: "bundles"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("seal takes exactly one argument, the secret's NAME; the value is read from stdin or --from-file")
			}
			name := c.Args().First()
			if err := secretname.Check(name); err != nil {
				return usagef("%v", err)
			}
			contents := fleet.Contents{Name: name, Counter: uint64(time.Now().UnixNano())}
			if e := c.String("expires"); e != "" {
				t, err := parseExpiry(e, time.Now())
				if err != nil {
					return usagef("%v", err)
				}
				contents.Expires = t
			}
			recipients, err := readRecipients(c.StringSlice("to"))
			if err != nil {
				return err
			}
			p, done, err := openProvisioner(c)
			if err != nil {
				return err
			}
			defer done()
			value, cred, err := readSecret(c, name)
			if err != nil {
				return err
			}
			defer clear(value)
			if cred != nil {
				contents.Credential = &fleet.Credential{Exchange: cred.Exchange, KeyID: cred.KeyID, KeyType: cred.KeyType}
			}
			out := c.String("out")
			for _, r := range recipients {
				b, err := fleet.Seal(r.Recipient, p, contents, value)
				if err != nil {
					return fmt.Errorf("%s: %w", r.file, err)
				}
				dir := filepath.Join(out, r.host)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				if err := writeFileAtomic(filepath.Join(dir, strings.ReplaceAll(name, "/", "+")+store.BundleExt), b.Marshal(), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.App.Writer, "sealed %s for %d host(s) into %s, signed by provisioner %s (counter %d)\n",
				name, len(recipients), out, p.Key().ID(), contents.Counter)
			return nil
		},
	}
}

// sealValueFlags are put's value flags that seal takes: all but --grace,
// which is the host's (store.grace).
func sealValueFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range valueFlags() {
		if f.Names()[0] != "grace" {
			out = append(out, f)
		}
	}
	return out
}

// A recipientFile is a recipient read from a file; host names its
// bundles' directory.
type recipientFile struct {
	*fleet.Recipient
	file, host string
}

// readRecipients reads the recipient files, refusing two for one host.
func readRecipients(files []string) ([]recipientFile, error) {
	var out []recipientFile
	seen := map[[fleet.HostIDSize]byte]string{}
	dirs := map[string]string{}
	for _, f := range files {
		b, err := readBoundedPublic(f, fleet.MaxRecipientSize)
		if err != nil {
			return nil, err
		}
		r, err := fleet.ParseRecipient(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if prev, ok := seen[r.Host]; ok {
			return nil, fmt.Errorf("%s and %s are recipient files of one host (%x); give only the newest", prev, f, r.Host)
		}
		host := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		if prev, ok := dirs[host]; ok {
			return nil, fmt.Errorf("%s and %s would write their bundles into one directory %s; rename one", prev, f, host)
		}
		seen[r.Host], dirs[host] = f, f
		out = append(out, recipientFile{Recipient: r, file: f, host: host})
	}
	return out, nil
}

// readBoundedPublic reads a file of at most max bytes.
func readBoundedPublic(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// provisionerFlags select the provisioner's signing key.
func provisionerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key", Usage: "the provisioner's private key `FILE` (mode 0600; keyward provisioner new)"},
		&cli.StringFlag{Name: "pkcs11", Usage: "the provisioner's key in a token, as a PKCS #11 `URI` (pin-source=file:... or a prompt)"},
	}
}

// openProvisioner opens the signing key --key or --pkcs11 names. done
// closes it.
func openProvisioner(c *cli.Context) (p *fleet.Provisioner, done func(), err error) {
	file, uri := c.String("key"), c.String("pkcs11")
	switch {
	case (file == "") == (uri == ""):
		return nil, nil, usagef("name the provisioner key with exactly one of --key FILE and --pkcs11 URI")
	case file != "":
		b, err := trust.ReadFile("provisioner key", file, trust.Private, 4096)
		if err != nil {
			return nil, nil, err
		}
		defer clear(b)
		p, err := fleet.ParsePrivateKeyFile(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		return p, func() {}, nil
	}
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return nil, nil, usagef("--pkcs11: %v", err)
	}
	what := "the provisioner key's token"
	if u.Token() != "" {
		what = fmt.Sprintf("token %q", u.Token())
	}
	pinBytes, err := pin.Read(pin.Source{Credential: provisionerPINCredential, URIFile: u.PINFile(), For: what})
	if err != nil {
		return nil, nil, err
	}
	defer clear(pinBytes)
	s, err := hsm.OpenSigner(hsm.Config{URI: u, PIN: pinBytes})
	if err != nil {
		return nil, nil, withHint(err, "a keyward built without cgo cannot use PKCS #11 tokens: sign with a key file (--key) instead")
	}
	if p, err = fleet.NewProvisioner(s); err != nil {
		s.Close()
		return nil, nil, err
	}
	return p, func() { s.Close() }, nil
}

func provisionerCommand() *cli.Command {
	return &cli.Command{
		Name:  "provisioner",
		Usage: "make a provisioner key, or print the public key hosts list in fleet.provisioners",
		Subcommands: []*cli.Command{
			{
				Name:  "new",
				Usage: "make a provisioner key file (mode 0600) and print its public key",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "the new key `FILE`", Required: true},
					&cli.StringFlag{Name: "type", Usage: "ed25519 or ecdsa-p256", Value: fleet.KeyEd25519},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return usagef("provisioner new takes no arguments")
					}
					pemKey, err := fleet.GenerateKeyFile(c.String("type"))
					if err != nil {
						return usagef("%v", err)
					}
					defer clear(pemKey)
					p, err := fleet.ParsePrivateKeyFile(pemKey)
					if err != nil {
						return err
					}
					if err := writeFileNew(c.String("out"), pemKey, 0o600); errors.Is(err, fs.ErrExist) {
						return withHint(err, "keyward never overwrites a key file: choose another name")
					} else if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, p.Key())
					fmt.Fprintf(c.App.ErrWriter, "keyward: provisioner %s; list the line above in fleet.provisioners of each host it provisions\n", p.Key().ID())
					return nil
				},
			},
			{
				Name:  "key",
				Usage: "print the public key of a provisioner key (--key FILE or --pkcs11 URI)",
				Flags: provisionerFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return usagef("provisioner key takes no arguments")
					}
					p, done, err := openProvisioner(c)
					if err != nil {
						return err
					}
					defer done()
					fmt.Fprintln(c.App.Writer, p.Key())
					return nil
				},
			},
		},
	}
}

// fleetOptions returns the import options of the configuration.
func fleetOptions(cfg config.Config) (store.ImportOptions, error) {
	opts := store.ImportOptions{Grace: cfg.Store.Grace.Duration}
	for i, s := range cfg.Fleet.Provisioners {
		k, err := fleet.ParseProvisionerKey(s)
		if err != nil {
			return opts, fmt.Errorf("fleet.provisioners[%d]: %w", i, err)
		}
		opts.Provisioners = append(opts.Provisioners, k)
	}
	return opts, nil
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "import bundles sealed for this host: each becomes the next version of its secret",
		ArgsUsage: "FILE...",
		Description: "import checks each bundle — addressed to this host, signed by a provisioner listed in\n" +
			"fleet.provisioners, newer than the last one imported for its secret — and stores its value\n" +
			"as the next version, like rotate; the previous version is served for store.grace. Imported\n" +
			"files are deleted; refused ones are left and named with the reason. With an agent running,\n" +
			"the bundles go into its inbox (fleet.inbox) and the agent imports and serves them before\n" +
			"import returns.",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("import takes the bundle FILEs to import")
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			opts, err := fleetOptions(cfg)
			if err != nil {
				return err
			}
			cl, err := runningAgent(c, cfg)
			if err != nil {
				return err
			}
			if cl != nil {
				defer cl.Close()
				return importThroughAgent(c, cfg, opts, cl)
			}
			s, b, err := openStore(c, cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			var bundles []*fleet.Bundle
			var files []string
			refused := 0
			for _, f := range c.Args().Slice() {
				bd, err := store.ReadBundleFile(f)
				if err != nil {
					warn(c.App.ErrWriter, fmt.Sprintf("refused %s: %v", f, err))
					refused++
					continue
				}
				bundles, files = append(bundles, bd), append(files, f)
			}
			imported, errs, err := s.Import(c.Context, bundles, opts)
			if err != nil {
				return importHint(err)
			}
			for i, f := range files {
				if errs[i] != nil {
					warn(c.App.ErrWriter, fmt.Sprintf("refused %s: %v", f, errs[i]))
					refused++
					continue
				}
				fmt.Fprintf(c.App.Writer, "%s: %s version %d from provisioner %s\n", f, imported[i].Name, imported[i].Version, imported[i].Provisioner)
				if err := os.Remove(f); err != nil {
					warn(c.App.ErrWriter, fmt.Sprintf("imported %s, but could not delete it: %v", f, err))
				}
			}
			noAgent(c, cfg)
			if refused > 0 {
				return fmt.Errorf("%d of %d bundle(s) refused; nothing of them was stored", refused, c.NArg())
			}
			return nil
		},
	}
}

// importHint adds what to do about an error that stops every import.
func importHint(err error) error {
	switch {
	case errors.Is(err, store.ErrNotEnrolled):
		return withHint(err, "run keyward enroll, give its recipient file to the provisioner, and import what it seals for it")
	case errors.Is(err, store.ErrImportKeyHost):
		return withHint(err, "run keyward enroll --rotate and give the new recipient file to the provisioner")
	}
	return err
}

// importThroughAgent checks the bundles as far as it can without the
// import key, puts them into the running agent's inbox and has it reload,
// which imports them.
func importThroughAgent(c *cli.Context, cfg config.Config, opts store.ImportOptions, cl *client.Client) error {
	inbox := cfg.Fleet.Inbox
	if inbox == "" {
		return withHint(fmt.Errorf("an agent runs on %s, and fleet.inbox is empty: it takes no bundles", agentSocket(cfg)),
			"set fleet.inbox and reload the agent, or stop the agent to import into the store directly")
	}
	st, err := openStoreNoBackend(cfg)
	if err != nil {
		return err
	}
	host, err := store.ReadHostID(cfg.Store.MachineIDFile)
	if err != nil {
		return err
	}
	type dropped struct{ file, path, name string }
	var ds []dropped
	refused := 0
	for _, f := range c.Args().Slice() {
		b, err := store.ReadBundleFile(f)
		if err == nil && b.Host != host {
			err = fmt.Errorf("%w: it is addressed to host %x, and this host is %s", fleet.ErrOtherHost, b.Host, host)
		}
		if err == nil {
			err = b.Verify(opts.Provisioners)
		}
		if err == nil {
			// The counters are the store owner's: others leave it to the agent.
			if cerr := st.CheckCounter(b.Name, b.Counter); errors.Is(cerr, store.ErrReplay) {
				err = cerr
			}
		}
		if err != nil {
			warn(c.App.ErrWriter, fmt.Sprintf("refused %s: %v", f, err))
			refused++
			continue
		}
		// Bundles are encrypted: readable by the agent whoever drops them.
		path := filepath.Join(inbox, fmt.Sprintf("%s.%d%s", strings.ReplaceAll(b.Name, "/", "+"), b.Counter, store.BundleExt))
		if err := writeFileAtomic(path, b.Marshal(), 0o644); err != nil {
			return withHint(fmt.Errorf("cannot put %s into the agent's inbox: %w", f, err),
				"run keyward import as root or as the agent's user, or stop the agent to import into the store directly")
		}
		ds = append(ds, dropped{f, path, b.Name})
	}
	served := map[string]uint32{}
	for _, d := range ds {
		if _, done := served[d.name]; done {
			continue
		}
		v, err := cl.Reload(c.Context, d.name)
		if errors.Is(err, client.ErrDenied) {
			return withHint(fmt.Errorf("the bundles are in the inbox %s, and the agent refused to reload %s for this user", inbox, d.name),
				"the agent imports them at its next reload: systemctl reload keyward", `or grant this user allow = ["admin"] on the names (docs/policy.md)`)
		}
		if err != nil {
			return fmt.Errorf("the bundles are in the inbox %s, and the agent did not reload: %w", inbox, err)
		}
		served[d.name] = v
	}
	for _, d := range ds {
		switch _, err := os.Stat(d.path); {
		case err == nil:
			refused++
			warn(c.App.ErrWriter, fmt.Sprintf("%s is still in the inbox: the agent has no import key or could not write its store; see its log", d.file))
		case fileExists(d.path + store.RejectedExt):
			refused++
			warn(c.App.ErrWriter, fmt.Sprintf("the agent refused %s; it says why in its log and audit trail (journalctl -u keyward)", d.file))
		default:
			fmt.Fprintf(c.App.Writer, "%s: the agent now serves %s version %d\n", d.file, d.name, served[d.name])
			if err := os.Remove(d.file); err != nil {
				warn(c.App.ErrWriter, fmt.Sprintf("imported %s, but could not delete it: %v", d.file, err))
			}
		}
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d bundle(s) refused; nothing of them was stored", refused, c.NArg())
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// fleetImporter prepares the agent for fleet provisioning when the
// configuration asks for it (fleet.inbox or fleet.provisioners): it makes
// the import key if there is none — the agent holds the backend, so that
// keyward enroll can then print the recipient file beside it — and the
// inbox (0700), and returns what imports the inbox into st; nil when the
// host takes no bundles.
//
// Each import reads the provisioners (and store.grace) from the
// configuration again with reload, so that one removed from
// fleet.provisioners is refused from the next reload on; when the
// configuration does not load, nothing is imported. The inbox is the one
// named at start.
func fleetImporter(ctx context.Context, cfg config.Config, reload func() (config.Config, error), st *store.Store, log *slog.Logger) (func(context.Context) ([]store.InboxResult, error), error) {
	if cfg.Fleet.Inbox == "" && len(cfg.Fleet.Provisioners) == 0 {
		return nil, nil
	}
	if _, err := fleetOptions(cfg); err != nil {
		return nil, err
	}
	switch k, created, err := st.Enroll(ctx, false); {
	case err != nil:
		// Served all the same: a restore onto new hardware, say, needs
		// an operator's keyward enroll --rotate.
		log.Error("the import key does not open; no bundle can be imported until it is replaced (keyward enroll --rotate)", "err", err)
	case created:
		log.Info("import key made; keyward enroll prints its recipient file", "key", k.ID().String())
	}
	if cfg.Fleet.Inbox == "" {
		return nil, nil
	}
	if err := os.Mkdir(cfg.Fleet.Inbox, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("cannot make the fleet inbox: %w", err)
	}
	inbox := cfg.Fleet.Inbox
	return func(ctx context.Context) ([]store.InboxResult, error) {
		now, err := reload()
		if err != nil {
			return nil, fmt.Errorf("the configuration does not load, so no provisioner is trusted: %w", err)
		}
		opts, err := fleetOptions(now)
		if err != nil {
			return nil, err
		}
		return st.ImportInbox(ctx, inbox, opts)
	}, nil
}
