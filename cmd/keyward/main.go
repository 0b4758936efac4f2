// Command keyward is the keyward secret agent and its operator CLI.
//
// See README.md and docs/ for what each subcommand does.
package main

import (
	"io"
	"os"

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
	err := app.Run(args)
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
		policyCommand(),
		pcrsCommand(),
		resealCommand(),
		recoveryCommand(),
		rewrapCommand(),
		enrollCommand(),
		sealCommand(),
		importCommand(),
		provisionerCommand(),
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
	for _, c := range cmds {
		c.OnUsageError = onUsageError
	}
	return cmds
}

// unknownCommand runs when no subcommand matched.
func unknownCommand(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("unknown command %q", c.Args().First())
	}
	return cli.ShowAppHelp(c)
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
