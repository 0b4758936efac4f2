// Command keyward is the keyward secret agent and its operator CLI.
//
// See README.md and docs/ for what each subcommand does.
package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/internal/config"
)

// Version is the keyward release, set at build time with
// -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

// Exit statuses.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	configFlag   = "config"
	configEnvVar = "KEYWARD_CONFIG"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run executes the CLI and returns the exit status. It is main without
// os.Exit, so tests can call it in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	args, err := interspersed(app, args)
	if err == nil {
		err = app.Run(args)
	}
	return report(stderr, err)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	cli.VersionPrinter = printVersion
	return &cli.App{
		Name:      "keyward",
		Usage:     "hardware-backed secret agent for trading hosts",
		Version:   Version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    configFlag,
				Usage:   "configuration file",
				Value:   config.DefaultPath,
				EnvVars: []string{configEnvVar},
			},
			pinStdinFlag,
		},
		ExitErrHandler:         func(*cli.Context, error) {},
		OnUsageError:           onUsageError,
		Action:                 unknownCommand,
		Commands:               commands(),
		UseShortOptionHandling: true,
	}
}

func commands() []*cli.Command {
	cmds := []*cli.Command{
		initCommand(),
		putCommand(),
		rotateCommand(),
		pruneCommand(),
		listCommand(),
		inspectCommand(),
		rmCommand(),
		serveCommand(),
		statusCommand(),
		installCommand(),
		uninstallCommand(),
		getCommand(),
		signCommand(),
		execCommand(),
		renderCommand(),
		policyCommand(),
		configCommand(),
		pcrsCommand(),
		resealCommand(),
		recoveryCommand(),
		rewrapCommand(),
		enrollCommand(),
		sealCommand(),
		importCommand(),
		provisionerCommand(),
		auditCommand(),
		completionCommand(),
		manCommand(),
		{
			Name:  "version",
			Usage: "print the keyward version and the VCS revision it was built from",
			Action: func(c *cli.Context) error {
				printVersion(c)
				return nil
			},
		},
	}
	var setup func(string, []*cli.Command)
	setup = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = onUsageError
			requireFlags(c, prefix+c.Name)
			if len(c.Subcommands) > 0 {
				if c.Action == nil { // audit queries when no subcommand is named
					c.Action = unknownCommand
				}
				setup(prefix+c.Name+" ", c.Subcommands)
			}
		}
	}
	setup("", cmds)
	return cmds
}

// requireFlags moves the check of c's required flags from urfave/cli,
// which prints the command's help and exits 1, into c's Action, as a
// usage error: exit 2, like every other mistake in how keyward is called.
// name is the command as typed: "provisioner new".
func requireFlags(c *cli.Command, name string) {
	var names []string
	for _, f := range c.Flags {
		if rf, ok := f.(cli.RequiredFlag); ok && rf.IsRequired() {
			// Every urfave/cli flag type has an exported Required field.
			if r := reflect.ValueOf(f).Elem().FieldByName("Required"); r.CanSet() {
				r.SetBool(false)
				names = append(names, f.Names()[0])
			}
		}
	}
	if len(names) == 0 || c.Action == nil {
		return
	}
	action := c.Action
	c.Action = func(ctx *cli.Context) error {
		for _, n := range names {
			if !ctx.IsSet(n) {
				return usagef("%s needs --%s", name, n)
			}
		}
		return action(ctx)
	}
}

// unknownCommand runs when no command, or no subcommand of a command
// that has them (policy, recovery), matched: a usage error, with the
// likely command when the word looks like a typo of one.
func unknownCommand(c *cli.Context) error {
	cmds, prefix := c.App.Commands, "keyward "
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		cmds, prefix = c.Command.Subcommands, "keyward "+c.Command.Name+" "
	}
	if !c.Args().Present() {
		if prefix == "keyward " {
			return cli.ShowAppHelp(c)
		}
		var names []string
		for _, s := range cmds {
			if s.Name != "help" {
				names = append(names, s.Name)
			}
		}
		return usagef("%sneeds a subcommand: %s", prefix, strings.Join(names, ", "))
	}
	name := c.Args().First()
	err := usagef("unknown command %q", strings.TrimPrefix(prefix, "keyward ")+name)
	if s := suggest(name, commandNames(cmds)); s != "" {
		return withHint(err, fmt.Sprintf("did you mean %s%s?", prefix, s))
	}
	return err
}

// configNoArgs loads the configuration for a command that takes no
// arguments, refusing any.
func configNoArgs(c *cli.Context) (config.Config, error) {
	if c.NArg() > 0 {
		return config.Config{}, usagef("%s takes no arguments", c.Command.Name)
	}
	return loadConfig(c)
}

// loadConfig reads the configuration named by --config. The default path
// may be absent (defaults apply); a path the operator named must exist.
func loadConfig(c *cli.Context) (config.Config, error) {
	path := c.String(configFlag)
	required := c.IsSet(configFlag)
	return config.Load(path, required)
}
