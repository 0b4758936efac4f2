package recovery

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// A PrivateKey is a kit's recovered private key. It never prints its
// contents: String, Format and LogValue show only the kit id.
//
// A PrivateKey is safe for concurrent use by [OpenKey]; Destroy must not
// race with it.
type PrivateKey struct {
	k     hpke.PrivateKey
	kitID string
}

// KitID returns the id of the kit the key belongs to.
func (p *PrivateKey) KitID() string { return p.kitID }

// Destroy clears what it can of the key (the seed kept by crypto/hpke; its
// expanded keys cannot be reached) and drops it: [OpenKey] fails afterwards.
// It is safe to call more than once.
func (p *PrivateKey) Destroy() {
	if p.k != nil {
		wipeKey(p.k)
		p.k = nil
	}
}

// String implements fmt.Stringer without revealing the key.
func (p *PrivateKey) String() string { return "[recovery private key of kit " + p.kitID + "]" }

// Format implements fmt.Formatter so that no verb, including %x and %#v,
// reveals the key.
func (p *PrivateKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, p.String()) }

// LogValue implements slog.LogValuer without revealing the key.
func (p *PrivateKey) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Combine recovers the kit's private key from at least kit.Threshold shares.
// It checks every share first and reports all problems at once
// (errors.Join): a share of another kit ([ErrOtherKit]), an index given
// twice ([ErrDuplicateShare]), or a share inconsistent with the kit
// ([ErrBadShare]), each as a *[ShareError] naming the share; then fewer
// distinct shares than the threshold fail with [ErrNotEnoughShares], saying
// how many more are needed.
//
// Shares that pass their checksums may still not belong together: altered
// with a recomputed checksum, or made by another split of the same kit. The
// recovered key is therefore checked against kit.PublicKey. When more shares
// than the threshold are given, Combine searches for a threshold-sized
// subset that recovers the kit's key, and then checks each remaining share
// against it: every share that does not fit is named in a *ShareError
// wrapping [ErrWrongShares], and Combine fails so that the operator learns
// of it (calling again without the named shares succeeds). This identifies
// the bad shares whenever at least threshold of the given shares are good.
// When fewer are good (in particular whenever exactly threshold shares are
// given and one is bad) no share can be blamed, and Combine fails with
// [ErrWrongShares] asking for more shares.
//
// Each subset tried costs a key derivation and an interpolation (under a
// millisecond for threshold 3, about 1 ms for threshold 8). With b bad
// shares among m given and threshold k, at most C(k+b, k) subsets are tried
// before the good ones are found (k+1 for one bad share); when fewer than k
// are good, all C(m, k) are tried before giving up: 12,870 for 16 shares and
// threshold 8.
func Combine(kit *Kit, shares []Share) (*PrivateKey, error) {
	if _, err := kit.publicKey(); err != nil {
		return nil, err
	}
	var (
		errs []error
		seen = map[int]Share{}
		good []Share
	)
	for _, s := range shares {
		var err error
		switch prev, dup := seen[s.Index]; {
		case len(s.value) != seedSize:
			err = fmt.Errorf("%w: not a share read by ParseShare or made by NewKit", ErrBadShare)
		case s.KitID != kit.ID:
			err = fmt.Errorf("%w: it belongs to kit %s, not to kit %s", ErrOtherKit, s.KitID, kit.ID)
		case s.Threshold != kit.Threshold || s.Shares != kit.Shares:
			err = fmt.Errorf("%w: it says threshold %d of %d shares, but kit %s has threshold %d of %d",
				ErrBadShare, s.Threshold, s.Shares, kit.ID, kit.Threshold, kit.Shares)
		case s.Index < 1 || s.Index > kit.Shares:
			err = fmt.Errorf("%w: kit %s has shares 1 to %d", ErrBadShare, kit.ID, kit.Shares)
		case dup && bytes.Equal(prev.value, s.value):
			err = fmt.Errorf("%w: it was given more than once", ErrDuplicateShare)
		case dup:
			err = fmt.Errorf("%w: it was given more than once, with different values", ErrDuplicateShare)
		}
		if err != nil {
			errs = append(errs, &ShareError{Index: s.Index, Err: err})
			continue
		}
		seen[s.Index] = s
		good = append(good, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	k := kit.Threshold
	if len(good) < k {
		return nil, fmt.Errorf("%w: %d given, kit %s needs %d: %d more needed",
			ErrNotEnoughShares, len(good), kit.ID, k, k-len(good))
	}

	pts := make([]secretsharing.Share, len(good))
	defer func() {
		for _, p := range pts {
			if p.Value != nil {
				p.Value.SetUint64(0)
			}
		}
	}()
	for i, s := range good {
		v, err := scalar(s.value)
		if err != nil {
			return nil, &ShareError{Index: s.Index, Err: fmt.Errorf("%w: invalid share value", ErrBadShare)}
		}
		pts[i] = secretsharing.Share{ID: group.Ristretto255.NewScalar().SetUint64(uint64(s.Index)), Value: v}
	}

	// Find a threshold-sized subset that recovers the kit's key.
	var (
		priv   *PrivateKey
		failed error
		sub    = make([]secretsharing.Share, k)
	)
	searchSubsets(len(pts), k, func(subset []int) bool {
		for i, j := range subset {
			sub[i] = pts[j]
		}
		secret, err := secretsharing.Recover(uint(k-1), sub)
		if err != nil {
			failed = fmt.Errorf("recovery: combining shares: %w", err)
			return true
		}
		defer secret.SetUint64(0)
		key, err := deriveKey(secret)
		if err != nil {
			failed = err
			return true
		}
		if !bytes.Equal(key.PublicKey().Bytes(), kit.PublicKey) {
			wipeKey(key)
			return false
		}
		if bad := outliers(k, pts, subset, secret); len(bad) > 0 {
			wipeKey(key)
			failed = wrongShares(good, subset, bad)
			return true
		}
		priv = &PrivateKey{k: key, kitID: kit.ID}
		return true
	})
	if failed != nil {
		return nil, failed
	}
	if priv != nil {
		return priv, nil
	}
	if len(good) == k {
		return nil, fmt.Errorf("%w: the %d shares pass their checksums but do not recover kit %s: "+
			"at least one was altered or comes from another split of this kit; give one more share to find which",
			ErrWrongShares, k, kit.ID)
	}
	return nil, fmt.Errorf("%w: no %d of the %d shares recover kit %s: at least %d are altered or come from "+
		"another split of this kit; give more shares to find which",
		ErrWrongShares, k, len(good), kit.ID, len(good)-k+1)
}

// outliers returns the positions in pts, outside subset, of the shares that
// do not lie on the polynomial through the shares in subset, whose value at
// 0 is secret. Share j is tested by swapping it for subset[0]: the
// recovered secret changes by δ·L_j(0) for an error δ in share j, and the
// Lagrange coefficient L_j(0) is never zero because no share index is zero.
func outliers(k int, pts []secretsharing.Share, subset []int, secret group.Scalar) []int {
	var bad []int
	sub := make([]secretsharing.Share, k)
	for i, j := range subset {
		sub[i] = pts[j]
	}
	for j := range pts {
		if slices.Contains(subset, j) {
			continue
		}
		sub[0] = pts[j]
		s, err := secretsharing.Recover(uint(k-1), sub)
		if err != nil || !s.IsEqual(secret) {
			bad = append(bad, j)
		}
		if s != nil {
			s.SetUint64(0)
		}
	}
	return bad
}

func wrongShares(good []Share, subset, bad []int) error {
	ok := make([]int, len(subset))
	for i, j := range subset {
		ok[i] = good[j].Index
	}
	errs := make([]error, len(bad))
	for i, j := range bad {
		errs[i] = &ShareError{Index: good[j].Index, Err: fmt.Errorf("%w: it passes its checksum but does not fit "+
			"the other shares (altered, or from another split of kit %s); shares %v recover the kit without it",
			ErrWrongShares, good[j].KitID, ok)}
	}
	return errors.Join(errs...)
}

// searchSubsets calls try with each k-element subset of the positions
// 0..m-1 until it returns true, reporting whether it did. Subsets come in
// order of their largest position, so that when b of the shares are bad a
// subset of good ones is among the first C(k+b, k) tried: k+1 for one bad
// share. The slice passed to try is reused.
func searchSubsets(m, k int, try func(subset []int) bool) bool {
	sub := make([]int, k)
	rest := sub[:k-1] // aliases sub
	for top := k - 1; top < m; top++ {
		for i := range rest {
			rest[i] = i
		}
		sub[k-1] = top
		for {
			if try(sub) {
				return true
			}
			if !nextSubset(rest, top) {
				break
			}
		}
	}
	return false
}

// nextSubset advances c, a strictly increasing list of positions below n,
// to the next combination in lexicographic order, reporting false after the
// last.
func nextSubset(c []int, n int) bool {
	k := len(c)
	i := k - 1
	for i >= 0 && c[i] == n-k+i {
		i--
	}
	if i < 0 {
		return false
	}
	c[i]++
	for j := i + 1; j < k; j++ {
		c[j] = c[j-1] + 1
	}
	return true
}
