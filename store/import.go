package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/internal/secretname"
	"github.com/keyward/keyward/internal/trust"
	"github.com/keyward/keyward/store/fleet"
	"github.com/keyward/keyward/store/recovery"
)

// Importing bundles (docs/fleet.md): a bundle a listed provisioner sealed
// for this host becomes the next version of its secret, like a rotation.
// The counter of the last bundle imported for each name is kept in
// CountersFile, replaced in the same transaction as the envelopes, so
// that a bundle not newer than it is refused as a replay. It outlives the
// secret's versions: pruning or removing them does not reopen the door to
// an old bundle.
const (
	// CountersFile records, per secret name, the counter of the last
	// bundle imported: lines "NAME COUNTER", sorted by name.
	CountersFile = "import-counters"
	// BundleExt is the file name extension of a bundle in an inbox.
	BundleExt = ".kwb"
	// RejectedExt is appended to a bundle the inbox refused.
	RejectedExt = ".rejected"
	// MaxInboxFiles bounds the bundles one ImportInbox reads; the others
	// wait for the next.
	MaxInboxFiles = 10000

	// MaxCounterSkew is how far ahead of the host's clock a bundle's
	// counter (its sealing time) may be: a stolen provisioner key cannot
	// make a bundle so far in the future that every genuine one after it
	// is refused as older for longer than this.
	MaxCounterSkew = time.Hour

	maxCountersFile = 16 << 20
)

var (
	// ErrReplay means a bundle is not newer than the last one imported
	// for its secret: an old bundle delivered again.
	ErrReplay = errors.New("store: bundle is not newer than the last one imported")
	// ErrFuture means a bundle's counter is further ahead of the host's
	// clock than MaxCounterSkew.
	ErrFuture = errors.New("store: bundle sealed in the future")
)

// ImportOptions configure [Store.Import].
type ImportOptions struct {
	// Provisioners are the keys whose bundles the host accepts
	// (fleet.provisioners); none accepts nothing.
	Provisioners []*fleet.ProvisionerKey
	// Grace is how long the previous version stays servable once an
	// imported version is current (store.grace).
	Grace time.Duration
}

// An Imported is a bundle made into a version of its secret.
type Imported struct {
	Name        string
	Version     uint32
	Counter     uint64
	Provisioner string // the provisioner key's fingerprint
	PrevUntil   time.Time
}

// Import makes each bundle the next version of its secret, after checking
// that it is addressed to this host and its import key, signed by a listed
// provisioner, and newer than the last bundle imported for its name; of
// several bundles for one name, only the newest. Every accepted bundle is
// written in one transaction, with the new counters: either all of them
// are stored or none. errs[i] says why bundles[i] was refused, and is nil
// for imported[i]. err is set when nothing could be imported (no import
// key, a store that cannot be written); then errs is nil.
func (s *Store) Import(ctx context.Context, bundles []*fleet.Bundle, opts ImportOptions) (imported []*Imported, errs []error, err error) {
	if s.cfg.Backend == nil {
		return nil, nil, errors.New("store: no backend configured")
	}
	if opts.Grace < 0 {
		return nil, nil, inputErrorf("grace period %v is negative", opts.Grace)
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	key, err := s.ImportKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	counters, err := s.readCounters()
	if err != nil {
		return nil, nil, err
	}
	kit, err := s.Kit(ctx)
	if err != nil {
		return nil, nil, err
	}
	versions, err := s.allVersions()
	if err != nil {
		return nil, nil, err
	}
	imported, errs = make([]*Imported, len(bundles)), make([]error, len(bundles))
	// Open every bundle, then import the newest that opens of each name.
	values := make([][]byte, len(bundles))
	defer func() {
		for _, v := range values {
			clear(v)
		}
	}()
	newest := map[string]int{}
	for i, b := range bundles {
		if values[i], errs[i] = key.Open(b, opts.Provisioners); errs[i] != nil {
			continue
		}
		if j, ok := newest[b.Name]; !ok || b.Counter > bundles[j].Counter {
			newest[b.Name] = i
		}
	}
	t := s.begin()
	for i, b := range bundles {
		if err := ctx.Err(); err != nil {
			return nil, nil, t.abort(err)
		}
		if errs[i] == nil {
			errs[i] = s.checkOrder(b, newest[b.Name] == i, counters[b.Name])
		}
		if errs[i] != nil {
			continue
		}
		e, sidecars, err := s.sealImported(ctx, kit, b, versions[b.Name], values[i], opts)
		if err != nil {
			errs[i] = err
			continue
		}
		if err := t.add(fileName(e.Name, e.Version), e.Marshal()); err != nil {
			return nil, nil, t.abort(err)
		}
		for _, sc := range sidecars {
			if err := t.add(sc.name, sc.sealed); err != nil {
				return nil, nil, t.abort(err)
			}
		}
		counters[b.Name] = b.Counter
		imported[i] = &Imported{Name: e.Name, Version: e.Version, Counter: b.Counter, Provisioner: b.Provisioner.ID(), PrevUntil: e.PrevUntil}
	}
	if len(t.written) == 0 {
		return imported, errs, nil
	}
	if err := t.add(CountersFile, marshalCounters(counters)); err != nil {
		return nil, nil, t.abort(err)
	}
	if err := t.commit(); err != nil {
		return nil, nil, err
	}
	return imported, errs, nil
}

// checkOrder refuses a bundle that is not the newest of its name among
// those imported together, not newer than the last one imported (last),
// or sealed too far ahead of the host's clock.
func (s *Store) checkOrder(b *fleet.Bundle, newest bool, last uint64) error {
	if !newest {
		return fmt.Errorf("%w: a newer bundle for %s is imported with it", ErrReplay, b.Name)
	}
	if err := replay(b.Name, b.Counter, last); err != nil {
		return err
	}
	if b.Counter > uint64(s.cfg.Now().Add(MaxCounterSkew).UnixNano()) {
		return fmt.Errorf("%w: the bundle for %s was sealed %s, more than %v ahead of this host's clock; check the workstation's clock",
			ErrFuture, b.Name, counterTime(b.Counter), MaxCounterSkew)
	}
	return nil
}

// sealImported seals the value of a bundle as the next version of its
// secret, with its data key sealed to the recovery kit and the fleet kit
// when there are (sidecars).
func (s *Store) sealImported(ctx context.Context, kit *recovery.Kit, b *fleet.Bundle, versions []uint32, value []byte, opts ImportOptions) (*Envelope, []sidecar, error) {
	put := PutOptions{NewVersion: true, Expires: b.Expires, Grace: opts.Grace}
	if c := b.Credential; c != nil {
		put.Credential = &CredentialInfo{Exchange: c.Exchange, KeyID: c.KeyID, KeyType: c.KeyType}
	}
	if err := s.checkPut(value, put); err != nil {
		return nil, nil, fmt.Errorf("bundle for %s: %w", b.Name, err)
	}
	e, err := s.next(ctx, b.Name, versions, value, put)
	if err != nil {
		return nil, nil, err
	}
	sidecars, err := s.kitSidecars(ctx, kit, e)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", b.Name, err)
	}
	return e, sidecars, nil
}

// CheckCounter returns an error wrapping [ErrReplay] when counter is not
// above that of the last bundle imported for name: what Import would say,
// for a caller that hands the bundle to an agent. It takes no lock.
func (s *Store) CheckCounter(name string, counter uint64) error {
	counters, err := s.readCounters()
	if err != nil {
		return err
	}
	return replay(name, counter, counters[name])
}

// replay refuses a bundle for name whose counter is not above last.
func replay(name string, counter, last uint64) error {
	if counter > last {
		return nil
	}
	return fmt.Errorf("%w for %s: its counter %d (sealed %s) is not above %d (sealed %s)", ErrReplay, name,
		counter, counterTime(counter), last, counterTime(last))
}

// counterTime shows a counter as the sealing time it normally is.
func counterTime(c uint64) string {
	if c > 1<<62 {
		return "in the far future"
	}
	return time.Unix(0, int64(c)).UTC().Format(time.RFC3339)
}

// readCounters reads CountersFile; an absent file is an empty map.
func (s *Store) readCounters() (map[string]uint64, error) {
	path := filepath.Join(s.cfg.Dir, CountersFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	c, err := parseCounters(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is damaged (%v): no bundle is imported until it is restored from a backup", ErrIntegrity, path, err)
	}
	return c, nil
}

func parseCounters(b []byte) (map[string]uint64, error) {
	if len(b) > maxCountersFile {
		return nil, fmt.Errorf("larger than %d bytes", maxCountersFile)
	}
	c := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		name, num, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil || !secretname.Valid(name) || c[name] != 0 || v == 0 {
			return nil, fmt.Errorf("line %d is not NAME COUNTER", n)
		}
		c[name] = v
	}
	return c, sc.Err()
}

func marshalCounters(c map[string]uint64) []byte {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	slices.Sort(names)
	var b bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&b, "%s %d\n", n, c[n])
	}
	return b.Bytes()
}

// An InboxResult is what became of one file of an inbox.
type InboxResult struct {
	File     string
	Imported *Imported // nil when refused
	Err      error     // why it was refused
}

// ImportInbox imports every bundle file (NAME.kwb) in the inbox directory
// dir (at most MaxInboxFiles at a time, in name order) with [Store.Import],
// then deletes the files it imported and renames those it refused with
// RejectedExt appended, so that they are not tried again and an operator
// can look at them. dir and every directory above it must be writable only
// by root and this user (package internal/trust), and so must each file:
// only they may deliver bundles. A missing inbox is empty. err is set when
// nothing could be imported; the files then stay for the next time.
func (s *Store) ImportInbox(ctx context.Context, dir string, opts ImportOptions) ([]InboxResult, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the inbox: %w", err)
	}
	var results []InboxResult
	for _, ent := range ents {
		if strings.HasSuffix(ent.Name(), BundleExt) && !strings.HasPrefix(ent.Name(), ".") && len(results) < MaxInboxFiles {
			results = append(results, InboxResult{File: filepath.Join(dir, ent.Name())})
		}
	}
	if len(results) == 0 {
		return nil, nil
	}
	// The inbox itself, as the directory of a bundle in it, and every
	// directory above it.
	if err := trust.CheckDirs("inbox", filepath.Join(dir, "bundle")); err != nil {
		return nil, err
	}
	var bundles []*fleet.Bundle
	var from []int
	for i := range results {
		b, err := readBundle(results[i].File, true)
		if err != nil {
			results[i].Err = err
			continue
		}
		bundles = append(bundles, b)
		from = append(from, i)
	}
	imported, errs, err := s.Import(ctx, bundles, opts)
	if err != nil {
		return nil, err
	}
	for j, i := range from {
		results[i].Imported, results[i].Err = imported[j], errs[j]
	}
	for i := range results {
		r := &results[i]
		if r.Imported != nil {
			if err := os.Remove(r.File); err != nil {
				r.Err = fmt.Errorf("imported, but the bundle could not be deleted (it will be refused as a replay): %w", err)
			}
		} else if err := os.Rename(r.File, r.File+RejectedExt); err != nil {
			r.Err = errors.Join(r.Err, fmt.Errorf("could not set the bundle aside: %w", err))
		}
	}
	return results, syncDir(dir)
}

// ReadBundleFile reads and parses a bundle file, refusing what is not a
// regular file (a symbolic link, a FIFO) or is more than
// fleet.MaxBundleSize bytes.
func ReadBundleFile(path string) (*fleet.Bundle, error) { return readBundle(path, false) }

// readBundle is ReadBundleFile; for an inbox, the file must also be
// writable only by root and this user.
func readBundle(path string, inbox bool) (*fleet.Bundle, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if inbox {
		if err := trust.CheckInfo("bundle", path, fi, trust.Public); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, fleet.MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	bd, err := fleet.ParseBundle(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return bd, nil
}
