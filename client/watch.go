package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/agent/wire"
)

// A Change reports that a watched secret has a new current version;
// Version 0 means it is no longer served. Fetch the value with Get.
//
// A Change with Err set is the last one before the channel closes: after
// a reconnect the agent refused the subscription for good (ErrDenied: the
// permission was revoked; ErrBadRequest), so retrying would not help.
type Change struct {
	Name    string
	Version uint32
	Err     error
}

// Watch subscribes to the names (the caller needs the watch permission on
// each) and returns a channel that receives a Change whenever one of them
// gets a new current version, in order, until ctx ends; the channel is
// then closed. Watch uses a connection of its own and reconnects if the
// agent restarts: after a reconnect it reports the names whose version
// differs from the last one it reported, so a trading process can
// re-authenticate without restarting. The first subscription's error
// (ErrDenied, ErrUnavailable, ...) is returned directly; a later one that
// retrying cannot cure ends the watch with a Change holding it.
func (c *Client) Watch(ctx context.Context, names ...string) (<-chan Change, error) {
	if len(names) < 1 || len(names) > wire.MaxWatch {
		return nil, fmt.Errorf("%w: watch 1 to %d names, not %d", ErrBadRequest, wire.MaxWatch, len(names))
	}
	if c.turns != nil {
		return nil, errors.New("keyward: Watch needs its own connection: use a Client made by Dial")
	}
	w := &watcher{c: c, names: names, last: make(map[string]uint32), ch: make(chan Change, 16)}
	cn, err := w.subscribe(ctx, false)
	if err != nil {
		return nil, err
	}
	go w.run(ctx, cn)
	return w.ch, nil
}

type watcher struct {
	c     *Client
	names []string
	last  map[string]uint32
	ch    chan Change
}

// subscribe connects and sends the Watch request; with report, versions
// that differ from the last ones reported are sent as changes.
func (w *watcher) subscribe(ctx context.Context, report bool) (*conn, error) {
	cn, err := w.c.connect(ctx)
	if err != nil {
		return nil, err
	}
	var versions []uint32
	err = cn.roundTrip(ctx, &wire.Watch{Names: w.names}, func(m wire.Message) error {
		r, ok := m.(*wire.Watching)
		if !ok || len(r.Versions) != len(w.names) {
			return fmt.Errorf("%w: unexpected answer %T to watch", ErrProtocol, m)
		}
		versions = r.Versions
		return nil
	})
	if err != nil {
		cn.close()
		return nil, err
	}
	if d, ok := cn.rwc.(deadliner); ok {
		d.SetDeadline(time.Time{}) // notifications come whenever they come
	}
	for i, n := range w.names {
		if report && versions[i] != w.last[n] {
			if !w.send(ctx, Change{Name: n, Version: versions[i]}) {
				cn.close()
				return nil, ctx.Err()
			}
		}
		w.last[n] = versions[i]
	}
	return cn, nil
}

func (w *watcher) send(ctx context.Context, ch Change) bool {
	select {
	case w.ch <- ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// run reads notifications, reconnecting with backoff until ctx ends.
func (w *watcher) run(ctx context.Context, first *conn) {
	defer close(w.ch)
	var cur atomic.Pointer[conn] // read by the AfterFunc to unblock a read
	cur.Store(first)
	stop := context.AfterFunc(ctx, func() {
		if cn := cur.Load(); cn != nil {
			cn.rwc.Close()
		}
	})
	defer stop()
	drop := func() {
		if cn := cur.Swap(nil); cn != nil {
			cn.close()
		}
	}
	defer drop()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		cn := cur.Load()
		if cn == nil {
			var err error
			if cn, err = w.subscribe(ctx, true); err != nil {
				if errors.Is(err, ErrDenied) || errors.Is(err, ErrBadRequest) {
					w.send(ctx, Change{Err: err})
					return
				}
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			cur.Store(cn)
			if ctx.Err() != nil {
				return
			}
		}
		t, id, body, err := cn.r.ReadFrame()
		if err != nil {
			drop() // the agent went away: reconnect
			continue
		}
		m, err := wire.ParseBody(t, body)
		ch, ok := m.(*wire.Changed)
		if err != nil || id != 0 || !ok {
			drop()
			continue
		}
		if ch.Version != w.last[ch.Name] {
			w.last[ch.Name] = ch.Version
			if !w.send(ctx, Change{Name: ch.Name, Version: ch.Version}) {
				return
			}
		}
	}
}
