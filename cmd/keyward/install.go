package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/systemd"
)

// What `keyward install` puts where, below --root. The units, sysusers.d
// and tmpfiles.d snippets go below the prefix; configuration and state
// have fixed places.
const (
	serviceUser   = "keyward"
	clientsGroup  = "keyward-clients"
	configDir     = "/etc/keyward"
	configFile    = "/etc/keyward/keyward.toml"
	policyFile    = "/etc/keyward/policy.toml"
	stateDir      = "/var/lib/keyward"
	runtimeDir    = "/run/keyward"
	credentialEnc = "/etc/credstore.encrypted/keyward-pin"
	credentialRaw = "/etc/credstore/keyward-pin"
	socketWants   = "/etc/systemd/system/sockets.target.wants/keyward.socket"
)

// configSkeleton is the configuration `keyward install` writes when there
// is none. It must parse (TestInstallSkeletonsParse).
const configSkeleton = `# keyward configuration: every setting is described in docs/configuration.md.
# Written by "keyward install", which never overwrites it: edit freely, then
# run "systemctl restart keyward" (socket and store paths) or
# "systemctl reload keyward" (policy and store contents).
#
# No secret belongs in this file. The HSM PIN comes from the encrypted
# systemd credential /etc/credstore.encrypted/keyward-pin (see
# docs/operations.md, "The HSM PIN"), or from pkcs11.pin_file.

backend = "pkcs11"

[store]
dir = "/var/lib/keyward"

[pkcs11]
# Module, token and key as a PKCS#11 URI (RFC 7512). SoftHSM by default.
uri = "pkcs11:token=keyward;object=keyward-kek?module-path=/usr/lib/softhsm/libsofthsm2.so"
pin_credential = "keyward-pin"

[agent]
# keyward.socket creates the socket; these must match it.
socket = "/run/keyward/agent.sock"
socket_group = "keyward-clients"
policy = "/etc/keyward/policy.toml"
# Under systemd "stderr" means the journal: journalctl -t keyward-audit.
audit_log = "stderr"
log_level = "info"
# Prometheus metrics (docs/metrics.md): under systemd, run
# "systemctl enable --now keyward-metrics.socket" instead of setting this.
# metrics_address = "127.0.0.1:9464"
`

// policySkeleton grants nothing.
const policySkeleton = `# keyward access policy: docs/policy.md. Default deny: while this file holds
# no [[rule]], every request for a secret is refused. Written by
# "keyward install", which never overwrites it.
#
# After an edit, check it and apply it without dropping connections:
#   keyward policy check --policy /etc/keyward/policy.toml --uid "$(id -u trader)" binance/mm-prod
#   systemctl reload keyward
#
# Example: the market maker, running as user trader in mm-prod.service, may
# read the Binance secrets.
#
# [[rule]]
# name    = "mm-prod"
# secrets = ["binance/*"]
# users   = ["trader"]
# units   = ["mm-prod.service"]
# allow   = ["get"]
#
# Administrators put, rotate and remove secrets through the agent, with
# no PIN: grant them admin on the names (this grants no secret value).
#
# [[rule]]
# name    = "sre-admin"
# secrets = ["binance/*", "okx/*"]
# groups  = ["sre"]
# allow   = ["admin", "list"]
`

func installFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "root", Usage: "work in the staging root `DIR` (an image being built), not on this host; run nothing there"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print what would change and change nothing"},
		&cli.StringFlag{Name: "prefix", Value: "/usr/local", Usage: "`PREFIX` of the binary (PREFIX/bin/keyward) and of the units (PREFIX/lib/systemd/system): /usr/local or /usr"},
	}, extra...)
}

func installCommand() *cli.Command {
	return &cli.Command{
		Name:  "install",
		Usage: "install the systemd units, the keyward user, directories and configuration skeletons (safe to repeat)",
		Description: "install writes keyward.service, keyward.socket and keyward-metrics.socket to\n" +
			"PREFIX/lib/systemd/system, the sysusers.d and tmpfiles.d snippets to PREFIX/lib, creates\n" +
			"the user keyward and the group keyward-clients (systemd-sysusers), the directories\n" +
			"(systemd-tmpfiles), a configuration skeleton /etc/keyward/keyward.toml (0644 root:root)\n" +
			"and a policy that grants nothing, /etc/keyward/policy.toml (0644). Units are replaced\n" +
			"when they differ from this binary's; the configuration and the policy are never\n" +
			"overwritten. Running it again changes nothing. It enables and starts nothing:\n" +
			"docs/operations.md has the next steps.\n\n" +
			"With --root DIR it writes the same files below DIR, for an image build, and runs nothing:\n" +
			"systemd-sysusers and systemd-tmpfiles create the rest when the image boots.",
		Flags: installFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("install takes no arguments")
			}
			in, err := newInstaller(c)
			if err != nil {
				return err
			}
			defer in.close()
			return in.install()
		},
	}
}

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "stop keyward and remove its units; keep the store and configuration unless --purge",
		Description: "uninstall stops and disables keyward.socket, keyward-metrics.socket and\n" +
			"keyward.service and removes the files install wrote below PREFIX. The store\n" +
			"(/var/lib/keyward), the configuration and policy (/etc/keyward), the PIN credential, the\n" +
			"HSM token and the users stay. --purge --yes also deletes the store, the configuration\n" +
			"and the credential: the sealed secrets are gone unless they are backed up.",
		Flags: installFlags(
			&cli.BoolFlag{Name: "purge", Usage: "also delete the store, the configuration and the PIN credential"},
			&cli.BoolFlag{Name: "yes", Usage: "confirm --purge"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("uninstall takes no arguments")
			}
			if c.Bool("purge") && !c.Bool("yes") && !c.Bool("dry-run") {
				return usagef("--purge deletes the store %s and every secret in it; add --yes to confirm", stateDir)
			}
			in, err := newInstaller(c)
			if err != nil {
				return err
			}
			defer in.close()
			return in.uninstall(c.Bool("purge"))
		},
	}
}

// An installer applies install or uninstall to a tree: the running system
// ("/") or a staging root.
type installer struct {
	root    *os.Root
	rootDir string // "/" or the staging root
	staging bool   // --root: write files, run nothing
	dryRun  bool
	prefix  string
	w       io.Writer
	changes int
	made    map[string]bool // directories a dry run would have created
}

// runCommand runs one of the system tools install and uninstall call
// (systemd-sysusers, systemd-tmpfiles, systemctl), its output to w.
func runCommand(w io.Writer, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// systemdRunning reports whether systemd is the init system here
// (sd_booted(3)).
func systemdRunning() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func newInstaller(c *cli.Context) (*installer, error) {
	in := &installer{rootDir: "/", dryRun: c.Bool("dry-run"), w: c.App.Writer, made: map[string]bool{}}
	switch p := filepath.Clean(c.String("prefix")); p {
	case "/usr/local", "/usr":
		in.prefix = p
	default:
		return nil, usagef("--prefix %q: use /usr/local or /usr, where systemd looks for units", c.String("prefix"))
	}
	if dir := c.String("root"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(abs)
		if err != nil || !fi.IsDir() {
			return nil, usagef("--root %s is not a directory", dir)
		}
		in.rootDir, in.staging = abs, abs != "/"
	}
	if !in.staging && !in.dryRun && os.Geteuid() != 0 {
		return nil, errors.New("installing on this host needs root; use --dry-run to see what would change, or --root DIR for a staging tree")
	}
	r, err := os.OpenRoot(in.rootDir)
	if err != nil {
		return nil, err
	}
	in.root = r
	return in, nil
}

func (in *installer) close() { in.root.Close() }

// files returns the shipped files with their installed paths.
func (in *installer) files() []installFile {
	var out []installFile
	for _, f := range systemd.Files(in.prefix) {
		out = append(out, installFile{path: f.Path, kind: f.Kind, data: f.Data, mode: 0o644})
	}
	return out
}

func (in *installer) binary() string { return systemd.Binary(in.prefix) }

type installFile struct {
	path string
	kind string // systemd.Kind…, or "" for configuration
	data []byte
	mode fs.FileMode
}

// rel turns an absolute path into one relative to the root.
func rel(p string) string { return strings.TrimPrefix(path.Clean(p), "/") }

// show names p as it is on disk: below the staging root when there is one.
func (in *installer) show(p string) string {
	if in.staging {
		return filepath.Join(in.rootDir, p)
	}
	return p
}

// did reports a change: "would VERB …" in a dry run, "VERBED …" otherwise.
func (in *installer) did(verb, done, what string) {
	in.changes++
	if in.dryRun {
		fmt.Fprintf(in.w, "would %s %s\n", verb, what)
	} else {
		fmt.Fprintf(in.w, "%s %s\n", done, what)
	}
}

func (in *installer) install() error {
	files := in.files()
	changed := map[string]bool{} // by kind; units count together
	var sysusers, tmpfiles string
	for _, f := range files {
		c, err := in.ensureFile(f, true)
		if err != nil {
			return err
		}
		changed[f.kind] = changed[f.kind] || c
		switch f.kind {
		case systemd.KindSysusers:
			sysusers = f.path
		case systemd.KindTmpfiles:
			tmpfiles = f.path
		}
	}

	// Users and groups: systemd-sysusers, when the snippet changed or one
	// is missing.
	_, haveGroup, err := in.lookupGroup(serviceUser)
	if err != nil {
		return err
	}
	_, haveClients, err := in.lookupGroup(clientsGroup)
	if err != nil {
		return err
	}
	haveUser, err := in.haveUser(serviceUser)
	if err != nil {
		return err
	}
	if !in.staging && (changed[systemd.KindSysusers] || !haveGroup || !haveClients || !haveUser) {
		in.did("run", "ran", "systemd-sysusers "+sysusers)
		if !in.dryRun {
			if err := runCommand(in.w, "systemd-sysusers", sysusers); err != nil {
				return err
			}
			if _, haveGroup, err = in.lookupGroup(serviceUser); err != nil {
				return err
			}
			if !haveGroup {
				return fmt.Errorf("the group %s does not exist after systemd-sysusers %s", serviceUser, sysusers)
			}
		}
	}

	// Directories: systemd-tmpfiles, when the snippet changed or one is
	// missing. In a staging root they are made at boot, except the
	// configuration directory, made below with the files in it.
	if !in.staging {
		missing := false
		for _, d := range []string{configDir, stateDir, runtimeDir} {
			if _, err := in.root.Lstat(rel(d)); err != nil {
				missing = true
			}
		}
		if changed[systemd.KindTmpfiles] || missing {
			in.did("run", "ran", "systemd-tmpfiles --create "+tmpfiles)
			if !in.dryRun {
				if err := runCommand(in.w, "systemd-tmpfiles", "--create", tmpfiles); err != nil {
					return err
				}
			}
		}
	}

	// The configuration holds no secret (PINs are credentials or files of
	// their own): every user may read it, as the CLI of an administrator
	// needs it to find the agent; only root may change it.
	if _, err := in.ensureFile(installFile{path: configFile, data: []byte(configSkeleton), mode: 0o644}, false); err != nil {
		return err
	}
	if _, err := in.ensureFile(installFile{path: policyFile, data: []byte(policySkeleton), mode: 0o644}, false); err != nil {
		return err
	}

	if changed[systemd.KindUnit] && !in.staging && systemdRunning() {
		in.did("run", "ran", "systemctl daemon-reload")
		if !in.dryRun {
			if err := runCommand(in.w, "systemctl", "daemon-reload"); err != nil {
				return err
			}
		}
	}

	if _, err := in.root.Stat(rel(in.binary())); err != nil {
		fmt.Fprintf(in.w, "note: keyward.service runs %s, which is not there yet: install the binary (scripts/install.sh does)\n", in.show(in.binary()))
	}
	in.checkTPMDevice()
	switch {
	case in.changes == 0:
		fmt.Fprintln(in.w, "keyward is installed; nothing changed")
	case in.dryRun:
		fmt.Fprintf(in.w, "dry run: %d changes would be made; nothing was changed\n", in.changes)
	case in.staging:
		fmt.Fprintf(in.w, "installed into %s; systemd-sysusers and systemd-tmpfiles create the user, groups and directories at first boot\n", in.rootDir)
	default:
		fmt.Fprint(in.w, "installed; nothing is enabled yet. Next (docs/operations.md, \"From a bare host to serving\"):\n"+
			"  1. the HSM token, and its PIN in "+credentialEnc+" (systemd-creds encrypt --name=keyward-pin)\n"+
			"  2. as the keyward user: keyward init, then keyward put NAME for each secret\n"+
			"  3. rules in "+policyFile+", then: systemctl enable --now keyward.socket\n")
	}
	return nil
}

// ensureFile makes f.path hold f.data with f.mode, owned by root. A file that exists with other content is replaced
// when replace is true and kept otherwise: it belongs to the operator.
// It reports whether anything changed (or would change).
func (in *installer) ensureFile(f installFile, replace bool) (bool, error) {
	name := rel(f.path)
	if err := in.ensureDir(path.Dir(f.path), 0o755); err != nil {
		return false, err
	}
	what := fmt.Sprintf("%s (%04o root:root)", in.show(f.path), f.mode)
	fi, err := in.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		in.did("create", "created", what)
		if in.dryRun {
			return true, nil
		}
		return true, in.writeFile(f)
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s is not a regular file; move it away and run install again", in.show(f.path))
	}
	old, err := in.root.ReadFile(name)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(old, f.data) {
		if !replace {
			fmt.Fprintf(in.w, "kept %s: it differs from the skeleton, and install never overwrites it\n", in.show(f.path))
			return false, nil
		}
		in.did("update", "updated", what)
		if in.dryRun {
			return true, nil
		}
		return true, in.writeFile(f)
	}
	changed := false
	if fi.Mode().Perm() != f.mode {
		changed = true
		in.did("set the mode of", "set the mode of", what)
		if !in.dryRun {
			if err := in.root.Chmod(name, f.mode); err != nil {
				return false, err
			}
		}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && in.canChown() {
		if st.Uid != 0 || st.Gid != 0 {
			changed = true
			in.did("set the owner of", "set the owner of", what)
			if !in.dryRun {
				if err := in.root.Chown(name, 0, 0); err != nil {
					return false, err
				}
			}
		}
	}
	return changed, nil
}

// canChown reports whether files can be given to root: always on the
// host (install runs as root there), and in a staging root only as root.
func (in *installer) canChown() bool { return os.Geteuid() == 0 }

// writeFile writes f atomically: a temporary file beside it, synced,
// then renamed over it.
func (in *installer) writeFile(f installFile) error {
	name := rel(f.path)
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+".keyward-install")
	_ = in.root.Remove(tmp)
	fh, err := in.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		fh.Close()
		in.root.Remove(tmp)
		return fmt.Errorf("failed to write %s: %w", in.show(f.path), err)
	}
	if _, err := fh.Write(f.data); err != nil {
		return fail(err)
	}
	if in.canChown() {
		if err := fh.Chown(0, 0); err != nil {
			return fail(err)
		}
	}
	if err := fh.Chmod(f.mode); err != nil {
		return fail(err)
	}
	if err := fh.Sync(); err != nil {
		return fail(err)
	}
	if err := fh.Close(); err != nil {
		in.root.Remove(tmp)
		return err
	}
	if err := in.root.Rename(tmp, name); err != nil {
		in.root.Remove(tmp)
		return err
	}
	return nil
}

// ensureDir creates the directory p and its parents, the last with mode.
func (in *installer) ensureDir(p string, mode fs.FileMode) error {
	name := rel(p)
	fi, err := in.root.Stat(name)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s is not a directory", in.show(p))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if in.made[p] {
		return nil // a dry run already reported it
	}
	in.did("create", "created", fmt.Sprintf("%s/ (%04o)", in.show(p), mode))
	if in.dryRun {
		in.made[p] = true
		return nil
	}
	// One level at a time, each 0755 whatever the umask, the last with mode.
	if parent := path.Dir(p); parent != p {
		if err := in.ensureDirQuiet(parent); err != nil {
			return err
		}
	}
	if err := in.root.Mkdir(name, 0o700); err != nil {
		return err
	}
	return in.root.Chmod(name, mode)
}

// ensureDirQuiet creates the missing parents of a directory being created.
func (in *installer) ensureDirQuiet(p string) error {
	name := rel(p)
	if name == "" {
		return nil
	}
	if fi, err := in.root.Stat(name); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", in.show(p))
		}
		return nil
	}
	if err := in.ensureDirQuiet(path.Dir(p)); err != nil {
		return err
	}
	if err := in.root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return in.root.Chmod(name, 0o755)
}

// lookupGroup finds a group's gid in the tree's /etc/group (on the host,
// through the name service).
func (in *installer) lookupGroup(name string) (int, bool, error) {
	if !in.staging {
		g, err := user.LookupGroup(name)
		if err != nil {
			var unknown user.UnknownGroupError
			if errors.As(err, &unknown) {
				return 0, false, nil
			}
			return 0, false, err
		}
		gid, err := strconv.Atoi(g.Gid)
		return gid, err == nil, err
	}
	id, ok, err := in.lookupFile("etc/group", name)
	return id, ok, err
}

func (in *installer) haveUser(name string) (bool, error) {
	if !in.staging {
		_, err := user.Lookup(name)
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return false, nil
		}
		return err == nil, err
	}
	_, ok, err := in.lookupFile("etc/passwd", name)
	return ok, err
}

// lookupFile returns the third field (the id) of name's line in a
// passwd-format file below the root.
func (in *installer) lookupFile(file, name string) (int, bool, error) {
	f, err := in.root.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == name {
			id, err := strconv.Atoi(fields[2])
			if err != nil {
				return 0, false, fmt.Errorf("%s: bad id for %s", in.show("/"+file), name)
			}
			return id, true, nil
		}
	}
	return 0, false, sc.Err()
}

func (in *installer) uninstall(purge bool) error {
	files := in.files()
	var present []installFile
	for _, f := range files {
		if _, err := in.root.Lstat(rel(f.path)); err == nil {
			present = append(present, f)
		}
	}
	unitsPresent := false
	for _, f := range present {
		if strings.HasSuffix(f.path, ".service") || strings.HasSuffix(f.path, ".socket") {
			unitsPresent = true
		}
	}
	live := !in.staging && systemdRunning()
	if unitsPresent && live {
		in.did("run", "ran", "systemctl disable --now keyward.socket keyward-metrics.socket keyward.service")
		if !in.dryRun {
			if err := runCommand(in.w, "systemctl", "disable", "--now", "keyward.socket", "keyward-metrics.socket", "keyward.service"); err != nil {
				return err
			}
		}
	}
	remove := func(p string, all bool) error {
		if _, err := in.root.Lstat(rel(p)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		in.did("remove", "removed", in.show(p))
		if in.dryRun {
			return nil
		}
		if all {
			return in.root.RemoveAll(rel(p))
		}
		return in.root.Remove(rel(p))
	}
	for _, f := range present {
		if err := remove(f.path, false); err != nil {
			return err
		}
	}
	if in.staging {
		// systemctl --root enable leaves this link; disable removes it on a host.
		if err := remove(socketWants, false); err != nil {
			return err
		}
	}
	if unitsPresent && live {
		in.did("run", "ran", "systemctl daemon-reload")
		if !in.dryRun {
			if err := runCommand(in.w, "systemctl", "daemon-reload"); err != nil {
				return err
			}
		}
	}
	if purge {
		for _, p := range []string{stateDir, configDir, credentialEnc, credentialRaw, runtimeDir} {
			if err := remove(p, true); err != nil {
				return err
			}
		}
	}
	switch {
	case in.changes == 0:
		fmt.Fprintln(in.w, "keyward is not installed; nothing changed")
	case in.dryRun:
		fmt.Fprintf(in.w, "dry run: %d changes would be made; nothing was changed\n", in.changes)
	}
	if !purge {
		fmt.Fprintf(in.w, "kept %s, %s and the PIN credential (uninstall --purge --yes deletes them)\n", in.show(stateDir), in.show(configDir))
	}
	fmt.Fprintf(in.w, "kept the user %s and the group %s, as systemd-sysusers does; userdel and groupdel remove them\n", serviceUser, clientsGroup)
	return nil
}

// checkTPMDevice says what the TPM backends need of the host when the
// configuration names one: /dev/tpmrm0 as root:tss 0660, which only
// Debian's tpm-udev package arranges (systemd ships no rule for it, and
// nothing of keyward's pulls it in); the keyward user is in tss.
func (in *installer) checkTPMDevice() {
	b, err := in.root.ReadFile(rel(configFile))
	if err != nil {
		return
	}
	cfg := config.Default()
	if config.Parse(b, &cfg) != nil || cfg.Backend == config.BackendPKCS11 {
		return
	}
	const fix = "install Debian's tpm-udev package (apt-get install tpm-udev), which makes it root:tss 0660 for the keyward user (a member of tss)"
	if in.staging {
		fmt.Fprintf(in.w, "note: backend %q opens %s at boot: the image needs tpm-udev: %s\n", cfg.Backend, cfg.TPM.Device, fix)
		return
	}
	fi, err := os.Stat(cfg.TPM.Device)
	if err != nil {
		fmt.Fprintf(in.w, "note: backend %q opens %s, which cannot be used (%v); see docs/tpm.md\n", cfg.Backend, cfg.TPM.Device, err)
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode()&os.ModeSocket != 0 {
		return // a swtpm socket: nothing for udev to do
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid))); err != nil || g.Name != "tss" || fi.Mode().Perm()&0o060 != 0o060 {
		warn(in.w, fmt.Sprintf("%s is %04o, group %d, and the keyward user cannot open it: %s", cfg.TPM.Device, fi.Mode().Perm(), st.Gid, fix))
	}
}
