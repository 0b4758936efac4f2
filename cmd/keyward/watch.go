package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/keyward/keyward/client"
)

// render and exec --restart-on-rotate follow the secrets they use with
// the agent's Watch: client.Watch reconnects when the agent restarts and
// then reports the names whose version moved meanwhile. Fetching the new
// values is retried while the agent is unavailable (restarting); a
// refusal (the permission revoked, the secret removed or expired) is
// final: the command stops and says so, keeping what it had made.

// watchSecrets subscribes to names and returns a channel that receives
// one value per batch of changes: the changes that arrive together (a
// rotation of several names, the catch-up after a reconnect) are merged.
// The channel is closed when ctx ends, or when the agent refuses to watch
// after a reconnect (see watchEnded).
func watchSecrets(ctx context.Context, cl *client.Client, names []string) (<-chan struct{}, error) {
	ch, err := cl.Watch(ctx, names...)
	if err != nil {
		if errors.Is(err, client.ErrDenied) {
			return nil, withHint(fmt.Errorf("the agent refused to watch %v: %w", names, err),
				`following rotations needs the watch permission on each secret: allow = ["get", "watch"] (docs/policy.md)`)
		}
		return nil, fmt.Errorf("cannot watch %v: %w", names, err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for c := range ch {
			ended := c.Err != nil
			for drained := ended; !drained; {
				select {
				case c, ok := <-ch:
					ended = ok && c.Err != nil
					drained = !ok || ended
				case <-time.After(50 * time.Millisecond):
					drained = true
				}
			}
			if ended {
				return // refused for good after a reconnect: see watchEnded
			}
			select {
			case out <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	return out, nil
}

// watchEnded is the error for a watch channel closed before ctx ended.
func watchEnded(names []string) error {
	return withHint(fmt.Errorf("the agent no longer lets this user watch %v: rotations cannot be followed", names),
		`check the policy (keyward policy check --op watch --uid USER NAME): following rotations needs get and watch`)
}

// fetchRetrying runs fetch until it succeeds, fails with an error that
// retrying cannot help, or ctx ends. While the agent is unavailable it
// retries with backoff, saying so once on log.
func fetchRetrying(ctx context.Context, log io.Writer, fetch func() error) error {
	backoff := 100 * time.Millisecond
	told := false
	for {
		err := fetch()
		if err == nil || !errors.Is(err, client.ErrUnavailable) {
			return err
		}
		if !told {
			warn(log, fmt.Sprintf("%v; retrying", unprefixed(err.Error())))
			told = true
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// sameNames reports whether a and b hold the same names, in any order.
func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
