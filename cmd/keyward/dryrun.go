package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
)

// --dry-run on rm, prune, rotate and rewrap says what the command would
// do and changes nothing. It works on the client side, from the store's
// metadata read as it is (nothing is locked, decrypted or written) and the
// policy file, so the agent's protocol needs no dry-run flag: a dry run
// never sends the agent a request that changes anything. It needs a user
// who can read the store (keyward, or root): the agent shows an
// administrator no names or versions it could use instead (List answers
// the names the caller may list and get; Health only problems).

var dryRunFlag = &cli.BoolFlag{Name: "dry-run", Usage: "say what would happen, and change nothing"}

// dryRunSecrets reads the store's metadata for a dry run.
func dryRunSecrets(cfg config.Config) ([]*store.SecretInfo, error) {
	s, err := openStoreNoBackend(cfg)
	if err == nil {
		var secrets []*store.SecretInfo
		if secrets, _, err = s.Secrets(); err == nil {
			return secrets, nil
		}
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, withHint(fmt.Errorf("--dry-run reads the store's metadata, and this user cannot: %w", err),
			"run the dry run as the keyward user (runuser -u keyward -- keyward …) or root; it changes nothing")
	}
	return nil, err
}

func findSecret(secrets []*store.SecretInfo, name string) *store.SecretInfo {
	for _, s := range secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// dryRunAgent says who would make the change: a running agent, if this
// user's admin permission on names holds in the policy file (the agent
// decides with the policy it loaded, and checks the executable and unit
// too); else this command, on the store directly.
func dryRunAgent(c *cli.Context, cfg config.Config, names ...string) error {
	w := c.App.Writer
	cl, err := runningAgent(c, cfg)
	if err != nil {
		return err
	}
	if cl == nil {
		fmt.Fprintf(w, "no agent answers on %s: the command would change the store directly\n", agentSocket(cfg))
		return nil
	}
	cl.Close()
	fmt.Fprintf(w, "the agent on %s would do it and serve the change at once\n", agentSocket(cfg))
	pol, err := policy.Load(cfg.Agent.Policy)
	if err != nil {
		fmt.Fprintf(w, "the policy cannot be read here (%v): the agent decides whether this user may\n", err)
		return nil
	}
	me := processCaller()
	for _, n := range names {
		if d := pol.Decide(me, policy.OpAdmin, n); d.Allowed {
			fmt.Fprintf(w, "the policy grants admin on %s to uid %d: rule %q\n", n, me.uid, d.Rule)
		} else {
			fmt.Fprintf(w, "the policy does not grant admin on %s to uid %d: the agent would refuse\n", n, me.uid)
		}
	}
	return nil
}

// processCaller is this process as the agent would see it, but for its
// unit and executable digest, which only the agent reads.
func processCaller() *staticCaller {
	s := &staticCaller{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	if exe, err := os.Executable(); err == nil {
		s.exe = policy.ResolveExe(exe)
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if uint32(g) != s.gid {
			s.groups = append(s.groups, uint32(g))
		}
	}
	return s
}

// dryRunRemove is rm --dry-run.
func dryRunRemove(c *cli.Context, cfg config.Config, name string, version uint32) error {
	secrets, err := dryRunSecrets(cfg)
	if err != nil {
		return err
	}
	w := c.App.Writer
	sec := findSecret(secrets, name)
	switch {
	case sec == nil:
		return fmt.Errorf("dry run: rm would fail: there is no secret %s", name)
	case version == 0:
		var vs []string
		for _, v := range sec.Versions {
			vs = append(vs, strconv.FormatUint(uint64(v.Version), 10))
		}
		fmt.Fprintf(w, "dry run: rm would remove every version of %s (%s); the name would no longer be served\n", name, strings.Join(vs, ", "))
	default:
		v := sec.Find(version)
		switch {
		case v == nil:
			return fmt.Errorf("dry run: rm would fail: %s has no version %d", name, version)
		case v.Current:
			return fmt.Errorf("dry run: rm would refuse: version %d is the current version of %s (rm %s removes every version)", version, name, name)
		}
		fmt.Fprintf(w, "dry run: rm would remove version %d of %s (%s); version %d stays current\n",
			version, name, v.State(time.Now(), 0), sec.Latest().Version)
	}
	return dryRunAgent(c, cfg, name)
}

// dryRunPrune is prune --dry-run: the versions store.Prune would delete.
func dryRunPrune(c *cli.Context, cfg config.Config) error {
	secrets, err := dryRunSecrets(cfg)
	if err != nil {
		return err
	}
	w := c.App.Writer
	now, n := time.Now(), 0
	for _, sec := range secrets {
		if sec.Damaged() {
			fmt.Fprintf(w, "dry run: prune would leave %s alone: it has a damaged version\n", sec.Name)
			continue
		}
		for _, v := range sec.Versions {
			if v.State(now, 0) == store.StateRetired {
				fmt.Fprintf(w, "dry run: prune would delete %s version %d (retired at %s)\n", sec.Name, v.Version, formatTime(v.Until))
				n++
			}
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "dry run: prune would delete nothing")
	}
	cl, err := runningAgent(c, cfg)
	if err != nil {
		return err
	}
	if cl != nil {
		cl.Close()
		fmt.Fprintf(w, "the agent on %s would do it, for the secrets this user administers\n", agentSocket(cfg))
	}
	return nil
}

// dryRunRotate is rotate --dry-run (and put --new-version --dry-run): it
// reads no value.
func dryRunRotate(c *cli.Context, cfg config.Config, name string, grace time.Duration) error {
	secrets, err := dryRunSecrets(cfg)
	if err != nil {
		return err
	}
	sec := findSecret(secrets, name)
	if sec == nil {
		return withHint(fmt.Errorf("dry run: rotate would refuse: there is no secret %s", name),
			"check the name with keyward list; a new secret is made with keyward put")
	}
	cur := sec.Latest().Version
	w := c.App.Writer
	if grace > 0 {
		fmt.Fprintf(w, "dry run: rotate would store %s version %d; version %d would be served until about %s\n",
			name, cur+1, cur, formatTime(time.Now().Add(grace)))
	} else {
		fmt.Fprintf(w, "dry run: rotate would store %s version %d and retire every older version at once\n", name, cur+1)
	}
	return dryRunAgent(c, cfg, name)
}

// dryRunRewrap is rewrap --dry-run.
func dryRunRewrap(c *cli.Context, cfg config.Config) error {
	s, err := openStoreNoBackend(cfg)
	if err != nil {
		return err
	}
	envs, damaged, err := s.List()
	if errors.Is(err, fs.ErrPermission) {
		_, err = dryRunSecrets(cfg) // the same error, with its hint
	}
	if err != nil {
		return err
	}
	w := c.App.Writer
	switch {
	case cfg.Backend == config.BackendTPM:
		legacy, err := store.ReadKeyRecord(s.Dir(), store.TPMKeyFile)
		if err != nil {
			return err
		}
		if legacy == nil {
			fmt.Fprintf(w, "dry run: rewrap would move %d envelope(s), now sealed one by one, to a new TPM store key\n", len(envs))
		} else {
			fmt.Fprintf(w, "dry run: rewrap would re-wrap %d envelope(s) under a new TPM store key sealed to %s\n", len(envs), cfg.TPM.PCRs)
		}
	case c.String("new-object") == "":
		return usagef("rewrap needs --new-object LABEL: the label of the new key-encryption key")
	default:
		fmt.Fprintf(w, "dry run: rewrap would find or create the key %s in the token and re-wrap %d envelope(s) under it\n", c.String("new-object"), len(envs))
		if c.Bool("destroy-old") {
			fmt.Fprintln(w, "dry run: it would then delete the old key from the token")
		}
	}
	if len(damaged) > 0 {
		fmt.Fprintf(w, "dry run: %d envelope(s) are damaged (keyward list): look at them first\n", len(damaged))
	}
	if err := noAgentRuns(c, cfg); err != nil {
		fmt.Fprintln(w, "dry run: rewrap would refuse now: an agent runs")
		return err
	}
	return nil
}
