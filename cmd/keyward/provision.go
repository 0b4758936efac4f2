package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/internal/secretname"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/tty"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the backend key and the store directory (safe to run again)",
		Description: "init finds the key-encryption key named in the configuration or creates it inside\n" +
			"the token (for the tpm backend: the TPM's storage key; for hsm+tpm: it also seals the HSM PIN),\n" +
			"checks that it wraps and unwraps, and creates the store directory (mode 0700).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "backend", Usage: "use this `BACKEND` (pkcs11, tpm, hsm+tpm) instead of the configured one"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := configNoArgs(c)
			if err != nil {
				return err
			}
			if b := c.String("backend"); b != "" && b != cfg.Backend {
				cfg.Backend = b
				if err := cfg.Validate(); err != nil {
					return usagef("--backend %s: %v", b, err)
				}
				defer warn(c.App.ErrWriter, "", fmt.Sprintf("set backend = %q in %s, so that every other command uses it too", b, c.String(configFlag)))
			}
			if _, err := store.ReadHostID(cfg.Store.MachineIDFile); err != nil {
				return err
			}
			if err := noAgentRuns(c, cfg); err != nil {
				return err
			}
			b, created, err := openBackend(c, cfg, true)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := selfTest(c.Context, b); err != nil {
				return err
			}
			if err := store.Init(cfg.Store.Dir); err != nil {
				return err
			}
			w := c.App.Writer
			switch {
			case cfg.Backend == config.BackendTPM:
				if _, legacy := b.(*backend.Legacy); legacy {
					fmt.Fprintf(w, "TPM storage key %s is ready; this store seals each data key on its own: move it to a store key with keyward rewrap\n", b.KeyID())
				} else {
					fmt.Fprintf(w, "TPM store key %s is ready, sealed to PCRs %s\n", b.KeyID(), cfg.TPM.PCRs)
				}
			case created && cfg.Backend == config.BackendHSMTPM:
				fmt.Fprintf(w, "key-encryption key %s is ready; the HSM PIN is sealed to PCRs %s in %s\n", b.KeyID(), cfg.TPM.PCRs, backend.SealedPINPath(cfg))
			case created:
				fmt.Fprintf(w, "created key-encryption key %s\n", b.KeyID())
			default:
				fmt.Fprintf(w, "key-encryption key %s already exists; nothing changed\n", b.KeyID())
			}
			fmt.Fprintf(w, "store directory %s is ready\n", cfg.Store.Dir)
			if cfg.Backend != config.BackendTPM && isSoftHSM(cfg) {
				softHSMWarning(c.App.ErrWriter)
			}
			return nil
		},
	}
}

// softHSMWarning is what init says when the key is in a SoftHSM token.
func softHSMWarning(w io.Writer) {
	warn(w, "the key-encryption key is in a SoftHSM token: a file in SoftHSM's token directory "+
		"(directories.tokendir in softhsm2.conf), which SoftHSM rewrites at every login. "+
		"Losing or corrupting that directory loses every secret in the store.",
		"back the token directory up now, and make a recovery kit: keyward recovery init (docs/recovery.md)",
		"SoftHSM is for tests and development; use a hardware token or the TPM in production (docs/hsm.md)")
}

// isSoftHSM reports whether the configured PKCS #11 module is SoftHSM.
func isSoftHSM(cfg config.Config) bool {
	u, err := hsm.ParseURI(cfg.PKCS11.URI)
	if err != nil {
		return false
	}
	p, err := u.ModulePath()
	return err == nil && strings.Contains(strings.ToLower(filepath.Base(p)), "softhsm")
}

// selfTest wraps and unwraps a random data key, so a broken backend is
// found now rather than at the first put.
func selfTest(ctx context.Context, b store.Backend) error {
	key := make([]byte, store.DataKeySize)
	copy(key, "keyward self-test data key......")
	w, err := b.Wrap(ctx, key)
	if err != nil {
		return fmt.Errorf("backend self-test failed to wrap: %w", err)
	}
	got, err := b.Unwrap(ctx, w)
	if err != nil {
		return fmt.Errorf("backend self-test failed to unwrap: %w", err)
	}
	if string(got) != string(key) {
		return errors.New("backend self-test: unwrap returned another key")
	}
	return nil
}

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store a secret read from stdin or a file",
		ArgsUsage: "NAME",
		Description: "put reads the value from standard input (prompting without echo at a terminal) or\n" +
			"from --from-file, seals it and prints the new version. One trailing newline is removed\n" +
			"unless --keep-newline is given. The value is never taken from the command line.\n" +
			"With --new-version it rotates the secret, like keyward rotate.\n\n" +
			"With --exchange and --api-key the value is an exchange API credential, which the agent\n" +
			"signs with and never serves to a caller that may only sign (docs/signing.md): the HMAC\n" +
			"secret, or a PEM private key (use --from-file); for OKX, the secret, a line break and\n" +
			"the passphrase. It is checked with the exchange's rules before it is stored.",
		Flags: append(valueFlags(), &cli.BoolFlag{Name: "new-version", Usage: "add a version to an existing secret (a rotation)"}),
		Action: func(c *cli.Context) error {
			return storeValue(c, c.Bool("new-version"), false)
		},
	}
}

func rotateCommand() *cli.Command {
	return &cli.Command{
		Name:      "rotate",
		Usage:     "store the next version of a secret and make it current",
		ArgsUsage: "NAME",
		Description: "rotate reads the new value like put and stores it as the next version. The previous\n" +
			"version stays servable for the grace period (--grace, default store.grace, 24h), then is\n" +
			"refused as expired and deleted by the agent or keyward prune. A running agent serves the\n" +
			"new version before rotate returns: no restart, no dropped connection. A name that does\n" +
			"not exist is refused: a typo during an incident must not create a secret. --dry-run\n" +
			"says what it would store, and reads no value.",
		Flags: append(valueFlags(), dryRunFlag),
		Action: func(c *cli.Context) error {
			return storeValue(c, true, true)
		},
	}
}

// valueFlags are the flags of the commands that store a value.
func valueFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "from-file", Usage: "read the value from `FILE` instead of stdin"},
		&cli.StringFlag{Name: "expires", Usage: "stop serving the version after `DURATION` (90d, 12h) or at an RFC 3339 time"},
		&cli.StringFlag{Name: "grace", Usage: "keep the previous version servable for `DURATION` (default: store.grace)"},
		&cli.BoolFlag{Name: "keep-newline", Usage: "keep a trailing newline in the value"},
		&cli.StringFlag{Name: "exchange", Usage: "store an API credential of `EXCHANGE` (binance, bybit, okx, kraken, coinbase) for signing inside the agent"},
		&cli.StringFlag{Name: "api-key", Usage: "the credential's public API key `ID` (with --exchange)"},
	}
}

// readSecret reads the value that put, rotate and seal store, with
// --exchange and --api-key an exchange credential's, which is checked with
// the exchange's rules first (cred nil: a plain secret). The caller
// clears the value.
func readSecret(c *cli.Context, name string) (value []byte, cred *store.CredentialInfo, err error) {
	x, keyID, err := credentialFlags(c)
	if err != nil {
		return nil, nil, err
	}
	if x == string(exchange.OKX) && c.String("from-file") == "" && isTerminal(c.App.Reader) {
		value, err = readOKXCredential(name)
	} else {
		value, err = readValue(c, name)
	}
	if err != nil {
		return nil, nil, err
	}
	if cred, err = checkCredential(x, keyID, value); err != nil {
		clear(value)
		return nil, nil, err
	}
	return value, cred, nil
}

// storeValue is put and rotate: it seals the value read from stdin or a
// file as the first or the next version (mustExist: only the next), through
// a running agent, which serves it at once, or in the store directly.
func storeValue(c *cli.Context, newVersion, mustExist bool) error {
	if c.NArg() != 1 {
		return usagef("%s takes exactly one argument, the secret's NAME; the value is read from stdin "+
			"or --from-file, never from the command line, where ps and shell history would show it", c.Command.Name)
	}
	name := c.Args().First()
	if err := secretname.Check(name); err != nil {
		return usagef("%v", err)
	}
	var expires time.Time
	if e := c.String("expires"); e != "" {
		t, err := parseExpiry(e, time.Now())
		if err != nil {
			return usagef("%v", err)
		}
		expires = t
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	grace := cfg.Store.Grace.Duration
	if g := c.String("grace"); g != "" {
		if grace, err = config.ParseDuration(g); err != nil {
			return usagef("--grace: %v", err)
		}
	}
	if c.Bool(dryRunFlag.Name) {
		return dryRunRotate(c, cfg, name, grace)
	}
	value, cred, err := readSecret(c, name)
	if err != nil {
		return err
	}
	defer clear(value)
	cl, err := runningAgent(c, cfg)
	if err != nil {
		return err
	}
	var v uint32
	var prevUntil time.Time
	if cl != nil {
		defer cl.Close()
		opts := client.PutOptions{NewVersion: newVersion, MustExist: mustExist, Expires: expires, Grace: grace}
		var st *client.Stored
		if cred != nil {
			st, err = cl.PutCredential(c.Context, name, cred.Exchange, cred.KeyID, value, opts)
		} else {
			st, err = cl.Put(c.Context, name, value, opts)
		}
		if err != nil {
			return agentRefused(err, name)
		}
		v, prevUntil = st.Version, st.PrevUntil
	} else {
		s, b, err := openStore(c, cfg)
		if err != nil {
			return err
		}
		defer b.Close()
		v, err = s.Put(c.Context, name, value, store.PutOptions{NewVersion: newVersion, MustExist: mustExist,
			Expires: expires, Grace: grace, Credential: cred})
		if err != nil {
			return err
		}
		if v > 1 && grace > 0 {
			prevUntil = time.Now().Add(grace)
		}
	}
	switch {
	case v > 1 && !prevUntil.IsZero():
		fmt.Fprintf(c.App.Writer, "%s version %d (version %d served until %s)\n", name, v, v-1, formatTime(prevUntil))
	case v > 1:
		fmt.Fprintf(c.App.Writer, "%s version %d (version %d retired)\n", name, v, v-1)
	default:
		fmt.Fprintf(c.App.Writer, "%s version %d\n", name, v)
	}
	if cl != nil {
		fmt.Fprintf(c.App.Writer, "the agent now serves %s version %d\n", name, v)
	} else {
		noAgent(c, cfg)
	}
	return nil
}

// readValue reads a secret value from --from-file or stdin, bounded by
// store.MaxSecretSize, and removes one trailing newline unless asked not to.
func readValue(c *cli.Context, name string) ([]byte, error) {
	var value []byte
	var err error
	switch path := c.String("from-file"); {
	case path != "":
		value, err = readBoundedFile(path)
	case isTerminal(c.App.Reader):
		value, err = tty.ReadHidden(fmt.Sprintf("value for %s (input hidden): ", name), store.MaxSecretSize)
	default:
		value, err = readBounded(c.App.Reader, store.MaxSecretSize+2)
	}
	if err != nil {
		return nil, err
	}
	if !c.Bool("keep-newline") {
		n := len(value)
		if n > 0 && value[n-1] == '\n' {
			n--
			if n > 0 && value[n-1] == '\r' {
				n--
			}
		}
		value = value[:n]
	}
	if len(value) == 0 {
		return nil, errors.New("the secret value is empty; nothing was stored")
	}
	if len(value) > store.MaxSecretSize {
		clear(value)
		return nil, fmt.Errorf("the secret value is larger than %d bytes; nothing was stored", store.MaxSecretSize)
	}
	return value, nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && tty.IsTerminal(f)
}

func readBoundedFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, store.MaxSecretSize+2)
}

// readBounded reads all of r into one buffer allocated up front, so no
// partial copies of the secret are left behind by growth, and fails if r
// holds more than max bytes.
func readBounded(r io.Reader, max int) ([]byte, error) {
	buf := make([]byte, max+1)
	n, err := io.ReadFull(r, buf)
	if err == nil {
		clear(buf)
		return nil, fmt.Errorf("the secret value is larger than %d bytes; nothing was stored", store.MaxSecretSize)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		clear(buf)
		return nil, fmt.Errorf("failed to read the secret value: %w", err)
	}
	return buf[:n:n], nil
}

// parseExpiry accepts a positive duration from now (see
// config.ParseDuration) or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := config.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--expires %q is neither a positive duration (90d, 12h) nor an RFC 3339 time (2027-01-31T00:00:00Z)", s)
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list secrets and versions (never values)",
		Description: "list reads the store's metadata and shows each version's state. A version whose\n" +
			"envelope cannot be read, or was sealed on another host, is DAMAGED. When an agent runs,\n" +
			"what it could not load (a damaged envelope, a backend that did not answer) is shown too.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			cfg, s, err := storeNoArgs(c)
			if err != nil {
				return err
			}
			secrets, unnamed, err := s.Secrets()
			if err != nil {
				return err
			}
			doc := listDocument(secrets, unnamed, time.Now(), cfg.Store.ExpiryWarning.Duration, agentProblems(c, cfg))
			if c.Bool(jsonFlag.Name) {
				if err := writeJSON(c.App.Writer, doc); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tCREATED\tEXPIRES\tSTATE")
				for _, sec := range doc.Secrets {
					for _, v := range sec.Versions {
						fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", sec.Name, v.Version, orDash(v.Created), orNever(v), versionState(&v))
					}
				}
				tw.Flush()
			}
			damaged := len(doc.Unnamed)
			for _, sec := range doc.Secrets {
				for _, v := range sec.Versions {
					if v.Damaged != nil {
						warn(c.App.ErrWriter, *v.Damaged)
						damaged++
					}
				}
			}
			for _, d := range doc.Unnamed {
				warn(c.App.ErrWriter, d)
			}
			if damaged > 0 {
				return withHint(fmt.Errorf("%d envelope(s) are damaged; the others are listed", damaged),
					"restore them from a backup, or put the secrets again (docs/operations.md)",
					"sealed on another host, HSM or TPM (a store moved onto replacement hardware)? keyward recovery restore (docs/recovery.md)")
			}
			return nil
		},
	}
}

// listDocument is what list shows: every version's state at now, with
// what a running agent reports of the secrets it does not serve from their
// newest version.
func listDocument(secrets []*store.SecretInfo, unnamed []error, now time.Time, warn time.Duration, problems map[string]*client.Problem) listJSON {
	doc := listJSON{Secrets: []listSecretJSON{}, Unnamed: []string{}}
	for _, sec := range secrets {
		out := listSecretJSON{Name: sec.Name}
		for _, v := range sec.Versions {
			st := v.State(now, warn)
			j := listVersionJSON{Version: v.Version, State: jsonStates[st], Current: v.Current, Until: jsonTime(v.Until), state: st}
			if e := v.Envelope; e != nil {
				j.Created, j.Expires = jsonTime(e.Created), jsonTime(e.Expires)
			}
			if v.Damaged != nil {
				msg := v.Damaged.Error()
				j.Damaged = &msg
			}
			if p := problems[sec.Name]; p != nil && v.Current {
				j.Agent = &agentProblemJSON{State: p.State, Serving: p.Serving, Newest: p.Newest}
			}
			out.Versions = append(out.Versions, j)
		}
		doc.Secrets = append(doc.Secrets, out)
	}
	for _, d := range unnamed {
		doc.Unnamed = append(doc.Unnamed, d.Error())
	}
	return doc
}

func orDash(t *string) string {
	if t == nil {
		return "-"
	}
	return *t
}

// orNever is the EXPIRES column: "-" for an envelope that cannot be read,
// "never" for no expiry.
func orNever(v listVersionJSON) string {
	switch {
	case v.Created == nil:
		return "-"
	case v.Expires == nil:
		return "never"
	}
	return *v.Expires
}

// versionState says how a version stands, as list shows it, with what
// the agent reports of its secret when one runs.
func versionState(v *listVersionJSON) string {
	p := v.Agent
	switch {
	case v.state == store.StateDamaged:
		return "DAMAGED"
	case v.state == store.StateGrace:
		return "grace until " + orDash(v.Until)
	case p != nil && p.State == "damaged" && p.Serving == v.Version:
		return v.state.String() + "; DAMAGED: it does not decrypt; the agent serves the copy it loaded before"
	case p != nil && p.State == "damaged":
		return v.state.String() + "; DAMAGED: it does not decrypt"
	case p != nil && p.State == "stale":
		return fmt.Sprintf("%s; the agent could not load it and serves version %d", v.state, p.Serving)
	case p != nil:
		return fmt.Sprintf("%s; the agent could not load it", v.state)
	}
	return v.state.String()
}

// agentProblems returns, by name, what a running agent reports it does
// not serve from the newest version; nothing when no agent answers.
func agentProblems(c *cli.Context, cfg config.Config) map[string]*client.Problem {
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, agentSocket(cfg))
	if err != nil {
		return nil
	}
	defer cl.Close()
	h, err := cl.Health(ctx)
	if err != nil {
		return nil
	}
	out := make(map[string]*client.Problem)
	for i := range h.Problems {
		out[h.Problems[i].Name] = &h.Problems[i]
	}
	return out
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func formatExpiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return formatTime(t)
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show an envelope's metadata without decrypting it",
		ArgsUsage: "FILE | NAME[@VERSION]",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("inspect takes one envelope FILE or secret NAME[@VERSION]")
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			path, err := envelopePath(cfg, c.Args().First())
			if err != nil {
				return err
			}
			e, err := store.ReadFile(path)
			if err != nil {
				return err
			}
			h, err := store.ReadHostID(cfg.Store.MachineIDFile)
			doc := inspectJSON{File: path, Format: 1, Name: e.Name, Version: e.Version, Created: jsonTime(e.Created),
				Expires: jsonTime(e.Expires), Backend: e.Backend(), KeyID: e.KeyID, Host: e.Host.String(), ThisHost: err == nil && h == e.Host,
				WrappedKey: len(e.WrappedKey), Ciphertext: len(e.Ciphertext), Value: len(e.Ciphertext) - 16}
			if cr := e.Credential; cr != nil {
				doc.Format = 2
				doc.Credential = &credentialJSON{Exchange: cr.Exchange, KeyID: cr.KeyID, KeyType: cr.KeyType}
			}
			if c.Bool(jsonFlag.Name) {
				return writeJSON(c.App.Writer, doc)
			}
			host := "another host"
			if doc.ThisHost {
				host = "this host"
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 1, ' ', 0)
			fmt.Fprintf(tw, "file:\t%s\n", path)
			fmt.Fprintf(tw, "format:\tkeyward envelope v%d\n", doc.Format)
			fmt.Fprintf(tw, "name:\t%s\n", e.Name)
			fmt.Fprintf(tw, "version:\t%d\n", e.Version)
			fmt.Fprintf(tw, "created:\t%s\n", formatTime(e.Created))
			fmt.Fprintf(tw, "expires:\t%s\n", formatExpiry(e.Expires))
			if cr := e.Credential; cr != nil {
				fmt.Fprintf(tw, "credential:\t%s API key %s (%s)\n", cr.Exchange, cr.KeyID, cr.KeyType)
			}
			fmt.Fprintf(tw, "backend:\t%s\n", e.Backend())
			fmt.Fprintf(tw, "key id:\t%s\n", e.KeyID)
			fmt.Fprintf(tw, "host:\t%s (%s)\n", e.Host, host)
			fmt.Fprintf(tw, "wrapped key:\t%d bytes\n", doc.WrappedKey)
			fmt.Fprintf(tw, "ciphertext:\t%d bytes (value of %d bytes)\n", doc.Ciphertext, doc.Value)
			return tw.Flush()
		},
	}
}

// envelopePath resolves an inspect argument: an existing file, or
// NAME[@VERSION] in the store (the latest version when none is given).
func envelopePath(cfg config.Config, arg string) (string, error) {
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		return arg, nil
	}
	name, ver, hasVer := strings.Cut(arg, "@")
	if err := secretname.Check(name); err != nil {
		return "", usagef("%q is not an envelope file, and %v", arg, err)
	}
	s, err := openStoreNoBackend(cfg)
	if err != nil {
		return "", err
	}
	var version uint32
	if hasVer {
		v, err := strconv.ParseUint(ver, 10, 32)
		if err != nil || v == 0 {
			return "", usagef("version %q is not a positive number", ver)
		}
		version = uint32(v)
	}
	return s.Path(name, version)
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a secret (every version), or one version of it",
		ArgsUsage: "NAME[@VERSION]",
		Description: "rm NAME deletes every version of the secret; rm NAME@VERSION deletes one older\n" +
			"version (the current one cannot be removed alone: that would serve an older version\n" +
			"again). A running agent stops serving what was removed before rm returns. --dry-run\n" +
			"says what would be removed.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Usage: "confirm the removal"},
			dryRunFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("rm takes exactly one secret NAME or NAME@VERSION")
			}
			name, version, err := nameVersion(c.Args().First())
			if err != nil {
				return err
			}
			what := "every version of " + name
			if version != 0 {
				what = fmt.Sprintf("version %d of %s", version, name)
			}
			dry := c.Bool(dryRunFlag.Name)
			if !c.Bool("yes") && !dry {
				return usagef("rm deletes %s and cannot be undone; add --yes to confirm (or --dry-run to see what it would remove)", what)
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			if dry {
				return dryRunRemove(c, cfg, name, version)
			}
			cl, err := runningAgent(c, cfg)
			if err != nil {
				return err
			}
			var n int
			if cl != nil {
				defer cl.Close()
				if n, err = cl.Remove(c.Context, name, version); err != nil {
					return agentRefused(err, name)
				}
			} else {
				s, err := openStoreNoBackend(cfg)
				if err != nil {
					return err
				}
				if version == 0 {
					n, err = s.Remove(name)
				} else {
					n, err = s.RemoveVersion(name, version)
				}
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(c.App.Writer, "removed %s (%d version(s))\n", name, n)
			switch {
			case cl == nil:
				noAgent(c, cfg)
			case version == 0:
				fmt.Fprintf(c.App.Writer, "the agent no longer serves %s\n", name)
			default:
				fmt.Fprintf(c.App.Writer, "the agent no longer serves %s version %d\n", name, version)
			}
			return nil
		},
	}
}

// nameVersion parses NAME or NAME@VERSION.
func nameVersion(arg string) (string, uint32, error) {
	name, ver, hasVer := strings.Cut(arg, "@")
	if err := secretname.Check(name); err != nil {
		return "", 0, usagef("%v", err)
	}
	if !hasVer {
		return name, 0, nil
	}
	v, err := strconv.ParseUint(ver, 10, 32)
	if err != nil || v == 0 {
		return "", 0, usagef("version %q is not a positive number", ver)
	}
	return name, uint32(v), nil
}

// storeNoArgs loads the configuration for a command that takes no
// arguments and opens the store without a backend.
func storeNoArgs(c *cli.Context) (config.Config, *store.Store, error) {
	cfg, err := configNoArgs(c)
	if err != nil {
		return cfg, nil, err
	}
	s, err := openStoreNoBackend(cfg)
	return cfg, s, err
}

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "delete versions past their grace period (the agent also does this every minute)",
		Flags: []cli.Flag{dryRunFlag},
		Action: func(c *cli.Context) error {
			cfg, err := configNoArgs(c)
			if err != nil {
				return err
			}
			if c.Bool(dryRunFlag.Name) {
				return dryRunPrune(c, cfg)
			}
			cl, err := runningAgent(c, cfg)
			if err != nil {
				return err
			}
			var pruned []store.Pruned
			if cl != nil {
				defer cl.Close()
				got, err := cl.Prune(c.Context)
				if err != nil {
					return agentRefused(err, "any secret")
				}
				for _, p := range got {
					pruned = append(pruned, store.Pruned{Name: p.Name, Version: p.Version, Retired: p.Retired})
				}
			} else {
				s, err := openStoreNoBackend(cfg)
				if err != nil {
					return err
				}
				if pruned, err = s.Prune(time.Now(), nil); err != nil {
					return err
				}
			}
			for _, p := range pruned {
				fmt.Fprintf(c.App.Writer, "deleted %s version %d (retired at %s)\n", p.Name, p.Version, formatTime(p.Retired))
			}
			return nil
		},
	}
}
