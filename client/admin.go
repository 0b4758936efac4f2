package client

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/agent/wire"
)

// Administration through the agent: the agent seals and stores with the
// backend session it holds, so an administrator needs the admin permission
// on the names (docs/policy.md), not the backend's PIN. These requests are
// never sent twice: unlike reads, a retry could store a value twice.

// PutOptions modify [Client.Put].
type PutOptions struct {
	// NewVersion allows adding a version to an existing secret.
	NewVersion bool
	// MustExist refuses a secret that has no version yet (a rotation).
	MustExist bool
	// Expires, when not zero, is when the version stops being served.
	Expires time.Time
	// Grace is how long the previous version stays served; 0 retires it
	// at once. Whole seconds.
	Grace time.Duration
}

// Stored is what [Client.Put] stored.
type Stored struct {
	// Version is the version stored, which the agent now serves.
	Version uint32
	// PrevUntil is when the previous version stops being served; zero
	// when there is none or it was retired at once.
	PrevUntil time.Time
}

// Put stores value as a new version of name through the agent and returns
// once the agent serves it. The agent never logs the value; value stays
// the caller's to clear.
func (c *Client) Put(ctx context.Context, name string, value []byte, opts PutOptions) (*Stored, error) {
	req := &wire.Put{Name: name, Value: value}
	if err := opts.fill(name, value, &req.Flags, &req.Expires, &req.Grace); err != nil {
		return nil, err
	}
	return c.store(ctx, req)
}

// PutCredential stores an exchange API credential through the agent, like
// [Client.Put]: the exchange ("binance", "bybit", "okx", "kraken",
// "coinbase"), the API key id, and value, the secret (for OKX the secret,
// a line feed and the passphrase). The agent checks that the exchange
// takes the key before it stores it.
func (c *Client) PutCredential(ctx context.Context, name, exchange, apiKey string, value []byte, opts PutOptions) (*Stored, error) {
	req := &wire.PutCredential{Name: name, Exchange: exchange, APIKey: apiKey, Value: value}
	if err := opts.fill(name, value, &req.Flags, &req.Expires, &req.Grace); err != nil {
		return nil, err
	}
	return c.store(ctx, req)
}

// fill checks a put's name, value and options and sets its fields.
func (opts *PutOptions) fill(name string, value []byte, flags *wire.PutFlags, expires *int64, grace *uint32) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(value) == 0 || len(value) > wire.MaxSecretSize {
		return fmt.Errorf("%w: a value of %d bytes (1 to %d)", ErrBadRequest, len(value), wire.MaxSecretSize)
	}
	if opts.Grace < 0 || opts.Grace/time.Second > 1<<32-1 {
		return fmt.Errorf("%w: grace period %v", ErrBadRequest, opts.Grace)
	}
	*grace = uint32(opts.Grace / time.Second)
	if opts.NewVersion {
		*flags |= wire.PutNewVersion
	}
	if opts.MustExist {
		*flags |= wire.PutMustExist
	}
	if !opts.Expires.IsZero() {
		*expires = opts.Expires.Unix()
	}
	return nil
}

// store sends a Put or PutCredential, once.
func (c *Client) store(ctx context.Context, req wire.Message) (*Stored, error) {
	var st *Stored
	err := c.doOnce(ctx, req, func(m wire.Message) error {
		r, ok := m.(*wire.Stored)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to put", ErrProtocol, m)
		}
		st = &Stored{Version: r.Version}
		if r.PrevUntil != 0 {
			st.PrevUntil = time.Unix(r.PrevUntil, 0)
		}
		return nil
	})
	return st, err
}

// Remove deletes version of name (0: every version) through the agent and
// returns how many versions it deleted, once the agent no longer serves
// them.
func (c *Client) Remove(ctx context.Context, name string, version uint32) (int, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	var n int
	err := c.doOnce(ctx, &wire.Remove{Name: name, Version: version}, func(m wire.Message) error {
		r, ok := m.(*wire.Removed)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to remove", ErrProtocol, m)
		}
		n = int(r.Count)
		return nil
	})
	return n, err
}

// A Pruned is a version [Client.Prune] deleted.
type Pruned struct {
	Name    string
	Version uint32
	Retired time.Time
}

// Prune deletes, through the agent, the versions past their grace period
// or expiry of the secrets the caller administers.
func (c *Client) Prune(ctx context.Context) ([]Pruned, error) {
	var out []Pruned
	err := c.doOnce(ctx, &wire.Prune{}, func(m wire.Message) error {
		r, ok := m.(*wire.Pruned)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to prune", ErrProtocol, m)
		}
		for _, v := range r.Versions {
			out = append(out, Pruned{Name: v.Name, Version: v.Version, Retired: time.Unix(v.Retired, 0)})
		}
		return nil
	})
	return out, err
}

// Health is the agent's health in detail.
type Health struct {
	// BackendOK reports whether the last check of the backend passed.
	BackendOK bool
	// BackendSince is when the backend last changed state; zero if it
	// has not since the agent started.
	BackendSince time.Time
	// LastOK is when a check last passed; zero if none has.
	LastOK time.Time
	// Secrets is the number of secrets loaded, 0 for a caller no policy
	// rule names.
	Secrets int
	// Problems are the caller's secrets not served from their newest
	// version.
	Problems []Problem
}

// A Problem is a secret the agent does not serve from its newest version.
type Problem struct {
	Name string
	// State is "stale" (an older version is served within its grace
	// while the backend does not answer), "unavailable" (nothing is) or
	// "damaged" (the newest envelope does not verify).
	State   string
	Serving uint32 // the version served for the current one; 0: none
	Newest  uint32 // the newest version in the store
}

// Health returns the agent's health in detail.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h *Health
	err := c.do(ctx, &wire.Health{}, func(m wire.Message) error {
		r, ok := m.(*wire.HealthOK)
		if !ok {
			return fmt.Errorf("%w: unexpected answer %T to health", ErrProtocol, m)
		}
		h = &Health{BackendOK: r.BackendOK, BackendSince: unixTime(r.BackendSince), LastOK: unixTime(r.LastOK),
			Secrets: int(r.Secrets)}
		for _, p := range r.Problems {
			h.Problems = append(h.Problems, Problem{Name: p.Name, State: p.State.String(), Serving: p.Serving, Newest: p.Newest})
		}
		return nil
	})
	return h, err
}

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// checkName refuses a name the protocol cannot carry; the agent checks
// the naming rule itself.
func checkName(name string) error {
	if len(name) == 0 || len(name) > wire.MaxStr8Len {
		return fmt.Errorf("%w: secret name of %d bytes", ErrBadRequest, len(name))
	}
	return nil
}
