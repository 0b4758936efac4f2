package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/store"
)

// A usageError is a mistake in how keyward was called: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// onUsageError turns urfave/cli's flag errors into usage errors, with a
// did-you-mean for a misspelt flag.
func onUsageError(c *cli.Context, err error, _ bool) error {
	ue := &usageError{err.Error()}
	name, undefined := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !undefined || c.Command == nil {
		return ue
	}
	var names []string
	for _, f := range append(c.Command.Flags, c.App.Flags...) {
		names = append(names, f.Names()...)
	}
	if s := suggest(strings.TrimLeft(name, "-"), names); s != "" {
		return withHint(ue, fmt.Sprintf("did you mean --%s?", s))
	}
	return ue
}

// A hintError carries what an operator can do about an error; report
// prints each hint as a "keyward: hint:" line. It is the one way to attach
// hints (after age's errorWithHint).
type hintError struct {
	err   error
	hints []string
}

// withHint returns err with hints attached.
func withHint(err error, hints ...string) error { return &hintError{err, hints} }

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// warn tells the operator of something that does not stop the command:
// a "keyward: warning:" line (none when msg is empty), then a
// "keyward: hint:" line for each hint, on w (standard error).
func warn(w io.Writer, msg string, hints ...string) {
	if msg != "" {
		fmt.Fprintf(w, "keyward: warning: %s\n", msg)
	}
	for _, h := range hints {
		fmt.Fprintf(w, "keyward: hint: %s\n", h)
	}
}

// report prints err the way an operator reads it and returns the exit
// status: "keyward: error: ..." and optional "keyward: hint: ..." lines on
// stderr, in the style of age.
func report(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) && err.Error() == "" {
		return ec.ExitCode()
	}
	fmt.Fprintf(w, "keyward: error: %s\n", unprefixed(err.Error()))
	for _, h := range hints(err) {
		fmt.Fprintf(w, "keyward: hint: %s\n", h)
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ec) && ec.ExitCode() == exitCLIHelp && strings.HasPrefix(err.Error(), "No help topic"):
		return exitUsage // keyward help NOSUCH; audit verify's 3 stays 3
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return exitFailed
}

// exitCLIHelp is the status urfave/cli's help command gives an unknown
// topic ("No help topic for ...").
const exitCLIHelp = 3

// unprefixed removes the "keyward: " that the client package's errors
// carry (client.ErrDenied is "keyward: access denied"), at the start of
// msg and after each ": ", so that report prints one prefix.
func unprefixed(msg string) string {
	msg = strings.TrimSpace(msg)
	msg = strings.ReplaceAll(msg, ": keyward: ", ": ")
	for strings.HasPrefix(msg, "keyward: ") {
		msg = strings.TrimPrefix(msg, "keyward: ")
	}
	return msg
}

// hints returns what an operator can do about err: the hints attached to
// it, then those its sentinels call for.
func hints(err error) []string {
	var out []string
	for e := err; e != nil; e = errors.Unwrap(e) {
		if h, ok := e.(*hintError); ok {
			out = append(out, h.hints...)
		}
	}
	return append(out, sentinelHints(err)...)
}

func sentinelHints(err error) []string {
	// Backend errors (package hsm) already say what to do.
	switch {
	case errors.Is(err, store.ErrKitExists):
		return []string{"add --replace to make a new kit; keep the old shares until every secret has been rotated"}
	case errors.Is(err, store.ErrExists):
		return []string{"add --new-version to store the value as the next version"}
	case errors.Is(err, store.ErrWrongKey):
		return []string{"if the HSM key or the TPM was replaced, restore with the custodians' shares: keyward recovery restore (docs/recovery.md)"}
	case errors.Is(err, store.ErrIntegrity):
		return []string{"restore the envelope from a backup, or put the secret again"}
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return []string{"run keyward help for usage"}
	}
	return nil
}
