package audit

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"time"
)

// A Filter selects events; its zero value selects every one.
type Filter struct {
	Secret   string // a secret name or a glob (path.Match, as in policy): binance/*
	UID      *uint32
	Unit     string // the caller's systemd unit, or a glob
	Decision string // allow, deny or error
	Op       string
	Since    time.Time // events at or after it
	Until    time.Time // events before it
}

// Check returns an error naming the first field of f that is not valid.
func (f *Filter) Check() error {
	for _, g := range []struct{ what, pattern string }{{"secret", f.Secret}, {"unit", f.Unit}} {
		if _, err := path.Match(g.pattern, ""); err != nil {
			return fmt.Errorf("%s pattern %q is not a valid glob", g.what, g.pattern)
		}
	}
	switch f.Decision {
	case "", "allow", "deny", "error":
	default:
		return fmt.Errorf("decision %q is not allow, deny or error", f.Decision)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return errors.New("the end of the time range is not after its start")
	}
	return nil
}

// Match reports whether f selects r.
func (f *Filter) Match(r *Record) bool {
	switch {
	case f.Secret != "" && (r.Secret == "" || !glob(f.Secret, r.Secret)),
		f.Decision != "" && r.Decision != f.Decision,
		f.Op != "" && r.Op != f.Op,
		!f.Since.IsZero() && r.Time.Before(f.Since),
		!f.Until.IsZero() && !r.Time.Before(f.Until),
		f.Unit != "" && (r.Caller == nil || !glob(f.Unit, r.Caller.Unit)):
		return false
	case f.UID != nil:
		return r.Caller != nil && r.Caller.UID == *f.UID || r.CallerUID == strconv.FormatUint(uint64(*f.UID), 10)
	}
	return true
}

func glob(pattern, name string) bool {
	ok, _ := path.Match(pattern, name) // checked by Check
	return ok
}

// ReadFiles reads the file trails at paths (a name ending in .gz is
// decompressed) and calls fn with each event f selects. Lines that are
// not events are counted in skipped, not read; `keyward audit verify`
// says what they are. An error from fn stops the reading.
func ReadFiles(paths []string, f Filter, fn func(*Record) error) (skipped int, err error) {
	for _, p := range paths {
		if err := readFileEvents(p, matching(f, fn), func(*lineError) { skipped++ }); err != nil {
			return skipped, err
		}
	}
	return skipped, nil
}

// matching returns fn called only for the records f selects.
func matching(f Filter, fn func(*Record) error) func(*Record) error {
	return func(r *Record) error {
		if !f.Match(r) {
			return nil
		}
		return fn(r)
	}
}
