// Package storetest is a conformance suite for [store.Backend]
// implementations. Every backend (the in-memory test backend, PKCS#11 on
// SoftHSM, the TPM simulator and swtpm) runs the same tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/store"
)

// Run tests the Backend contract on b. The backend must be freshly opened;
// Run does not close it.
func Run(t *testing.T, b store.Backend) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{0x42}, store.DataKeySize)

	t.Run("RoundTrip", func(t *testing.T) {
		w, err := b.Wrap(ctx, key)
		if err != nil {
			t.Fatalf("Wrap() = %v", err)
		}
		if bytes.Contains(w, key[:8]) {
			t.Errorf("Wrap() output contains the data key")
		}
		got, err := b.Unwrap(ctx, w)
		if err != nil {
			t.Fatalf("Unwrap() = %v", err)
		}
		if !bytes.Equal(got, key) {
			t.Errorf("Unwrap(Wrap(k)) != k")
		}
		w2, err := b.Wrap(ctx, key)
		if err != nil {
			t.Fatalf("Wrap() = %v", err)
		}
		if bytes.Equal(w, w2) {
			t.Errorf("two Wraps of one key are identical; want fresh randomness")
		}
	})

	t.Run("Tamper", func(t *testing.T) {
		w, err := b.Wrap(ctx, key)
		if err != nil {
			t.Fatalf("Wrap() = %v", err)
		}
		for _, i := range []int{0, len(w) / 2, len(w) - 1} {
			bad := bytes.Clone(w)
			bad[i] ^= 0x01
			if got, err := b.Unwrap(ctx, bad); err == nil {
				t.Errorf("Unwrap(flipped byte %d) = %x, nil; want an error", i, got)
			}
		}
		last := bytes.Clone(w)
		last[len(last)-1] ^= 0x80
		_, err = b.Unwrap(ctx, last)
		var ie interface{ IntegrityFailure() bool }
		if !errors.As(err, &ie) || !ie.IntegrityFailure() {
			t.Errorf("Unwrap(tampered tag) = %v; want an integrity failure", err)
		}
		for _, short := range [][]byte{nil, w[:1], w[:len(w)-1]} {
			if _, err := b.Unwrap(ctx, short); err == nil {
				t.Errorf("Unwrap(%d bytes) = nil error; want an error", len(short))
			}
		}
	})

	t.Run("BadKeySize", func(t *testing.T) {
		for _, n := range []int{0, 16, 31, 33} {
			if _, err := b.Wrap(ctx, make([]byte, n)); err == nil {
				t.Errorf("Wrap(%d-byte key) = nil error; want an error", n)
			}
		}
	})

	t.Run("KeyID", func(t *testing.T) {
		id := b.KeyID()
		kind, rest, ok := strings.Cut(id, ":")
		if !ok || kind == "" || rest == "" {
			t.Errorf("KeyID() = %q; want KIND:IDENTIFIER", id)
		}
		if b.KeyID() != id {
			t.Errorf("KeyID() is not stable")
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				for range 20 {
					w, err := b.Wrap(ctx, key)
					if err != nil {
						errs <- err
						return
					}
					got, err := b.Unwrap(ctx, w)
					if err != nil || !bytes.Equal(got, key) {
						errs <- errors.Join(err, errors.New("round trip mismatch"))
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Wrap/Unwrap: %v", err)
		}
	})
}
