package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Re-wrapping replaces every envelope as one transaction: the new
// envelopes are written beside the old ones as NAME@VERSION.kwe.next, then
// a commit marker is written, then each .next file is renamed over its
// envelope. A writer that is killed before the marker leaves the old
// store (the .next files are removed at the next lock); one killed after
// it leaves a committed store, finished at the next lock. Readers see
// either version of each envelope, and both decrypt.
const (
	nextExt      = ".next"
	commitMarker = ".rewrap-committed"
)

// Rewrap gives every envelope a new wrapped data key: rewrap receives the
// current wrapped key and returns one that the store's backend unwraps to
// the same data key (a TPM re-sealing to new PCR values, or the key wrapped
// under a new root key). Each secret is re-encrypted, with a new nonce,
// under its new header. It returns the number of envelopes rewritten. An
// envelope that cannot be rewritten aborts the whole operation, leaving
// the store as it was.
func (s *Store) Rewrap(ctx context.Context, rewrap func(wrapped []byte) ([]byte, error)) (int, error) {
	if s.cfg.Backend == nil {
		return 0, errors.New("store: no backend configured")
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	extra, err := s.keyFilesWith(ctx, rewrap, s.cfg.Backend)
	if err != nil {
		return 0, err
	}
	return s.replaceAllWith(ctx, func(e *Envelope) (*Envelope, error) { return s.rewrapOne(ctx, e, rewrap) }, extra)
}

// keyFilesWith returns the files that hold keys wrapped by the backend —
// the recovery kit's binding, the import key — re-wrapped by rewrap, for
// the backend to, to be replaced in the same transaction as the envelopes.
func (s *Store) keyFilesWith(ctx context.Context, rewrap func([]byte) ([]byte, error), to Backend) (map[string][]byte, error) {
	extra, err := s.kitBindingWith(ctx, rewrap)
	if err != nil {
		return nil, err
	}
	imp, err := s.importKeyWith(rewrap, to)
	if err != nil {
		return nil, err
	}
	if extra == nil {
		extra = map[string][]byte{}
	}
	maps.Copy(extra, imp)
	return extra, nil
}

// kitBindingWith returns, when the store has a recovery kit, its binding
// re-wrapped by rewrap, to be replaced in the same transaction as the
// envelopes; the kit is verified first, so a swapped kit is never bound.
func (s *Store) kitBindingWith(ctx context.Context, rewrap func([]byte) ([]byte, error)) (map[string][]byte, error) {
	kit, err := s.Kit(ctx)
	if err != nil || kit == nil {
		return nil, err
	}
	binding, err := os.ReadFile(filepath.Join(s.cfg.Dir, kitBinding))
	if err != nil {
		return nil, err
	}
	nb, err := rewrap(binding)
	if err != nil {
		return nil, fmt.Errorf("failed to move the recovery kit's binding: %w", err)
	}
	return map[string][]byte{kitBinding: nb}, nil
}

// replaceAll replaces every envelope with transform's result in one
// transaction (see the top of this file). The caller holds the lock. An
// envelope that cannot be transformed aborts it all, leaving the store as
// it was.
func (s *Store) replaceAll(ctx context.Context, transform func(*Envelope) (*Envelope, error)) (int, error) {
	return s.replaceAllWith(ctx, transform, nil)
}

// replaceAllWith is replaceAll that also replaces the files in extra (name
// to contents) in the same transaction; a nil transform replaces only
// those. extra is read after every envelope is transformed, so transform
// may add to it.
func (s *Store) replaceAllWith(ctx context.Context, transform func(*Envelope) (*Envelope, error), extra map[string][]byte) (int, error) {
	envs, damaged, err := s.List()
	if err != nil {
		return 0, err
	}
	if len(damaged) > 0 {
		return 0, fmt.Errorf("the store has %d damaged envelopes (first: %w); remove or restore them first", len(damaged), damaged[0])
	}
	t := s.begin()
	for _, e := range envs {
		if transform == nil {
			break // only the extra files
		}
		if err := ctx.Err(); err != nil {
			return 0, t.abort(err)
		}
		ne, err := transform(e)
		if err != nil {
			return 0, t.abort(fmt.Errorf("%s version %d: %w", e.Name, e.Version, err))
		}
		if err := t.add(fileName(e.Name, e.Version), ne.Marshal()); err != nil {
			return 0, t.abort(err)
		}
	}
	for name, b := range extra {
		if err := t.add(name, b); err != nil {
			return 0, t.abort(err)
		}
	}
	if err := t.commit(); err != nil {
		return 0, err
	}
	return len(envs), nil
}

// A txn is one store transaction (see the top of this file) being
// written; the caller holds the lock.
type txn struct {
	s       *Store
	written []string
}

func (s *Store) begin() *txn { return &txn{s: s} }

// add writes the new contents of the file name beside it, as name.next.
func (t *txn) add(name string, b []byte) error {
	path := filepath.Join(t.s.cfg.Dir, name+nextExt)
	os.Remove(path)
	// Synced, linked; the directory is synced once, by commit.
	tmp, err := writeTemp(t.s.cfg.Dir, b)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	t.written = append(t.written, path)
	return nil
}

// abort removes what add wrote, unless the transaction was committed
// after all, and returns err.
func (t *txn) abort(err error) error {
	if _, serr := os.Stat(filepath.Join(t.s.cfg.Dir, commitMarker)); serr == nil {
		// Committed after all: the next lock finishes it.
		return fmt.Errorf("the transaction is committed but not finished (it completes at the next write to the store): %w", err)
	}
	for _, p := range t.written {
		os.Remove(p)
	}
	return err
}

// commit writes the commit marker, once every file added is durable, and
// moves them into place.
func (t *txn) commit() error {
	if err := syncDir(t.s.cfg.Dir); err != nil {
		return t.abort(err)
	}
	if err := writeNew(t.s.cfg.Dir, commitMarker, nil); err != nil {
		return t.abort(err)
	}
	if err := t.s.finishRewrap(); err != nil {
		return fmt.Errorf("the transaction is committed but not finished (it completes at the next write to the store): %w", err)
	}
	return nil
}

// rewrapOne returns e with a new wrapped key and its secret re-encrypted.
func (s *Store) rewrapOne(ctx context.Context, e *Envelope, rewrap func([]byte) ([]byte, error)) (*Envelope, error) {
	plain, err := open(ctx, s.cfg.Backend, s.cfg.Host, e)
	if err != nil {
		return nil, err
	}
	defer plain.Destroy()
	wrapped, err := rewrap(e.WrappedKey)
	if err != nil {
		return nil, err
	}
	dataKey, err := s.cfg.Backend.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("the new wrapped key does not unwrap: %w", err)
	}
	defer clear(dataKey)
	return encrypt(e.Header, s.cfg.Backend.KeyID(), wrapped, dataKey, plain.Bytes())
}

// finishRewrap completes or discards an interrupted re-wrap: with the
// commit marker, every .next file (envelopes and the root-key record)
// replaces its file; without it, they are removed. The caller holds the
// lock.
func (s *Store) finishRewrap() error {
	nexts, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "*"+nextExt))
	marker := filepath.Join(s.cfg.Dir, commitMarker)
	if _, err := os.Stat(marker); err != nil {
		for _, p := range nexts {
			os.Remove(p)
		}
		return nil
	}
	// Envelopes first, then the files that name the key (root-key, the
	// kit binding): until those are renamed, readers use the old key,
	// which still opens every envelope not yet renamed.
	slices.SortStableFunc(nexts, func(a, b string) int {
		ea, eb := strings.HasSuffix(a, Ext+nextExt), strings.HasSuffix(b, Ext+nextExt)
		switch {
		case ea && !eb:
			return -1
		case !ea && eb:
			return 1
		}
		return 0
	})
	for _, p := range nexts {
		if err := os.Rename(p, strings.TrimSuffix(p, nextExt)); err != nil {
			return err
		}
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	return syncDir(s.cfg.Dir)
}

// RewrapTo re-wraps every data key from the store's backend to the backend
// to (a new root key), re-encrypting each secret under its new header, and
// writes the key records (see [RootKeyFile], [TPMKeyFile]) that make the
// store open with to, all in one transaction. Envelopes already under to
// are kept, so that a re-run after an interruption completes the job. A
// recovery kit is bound to the new key.
func (s *Store) RewrapTo(ctx context.Context, to Backend, records map[string][]byte) (int, error) {
	if s.cfg.Backend == nil {
		return 0, errors.New("store: no backend configured")
	}
	for name := range records {
		if !keyRecords[name] {
			return 0, fmt.Errorf("store: %q is not a key record", name)
		}
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	// The recovery kit's binding and the import key move to the new key
	// in the same transaction, after the kit is verified under the old one.
	extra, err := s.keyFilesWith(ctx, func(w []byte) ([]byte, error) {
		key, err := s.cfg.Backend.Unwrap(ctx, w)
		if err != nil {
			return nil, err
		}
		defer clear(key)
		return to.Wrap(ctx, key)
	}, to)
	if err != nil {
		return 0, err
	}
	maps.Copy(extra, records)
	return s.replaceAllWith(ctx, func(e *Envelope) (*Envelope, error) {
		from := s.cfg.Backend
		if e.KeyID == to.KeyID() {
			from = to // already moved by an interrupted run
		}
		dataKey, err := from.Unwrap(ctx, e.WrappedKey)
		if err != nil {
			return nil, err
		}
		defer clear(dataKey)
		return rewrapKey(ctx, e, e.Header, dataKey, to)
	}, extra)
}

// rewrapKey returns e with its data key wrapped by to and its secret
// re-encrypted, with a new nonce, under h (e's header, or e's re-bound to
// another host) with to's key id.
func rewrapKey(ctx context.Context, e *Envelope, h Header, dataKey []byte, to Backend) (*Envelope, error) {
	plain, err := decrypt(e, dataKey)
	if err != nil {
		return nil, err
	}
	defer plain.Destroy()
	wrapped, err := to.Wrap(ctx, dataKey)
	if err != nil {
		return nil, err
	}
	// The new key must give the data key back before anything depends
	// on it (the old key may be destroyed next).
	back, err := to.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("the new key cannot unwrap what it wrapped: %w", err)
	}
	defer clear(back)
	if subtle.ConstantTimeCompare(back, dataKey) != 1 {
		return nil, errors.New("the new key unwraps another data key than it wrapped")
	}
	return encrypt(h, to.KeyID(), wrapped, dataKey, plain.Bytes())
}

// FinishPending completes or discards a transaction that a killed writer
// left (see the top of this file). The agent calls it before loading, so
// that it never reads a store half-way through one.
func (s *Store) FinishPending() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	unlock()
	return nil
}
