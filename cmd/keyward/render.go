package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/template"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/internal/secretname"
)

// Bounds of render: the template, and the file it makes.
const (
	maxTemplateSize = 1 << 20
	maxRenderedSize = 4 << 20
)

func renderCommand() *cli.Command {
	return &cli.Command{
		Name:      "render",
		Usage:     "write a file from a template with secrets, and rewrite it when they rotate",
		ArgsUsage: "TEMPLATE --out FILE",
		Description: "render executes TEMPLATE, a Go text/template in which {{ secret \"NAME\" }} is the value\n" +
			"of a secret from the agent, and writes the result to FILE, mode 0600, owned by the caller,\n" +
			"atomically: a temporary file in FILE's directory, synced, renamed over FILE. It then\n" +
			"watches the secrets the template used (the policy must grant get and watch) and writes\n" +
			"FILE again when one rotates, running --on-change CMD (with sh -c) once after each write\n" +
			"that changed FILE (a CMD that fails is a warning). If a secret is refused (removed,\n" +
			"expired, the permission revoked) or the template fails, render exits 1 and FILE keeps\n" +
			"its last good content; while the agent restarts it waits. --once writes FILE and exits\n" +
			"(1 if CMD failed).",
		Flags: []cli.Flag{
			socketFlag,
			&cli.StringFlag{Name: "out", Usage: "write to `FILE` (mode 0600)"},
			&cli.StringFlag{Name: "on-change", Usage: "run `CMD` (with sh -c) after each write that changed FILE"},
			&cli.BoolFlag{Name: "once", Usage: "write FILE once and exit; do not watch"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("render takes exactly one TEMPLATE file")
			}
			out := c.String("out")
			if out == "" {
				return usagef("render needs --out FILE: where to write the result")
			}
			tmpl, err := parseTemplate(c.Args().First())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cl, _, err := dialAgent(ctx, c)
			if err != nil {
				return err
			}
			defer cl.Close()
			r := &renderer{cl: cl, tmpl: tmpl, out: out, hook: c.String("on-change"), stdout: c.App.Writer, stderr: c.App.ErrWriter}
			return r.run(ctx, c.Bool("once"))
		},
	}
}

// parseTemplate reads and parses a template file: text/template with the
// secret function, and an error for a key missing from a map.
func parseTemplate(path string) (*template.Template, error) {
	b, err := readBoundedPublic(path, maxTemplateSize)
	if err != nil {
		return nil, err
	}
	t, err := template.New(filepath.Base(path)).Option("missingkey=error").
		Funcs(template.FuncMap{"secret": func(string) (secretText, error) { return nil, nil }}).Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	return t, nil
}

// secretText is a secret's value in a template. It prints its bytes
// through fmt's Formatter, so the value never becomes a Go string, which
// could not be wiped.
type secretText []byte

// Format writes the value, whatever the verb.
func (s secretText) Format(f fmt.State, _ rune) { f.Write(s) }

// A renderer writes one template's file.
type renderer struct {
	cl             *client.Client
	tmpl           *template.Template
	out, hook      string
	stdout, stderr io.Writer
	// hookErr is the last run of the hook's failure, nil when it passed.
	hookErr error
}

func (r *renderer) run(ctx context.Context, once bool) error {
	var names []string
	var changes <-chan struct{}
	cancelWatch := func() {}
	defer func() { cancelWatch() }()
	watch := func(used []string) error {
		cancelWatch()
		wctx, cancel := context.WithCancel(ctx)
		var ch <-chan struct{}
		err := fetchRetrying(ctx, r.stderr, func() error {
			var err error
			ch, err = watchSecrets(wctx, r.cl, used)
			return err
		})
		if err != nil {
			cancel()
			return err
		}
		changes, cancelWatch, names = ch, cancel, used
		return nil
	}
	for {
		var used []string
		err := fetchRetrying(ctx, r.stderr, func() error {
			var err error
			used, err = r.write(ctx)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped
			}
			if _, statErr := os.Stat(r.out); statErr == nil {
				return withHint(err, fmt.Sprintf("%s keeps its last good content", r.out))
			}
			return err
		}
		if once {
			if r.hookErr != nil {
				return cli.Exit("", exitFailed) // said in its warning
			}
			return nil
		}
		if len(used) == 0 {
			return fmt.Errorf("template %s uses no secret: nothing to watch (use --once)", r.tmpl.Name())
		}
		if !sameNames(used, names) {
			if err := watch(used); err != nil {
				return err
			}
			continue // render again: a rotation before the watch began would be missed
		}
		select {
		case _, ok := <-changes:
			if !ok && ctx.Err() == nil {
				return withHint(watchEnded(names), fmt.Sprintf("%s keeps its last good content", r.out))
			}
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// write renders the template and, when the result differs from the file,
// replaces the file and runs the hook. It returns the secrets used.
func (r *renderer) write(ctx context.Context) ([]string, error) {
	var used []string
	var fetched []*client.Secret
	defer func() {
		for _, s := range fetched {
			s.Wipe()
		}
	}()
	secret := func(name string) (secretText, error) {
		if err := secretname.Check(name); err != nil {
			return nil, err
		}
		s, err := r.cl.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		fetched = append(fetched, s)
		used = append(used, name)
		return secretText(s.Bytes()), nil
	}
	buf := &boundedBuffer{b: make([]byte, 0, maxRenderedSize)}
	defer buf.wipe()
	t, err := r.tmpl.Clone()
	if err == nil {
		err = t.Funcs(template.FuncMap{"secret": secret}).Execute(buf, nil)
	}
	if err != nil {
		return nil, err // text/template's errors name the template and the place; errors.Is sees through them
	}
	changed, err := replaceFile(r.out, buf.b)
	if err != nil || !changed {
		return used, err
	}
	fmt.Fprintf(r.stdout, "wrote %s\n", r.out)
	if r.hook != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", r.hook)
		cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
		if r.hookErr = cmd.Run(); r.hookErr != nil {
			r.hookErr = fmt.Errorf("--on-change %q failed: %v; %s was written", r.hook, r.hookErr, r.out)
			warn(r.stderr, r.hookErr.Error())
		}
	}
	return used, nil
}

// boundedBuffer is an io.Writer into memory allocated once, so that no
// partial copies of a secret are left behind by growth; a write past its
// capacity fails.
type boundedBuffer struct{ b []byte }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if len(p) > cap(w.b)-len(w.b) {
		return 0, fmt.Errorf("the rendered file is larger than %d bytes", cap(w.b))
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *boundedBuffer) wipe() { clear(w.b[:cap(w.b)]) }

// replaceFile makes path hold data, mode 0600, unless it holds it already
// (writeFileAtomic: a reader sees the old file or the new one, never a
// part). It reports whether it wrote.
func replaceFile(path string, data []byte) (bool, error) {
	if same, err := fileHolds(path, data); err != nil || same {
		return false, err
	}
	err := writeFileAtomic(path, data, 0o600)
	return err == nil, err
}

// fileHolds reports whether the regular file at path holds exactly data.
func fileHolds(path string, data []byte) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) || fi.Mode().Perm() != 0o600 {
		return false, err
	}
	old := make([]byte, len(data)+1)
	defer clear(old)
	n, err := io.ReadFull(f, old)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	return n == len(data) && subtle.ConstantTimeCompare(old[:n], data) == 1, nil
}
