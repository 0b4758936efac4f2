package peer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrTooLarge is returned for an executable over the [Hasher]'s size cap.
var ErrTooLarge = errors.New("peer: executable too large to hash")

const (
	defaultMaxSize   = 512 << 20
	defaultCacheSize = 1024
)

// A fileKey identifies the contents of a file without reading it: a write
// changes mtime and ctime, and only root can set ctime (by setting the
// clock).
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{st.Dev, st.Ino, st.Size, st.Mtim, st.Ctim}
}

// A Hasher computes SHA-256 digests of executables and caches them by file
// identity (device, inode, size, mtime, ctime), so a binary is read once
// while it is unchanged. It refuses files over its size cap, because
// hashing a huge file on demand is a denial of service, and hashes at most
// half as many files at once as there are CPUs (at least one). The cache
// holds a bounded number of digests and evicts arbitrary ones when full.
//
// A Hasher is safe for concurrent use; concurrent requests for the same
// file read it once. One Hasher is meant to be shared by all peers.
type Hasher struct {
	maxSize int64
	limit   int           // most cached digests
	sem     chan struct{} // bounds concurrent hashing

	mu    sync.Mutex
	cache map[fileKey]*hashEntry

	hashed             atomic.Int64 // files read, for tests
	testOnlyBeforeHash func()
}

// A hashEntry is a digest, or one being computed: done is closed when sum
// and err are set.
type hashEntry struct {
	done chan struct{}
	sum  [32]byte
	err  error
}

// NewHasher returns a Hasher that refuses files over maxSize bytes; 0 means
// the default of 512 MiB.
func NewHasher(maxSize int64) *Hasher {
	if maxSize <= 0 {
		maxSize = defaultMaxSize
	}
	return &Hasher{
		maxSize: maxSize,
		limit:   defaultCacheSize,
		sem:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		cache:   make(map[fileKey]*hashEntry),
	}
}

// sum returns the SHA-256 of f, an open regular file whose fstat is st.
// It reads f with ReadAt, so f's offset does not matter.
func (h *Hasher) sum(f *os.File, st *unix.Stat_t) ([32]byte, error) {
	if st.Size > h.maxSize {
		return [32]byte{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, st.Size, h.maxSize)
	}
	k := keyOf(st)
	h.mu.Lock()
	if e, ok := h.cache[k]; ok {
		h.mu.Unlock()
		<-e.done
		return e.sum, e.err
	}
	if len(h.cache) >= h.limit {
		h.evictLocked()
	}
	e := &hashEntry{done: make(chan struct{})}
	h.cache[k] = e
	h.mu.Unlock()

	e.sum, e.err = h.compute(f, k)
	if e.err != nil {
		h.mu.Lock()
		delete(h.cache, k)
		h.mu.Unlock()
	}
	close(e.done)
	return e.sum, e.err
}

// evictLocked drops one finished entry. Entries being computed stay, so the
// cache can briefly exceed its limit by the number of concurrent hashes.
func (h *Hasher) evictLocked() {
	for k, e := range h.cache {
		select {
		case <-e.done:
			delete(h.cache, k)
			return
		default:
		}
	}
}

// compute reads and hashes f, then checks it still has identity k: a file
// written while being read must not be cached under its old identity.
func (h *Hasher) compute(f *os.File, k fileKey) ([32]byte, error) {
	h.sem <- struct{}{}
	defer func() { <-h.sem }()
	h.hashed.Add(1)
	if h.testOnlyBeforeHash != nil {
		h.testOnlyBeforeHash()
	}
	d := sha256.New()
	n, err := io.CopyBuffer(d, io.NewSectionReader(f, 0, k.size+1), make([]byte, 64<<10))
	if err != nil {
		return [32]byte{}, fmt.Errorf("read: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return [32]byte{}, fmt.Errorf("fstat: %w", err)
	}
	if n != k.size || keyOf(&st) != k {
		return [32]byte{}, fmt.Errorf("%w: the file changed while being hashed", ErrExeChanged)
	}
	return [32]byte(d.Sum(nil)), nil
}
