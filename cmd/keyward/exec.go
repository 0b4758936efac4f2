package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/keyward/keyward/client"
)

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a program with secrets in its environment",
		ArgsUsage: "--env VAR=NAME... -- COMMAND [ARG...]",
		Description: "exec fetches each NAME from the agent and replaces itself with COMMAND, with VAR set\n" +
			"to the value. For tools that only read environment variables: any process of the same\n" +
			"user can read a process's environment, so prefer the Go client or `get --out`.\n\n" +
			"With --restart-on-rotate, exec stays as COMMAND's parent and watches the secrets (the\n" +
			"policy must grant get and watch): when one rotates it fetches the new values, stops\n" +
			"COMMAND (--stop-signal, then SIGKILL after --stop-timeout) and starts it again with\n" +
			"them. An environment cannot be changed from outside, so a signal alone would leave the\n" +
			"old value: --signal-on-rotate SIGNAL sends SIGNAL instead, for a program that fetches\n" +
			"its secrets again itself. exec forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and\n" +
			"SIGUSR2 to COMMAND and exits with its status. If a secret is refused after a rotation\n" +
			"(removed, expired, the permission revoked), exec stops COMMAND and exits 1.",
		Flags: []cli.Flag{
			socketFlag,
			&cli.StringSliceFlag{Name: "env", Usage: "set `VAR=NAME`: environment variable VAR to secret NAME"},
			&cli.BoolFlag{Name: "restart-on-rotate", Usage: "restart COMMAND with the new values when a secret rotates"},
			&cli.StringFlag{Name: "signal-on-rotate", Usage: "send COMMAND `SIGNAL` (HUP, USR1, ...) when a secret rotates, instead of restarting it"},
			&cli.StringFlag{Name: "stop-signal", Value: "TERM", Usage: "with --restart-on-rotate: stop COMMAND with `SIGNAL`"},
			&cli.DurationFlag{Name: "stop-timeout", Value: 10 * time.Second, Usage: "with --restart-on-rotate: SIGKILL COMMAND if it has not exited after `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("exec needs a COMMAND after --")
			}
			binds, err := parseBindings(c.StringSlice("env"))
			if err != nil {
				return err
			}
			sv := &supervisor{binds: binds, stopTimeout: c.Duration("stop-timeout")}
			restart, sig := c.Bool("restart-on-rotate"), c.String("signal-on-rotate")
			switch {
			case restart && sig != "":
				return usagef("--restart-on-rotate and --signal-on-rotate exclude each other")
			case sig != "":
				if sv.rotateSignal, err = parseSignal(sig); err != nil {
					return usagef("--signal-on-rotate: %v", err)
				}
			}
			if sv.stopSignal, err = parseSignal(c.String("stop-signal")); err != nil {
				return usagef("--stop-signal: %v", err)
			}
			path, err := exec.LookPath(c.Args().First())
			if err != nil {
				return err
			}
			sv.path, sv.args = path, c.Args().Slice()
			cl, _, err := dialAgent(c.Context, c)
			if err != nil {
				return err
			}
			defer cl.Close()
			sv.cl = cl
			if !restart && sig == "" {
				env, err := sv.environ(c.Context)
				if err != nil {
					return err
				}
				return syscall.Exec(path, sv.args, env)
			}
			return sv.run(c)
		},
	}
}

// A binding puts a secret in an environment variable.
type binding struct{ variable, secret string }

func parseBindings(vars []string) ([]binding, error) {
	if len(vars) == 0 {
		return nil, usagef("exec needs at least one --env VAR=NAME")
	}
	var out []binding
	for _, kv := range vars {
		name, secret, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsAny(name, "=\x00") {
			return nil, usagef("--env %q is not VAR=NAME", kv)
		}
		out = append(out, binding{name, secret})
	}
	return out, nil
}

// parseSignal reads HUP, SIGHUP or hup.
func parseSignal(s string) (syscall.Signal, error) {
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%q is not a signal name (HUP, USR1, TERM, ...)", s)
}

// A supervisor runs COMMAND with secrets in its environment and follows
// their rotations.
type supervisor struct {
	cl           *client.Client
	binds        []binding
	path         string
	args         []string
	rotateSignal syscall.Signal // 0: restart
	stopSignal   syscall.Signal
	stopTimeout  time.Duration
}

// environ returns this process's environment with each bound variable set
// to its secret.
func (sv *supervisor) environ(ctx context.Context) ([]string, error) {
	env := os.Environ()
	for _, b := range sv.binds {
		sec, err := sv.cl.Get(ctx, b.secret)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.secret, err)
		}
		if slices.Contains(sec.Bytes(), 0) {
			sec.Wipe()
			return nil, fmt.Errorf("%s contains a NUL byte and cannot go into an environment variable", b.secret)
		}
		// Drop an inherited VAR first: most programs read the first VAR=
		// entry, and would get the old value.
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, b.variable+"=") })
		env = append(env, b.variable+"="+string(sec.Bytes()))
		sec.Wipe()
	}
	return env, nil
}

// forwarded are the signals exec passes on to COMMAND.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// run starts COMMAND and supervises it until it exits; its exit status
// becomes exec's.
func (sv *supervisor) run(c *cli.Context) error {
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	names := make([]string, len(sv.binds))
	for i, b := range sv.binds {
		names[i] = b.secret
	}
	// Watch first: a rotation between the fetch and the watch is then a
	// restart too many, not one missed.
	changes, err := watchSecrets(ctx, sv.cl, names)
	if err != nil {
		return err
	}
	env, err := sv.environ(ctx)
	if err != nil {
		return err
	}
	child, done, err := sv.start(env)
	if err != nil {
		return err
	}
	for {
		select {
		case s := <-sigs:
			child.Process.Signal(s)
		case err := <-done:
			return childExit(err)
		case _, ok := <-changes:
			if !ok {
				// Keep the program running: a policy edit must not stop
				// trading. It no longer follows rotations, and says so.
				changes = nil
				warn(c.App.ErrWriter, unprefixed(watchEnded(names).Error())+fmt.Sprintf("; %s keeps running with the values it has", sv.args[0]))
				continue
			}
			if sv.rotateSignal != 0 {
				warn(c.App.ErrWriter, fmt.Sprintf("a secret rotated: sent %s to %s (pid %d)", unix.SignalName(sv.rotateSignal), sv.args[0], child.Process.Pid))
				child.Process.Signal(sv.rotateSignal)
				continue
			}
			err := fetchRetrying(ctx, c.App.ErrWriter, func() error {
				var err error
				env, err = sv.environ(ctx)
				return err
			})
			sv.stop(child, done)
			if err != nil {
				return withHint(fmt.Errorf("a secret rotated and its new value was refused, so %s was stopped: %w", sv.args[0], err),
					"check the secret with keyward list and the policy with keyward policy check")
			}
			if child, done, err = sv.start(env); err != nil {
				return err
			}
			warn(c.App.ErrWriter, fmt.Sprintf("a secret rotated: restarted %s (pid %d) with the new values", sv.args[0], child.Process.Pid))
		}
	}
}

// start runs COMMAND with env; done receives its Wait result.
func (sv *supervisor) start(env []string) (*exec.Cmd, <-chan error, error) {
	cmd := &exec.Cmd{Path: sv.path, Args: sv.args, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done, nil
}

// stop sends COMMAND the stop signal, and SIGKILL after the timeout, and
// waits for it to exit.
func (sv *supervisor) stop(cmd *exec.Cmd, done <-chan error) {
	cmd.Process.Signal(sv.stopSignal)
	t := time.NewTimer(sv.stopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cmd.Process.Kill()
		<-done
	}
}

// childExit turns COMMAND's Wait result into exec's exit: its status, or
// 128 + the signal that killed it, as a shell reports it.
func childExit(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return cli.Exit("", 128+int(ws.Signal()))
	}
	return cli.Exit("", ee.ExitCode())
}
