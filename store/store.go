package store

import (
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
	"github.com/keyward/keyward/store/recovery"
)

var (
	// ErrNotFound means no envelope exists for the secret (or version).
	ErrNotFound = errors.New("store: secret not found")

	// ErrExists means Put was asked for a secret that already exists
	// without [PutOptions.NewVersion].
	ErrExists = errors.New("store: secret already exists")

	// ErrCurrentVersion means RemoveVersion was asked to remove the
	// current version of a secret that has older ones: that would serve
	// an older version again.
	ErrCurrentVersion = errors.New("store: the version is the current one")
)

// An inputError is a request the store refuses for what it asks, not for
// the state of the store or the backend.
type inputError struct{ error }

func (e inputError) Unwrap() error { return e.error }

func inputErrorf(format string, args ...any) error { return inputError{fmt.Errorf(format, args...)} }

// IsInputError reports whether err refuses what was asked (an invalid name,
// a value too large, an expiry in the past, a negative grace) rather than
// failing to do it: retrying the same request never helps.
func IsInputError(err error) bool {
	var ie inputError
	return errors.As(err, &ie) || errors.Is(err, secretname.ErrInvalid)
}

// Ext is the file name extension of an envelope.
const Ext = ".kwe"

const (
	tempPrefix = ".tmp-"
	lockName   = ".lock"
)

// Config configures a [Store]. Dir and Host are required.
type Config struct {
	// Dir is the store directory. It must exist (see [Init]).
	Dir string
	// Backend wraps and unwraps data keys. It may be nil for read-only
	// metadata use (List, Inspect); Put and Open then fail.
	Backend Backend
	// Host binds envelopes to this machine (see [ReadHostID]).
	Host HostID
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// FleetKit, when not nil, is the fleet recovery kit the host is
	// configured with (recovery.fleet_kit): every data key is also sealed
	// to it (see [Store.AdoptFleetKit]).
	FleetKit *recovery.Kit
}

// A Store is a directory of envelope files, one per secret version, named
// NAME@VERSION.kwe with '/' in NAME written as '+'.
//
// Writes are atomic and durable: an envelope is written to a temporary
// file, synced, linked into place without replacing anything, and the
// directory is synced. Mutations from several processes are serialised by
// an flock on the store's lock file; reads take no lock.
//
// A Store is safe for concurrent use.
type Store struct {
	cfg Config
}

// Init creates the store directory with mode 0700, or checks that an
// existing one is a directory not writable by group or others.
func Init(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create the store directory: %w", err)
	}
	return checkDir(dir)
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store directory %s does not exist; run keyward init", dir)
		}
		return fmt.Errorf("failed to open the store: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("store path %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("store directory %s is writable by group or others (mode %04o); run chmod 0700 %s", dir, fi.Mode().Perm(), dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("store directory %s belongs to uid %d, not to root or this user (uid %d); whoever owns it can replace envelopes", dir, st.Uid, os.Geteuid())
	}
	return nil
}

// New opens the store in cfg.Dir.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("store: no directory configured")
	}
	if cfg.Host == (HostID{}) {
		return nil, errors.New("store: no host id configured")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := checkDir(cfg.Dir); err != nil {
		return nil, err
	}
	return &Store{cfg: cfg}, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.cfg.Dir }

// PutOptions modify [Store.Put].
type PutOptions struct {
	// NewVersion allows adding a version to an existing secret.
	NewVersion bool
	// Expires, when not zero, is when the version stops being served.
	Expires time.Time
	// Grace is how long the previous version stays servable once this
	// one is current (a rotation); 0 retires it at once.
	Grace time.Duration
	// MustExist refuses a secret with no version yet, with an error
	// wrapping [ErrNotFound]: a rotation must not create a secret from
	// a typo.
	MustExist bool
	// Credential, when not nil, marks the value as an exchange API
	// credential with these attributes, authenticated in the header.
	Credential *CredentialInfo
}

// Put seals value as the next version of name and returns that version.
// It returns an error wrapping [ErrExists] if the secret exists and
// opts.NewVersion is false.
func (s *Store) Put(ctx context.Context, name string, value []byte, opts PutOptions) (uint32, error) {
	if err := secretname.Check(name); err != nil {
		return 0, err
	}
	if s.cfg.Backend == nil {
		return 0, errors.New("store: no backend configured")
	}
	if err := s.checkPut(value, opts); err != nil {
		return 0, err
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	versions, err := s.versions(name)
	if err != nil {
		return 0, err
	}
	e, err := s.next(ctx, name, versions, value, opts)
	if err != nil {
		return 0, err
	}
	// With recovery kits, the data key is sealed to them first: an
	// envelope is never published that a kit could not recover.
	if err := s.sealToKits(ctx, e); err != nil {
		return 0, fmt.Errorf("failed to store %s: %w", name, err)
	}
	if err := writeNew(s.cfg.Dir, fileName(name, e.Version), e.Marshal()); err != nil {
		return 0, fmt.Errorf("failed to store %s: %w", name, err)
	}
	return e.Version, nil
}

// checkPut refuses a value or options that no state of the store would
// accept.
func (s *Store) checkPut(value []byte, opts PutOptions) error {
	now := s.cfg.Now().Truncate(time.Second)
	if !opts.Expires.IsZero() && !opts.Expires.After(now) {
		return inputErrorf("expiry %s is not in the future", opts.Expires.UTC().Format(time.RFC3339))
	}
	if opts.Grace < 0 {
		return inputErrorf("grace period %v is negative", opts.Grace)
	}
	if len(value) > MaxSecretSize {
		return inputErrorf("secret of %d bytes is larger than the %d-byte limit", len(value), MaxSecretSize)
	}
	if c := opts.Credential; c != nil {
		if err := c.validate(); err != nil {
			return inputError{err}
		}
	}
	return nil
}

// next seals value as the version of name that follows versions (those on
// disk, ascending). The caller holds the lock, seals the data key to the
// recovery kit if there is one, and writes the envelope.
func (s *Store) next(ctx context.Context, name string, versions []uint32, value []byte, opts PutOptions) (*Envelope, error) {
	now := s.cfg.Now().Truncate(time.Second)
	var version uint32 = 1
	if len(versions) == 0 && opts.MustExist {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if len(versions) > 0 {
		if !opts.NewVersion {
			return nil, fmt.Errorf("%w: %s has version %d", ErrExists, name, versions[len(versions)-1])
		}
		version = versions[len(versions)-1] + 1
		if err := s.sameKind(name, versions[len(versions)-1], opts.Credential); err != nil {
			return nil, err
		}
	}
	var prevUntil time.Time
	if version > 1 && opts.Grace > 0 {
		prevUntil = now.Add(opts.Grace).UTC()
	}
	e, err := seal(ctx, s.cfg.Backend, Header{
		Name:       name,
		Version:    version,
		Created:    now.UTC(),
		Expires:    truncUTC(opts.Expires),
		PrevUntil:  truncUTC(prevUntil),
		Credential: opts.Credential,
		Host:       s.cfg.Host,
	}, value)
	if err != nil {
		return nil, fmt.Errorf("failed to seal %s: %w", name, err)
	}
	return e, nil
}

// sameKind refuses a new version of another kind than the latest one: a
// plain secret for a credential, a credential for a plain secret, or a
// credential of another exchange. Programs that use the name expect its
// kind. A latest version that cannot be read does not stop a rotation,
// which is how it is replaced.
func (s *Store) sameKind(name string, latest uint32, cred *CredentialInfo) error {
	e, err := s.read(name, latest)
	if err != nil {
		return nil
	}
	switch prev := e.Credential; {
	case prev == nil && cred != nil:
		return inputErrorf("%s is a plain secret: a new version cannot be an exchange credential (remove it, then put the credential)", name)
	case prev != nil && cred == nil:
		return inputErrorf("%s is a %s credential: give its new version with --exchange %s and --api-key", name, prev.Exchange, prev.Exchange)
	case prev != nil && prev.Exchange != cred.Exchange:
		return inputErrorf("%s is a %s credential: a new version cannot be for %s", name, prev.Exchange, cred.Exchange)
	}
	return nil
}

func truncUTC(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Second).UTC()
}

// Open decrypts a version of a secret; version 0 means the latest. The
// caller must Destroy the secret when done.
func (s *Store) Open(ctx context.Context, name string, version uint32) (*Secret, *Header, error) {
	if s.cfg.Backend == nil {
		return nil, nil, errors.New("store: no backend configured")
	}
	version, err := s.resolve(name, version)
	if err != nil {
		return nil, nil, err
	}
	e, err := s.read(name, version)
	if err != nil {
		return nil, nil, err
	}
	sec, err := open(ctx, s.cfg.Backend, s.cfg.Host, e)
	if err != nil {
		return nil, nil, err
	}
	return sec, &e.Header, nil
}

// Path returns the file of a version of a secret (the latest when version
// is 0), or an error wrapping [ErrNotFound].
func (s *Store) Path(name string, version uint32) (string, error) {
	version, err := s.resolve(name, version)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.cfg.Dir, fileName(name, version)), nil
}

// resolve validates name and returns version if it exists, or the latest
// version when version is 0; otherwise an error wrapping [ErrNotFound].
func (s *Store) resolve(name string, version uint32) (uint32, error) {
	if err := secretname.Check(name); err != nil {
		return 0, err
	}
	versions, err := s.versions(name)
	if err != nil {
		return 0, err
	}
	if version == 0 && len(versions) > 0 {
		version = versions[len(versions)-1]
	}
	if !slices.Contains(versions, version) {
		if version == 0 {
			return 0, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return 0, fmt.Errorf("%w: %s version %d", ErrNotFound, name, version)
	}
	return version, nil
}

// OpenEnvelope decrypts an envelope already read with [Store.List].
func (s *Store) OpenEnvelope(ctx context.Context, e *Envelope) (*Secret, error) {
	if s.cfg.Backend == nil {
		return nil, errors.New("store: no backend configured")
	}
	return open(ctx, s.cfg.Backend, s.cfg.Host, e)
}

// read reads and parses one envelope and checks that its header names the
// secret and version its file name says.
func (s *Store) read(name string, version uint32) (*Envelope, error) {
	path := filepath.Join(s.cfg.Dir, fileName(name, version))
	e, err := ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s version %d", ErrNotFound, name, version)
	}
	if err != nil {
		return nil, err
	}
	if e.Name != name || e.Version != version {
		return nil, fmt.Errorf("%w: %s holds %s version %d: the file was renamed or copied", ErrIntegrity, path, e.Name, e.Version)
	}
	return e, nil
}

// ReadFile reads and parses one envelope file, refusing files larger than
// [MaxEnvelopeSize].
func ReadFile(path string) (*Envelope, error) {
	// No symlinks, and no blocking on a FIFO someone named like an envelope.
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
	if fi.Size() > MaxEnvelopeSize {
		return nil, fmt.Errorf("%s: %w", path, &ParseError{fmt.Errorf("%d bytes is larger than the %d-byte limit", fi.Size(), MaxEnvelopeSize)})
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	e, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// A DamagedError reports an envelope file that could not be read. Other
// envelopes are not affected.
type DamagedError struct {
	Path string
	Err  error
}

// Error names the file and the problem.
func (e *DamagedError) Error() string { return fmt.Sprintf("damaged envelope %s: %v", e.Path, e.Err) }

// Unwrap returns the underlying error.
func (e *DamagedError) Unwrap() error { return e.Err }

// List reads the header of every envelope in the store, sorted by name and
// version. Envelopes that cannot be read are skipped and returned as
// *DamagedError values in damaged; err is only set when the directory
// itself cannot be read.
func (s *Store) List() (envelopes []*Envelope, damaged []error, err error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read the store: %w", err)
	}
	for _, ent := range ents {
		fn := ent.Name()
		if !strings.HasSuffix(fn, Ext) || strings.HasPrefix(fn, ".") {
			continue
		}
		path := filepath.Join(s.cfg.Dir, fn)
		name, version, ok := parseFileName(fn)
		if !ok {
			damaged = append(damaged, &DamagedError{path, errors.New("file name is not NAME@VERSION" + Ext)})
			continue
		}
		e, err := s.read(name, version)
		if err != nil {
			damaged = append(damaged, &DamagedError{path, err})
			continue
		}
		envelopes = append(envelopes, e)
	}
	slices.SortFunc(envelopes, func(a, b *Envelope) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(a.Version) - int(b.Version)
	})
	return envelopes, damaged, nil
}

// Remove deletes every version of name and returns how many it removed. It
// returns an error wrapping [ErrNotFound] if there were none.
func (s *Store) Remove(name string) (int, error) {
	if err := secretname.Check(name); err != nil {
		return 0, err
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	versions, err := s.versions(name)
	if err != nil {
		return 0, err
	}
	if len(versions) == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	for i, v := range versions {
		if err := os.Remove(filepath.Join(s.cfg.Dir, fileName(name, v))); err != nil {
			return i, fmt.Errorf("failed to remove %s version %d: %w", name, v, err)
		}
		s.removeSidecars(name, v)
	}
	return len(versions), syncDir(s.cfg.Dir)
}

// RemoveVersion deletes one version of name and returns 1. It refuses the
// current version of a secret that has older ones ([ErrCurrentVersion]):
// removing it would serve an older version again; rotate instead, or
// remove the secret. The error wraps [ErrNotFound] if there is no such
// version.
func (s *Store) RemoveVersion(name string, version uint32) (int, error) {
	if err := secretname.Check(name); err != nil {
		return 0, err
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	versions, err := s.versions(name)
	if err != nil {
		return 0, err
	}
	switch {
	case !slices.Contains(versions, version):
		return 0, fmt.Errorf("%w: %s version %d", ErrNotFound, name, version)
	case version == versions[len(versions)-1] && len(versions) > 1:
		return 0, fmt.Errorf("%w: %s version %d; rotate it, or remove every version", ErrCurrentVersion, name, version)
	}
	if err := os.Remove(filepath.Join(s.cfg.Dir, fileName(name, version))); err != nil {
		return 0, fmt.Errorf("failed to remove %s version %d: %w", name, version, err)
	}
	s.removeSidecars(name, version)
	return 1, syncDir(s.cfg.Dir)
}

// allVersions lists the versions of every secret present on disk,
// ascending, by name.
func (s *Store) allVersions() (map[string][]uint32, error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("failed to read the store: %w", err)
	}
	vs := map[string][]uint32{}
	for _, ent := range ents {
		if n, v, ok := parseFileName(ent.Name()); ok {
			vs[n] = append(vs[n], v)
		}
	}
	for _, v := range vs {
		slices.Sort(v)
	}
	return vs, nil
}

// versions lists the versions of name present on disk, ascending.
func (s *Store) versions(name string) ([]uint32, error) {
	prefix := encodeName(name) + "@"
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("failed to read the store: %w", err)
	}
	var vs []uint32
	for _, ent := range ents {
		if !strings.HasPrefix(ent.Name(), prefix) {
			continue
		}
		if n, v, ok := parseFileName(ent.Name()); ok && n == name {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs, nil
}

// lock takes the store's exclusive mutation lock, removes temporary files
// that a crashed writer left behind (only lock holders write them), and
// finishes or discards an interrupted re-wrap.
func (s *Store) lock() (unlock func(), err error) {
	if err := checkWriter(s.cfg.Dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.cfg.Dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open the store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to lock the store: %w", err)
	}
	if stale, _ := filepath.Glob(filepath.Join(s.cfg.Dir, tempPrefix+"*")); len(stale) > 0 {
		for _, p := range stale {
			os.Remove(p)
		}
	}
	if err := s.finishRewrap(); err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to finish an interrupted re-wrap: %w", err)
	}
	return func() { f.Close() }, nil
}

// checkWriter refuses writes by a user other than the store directory's
// owner: files root writes into the agent's store are 0600 root, and the
// agent (a dedicated user) could not read them.
func checkWriter(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("the store %s belongs to uid %d and this command runs as uid %d: what it wrote could not be read by the agent; run it as the store's owner, or through the agent (docs/operations.md)", dir, st.Uid, os.Geteuid())
	}
	return nil
}

// writeNew atomically and durably creates dir/name with contents b. It
// never replaces an existing file.
func writeNew(dir, name string, b []byte) error {
	tmp, err := writeTemp(dir, b)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// writeTemp writes b to a new synced temporary file in dir and returns its
// path; the caller links or renames it into place, then removes it.
func writeTemp(dir string, b []byte) (string, error) {
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return "", err
	}
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileName returns the file name of a version of a secret. '/' is written
// as '+' and the version follows '@': neither character is allowed in a
// name, so the mapping is reversible.
func fileName(name string, version uint32) string {
	return encodeName(name) + "@" + strconv.FormatUint(uint64(version), 10) + Ext
}

func encodeName(name string) string { return strings.ReplaceAll(name, "/", "+") }

// parseFileName reverses fileName.
func parseFileName(fn string) (name string, version uint32, ok bool) {
	base, found := strings.CutSuffix(fn, Ext)
	if !found {
		return "", 0, false
	}
	enc, ver, found := strings.Cut(base, "@")
	if !found || ver == "" || ver[0] == '0' {
		return "", 0, false
	}
	v, err := strconv.ParseUint(ver, 10, 32)
	if err != nil {
		return "", 0, false
	}
	name = strings.ReplaceAll(enc, "+", "/")
	if secretname.Check(name) != nil {
		return "", 0, false
	}
	return name, uint32(v), true
}
