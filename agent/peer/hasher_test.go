package peer

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hashFile opens path and hashes it with h.
func hashFile(t *testing.T, h *Hasher, path string) ([32]byte, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return h.sum(f, &st)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestHasherCaches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	writeFile(t, path, []byte("version 1"))
	h := NewHasher(0)
	for i := range 3 {
		sum, err := hashFile(t, h, path)
		if want := sha256.Sum256([]byte("version 1")); err != nil || sum != want {
			t.Fatalf("sum #%d = %x, %v, want %x", i, sum, err, want)
		}
	}
	if got := h.hashed.Load(); got != 1 {
		t.Errorf("files read after 3 sums of one file = %d, want 1", got)
	}
}

func TestHasherRecomputesAfterChange(t *testing.T) {
	// Each change is made in place, so device and inode stay the same.
	tests := []struct {
		name    string
		content string
		change  func(t *testing.T, path string)
	}{
		{"size", "version 22", func(t *testing.T, path string) {
			writeFile(t, path, []byte("version 22"))
		}},
		{"content, same size and mtime", "version 2", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, []byte("version 2"))
			// Putting mtime back leaves ctime changed.
			if err := os.Chtimes(path, time.Time{}, fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{"mtime only", "version 1", func(t *testing.T, path string) {
			if err := os.Chtimes(path, time.Time{}, time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bin")
			writeFile(t, path, []byte("version 1"))
			h := NewHasher(0)
			if _, err := hashFile(t, h, path); err != nil {
				t.Fatal(err)
			}
			tt.change(t, path)
			sum, err := hashFile(t, h, path)
			if want := sha256.Sum256([]byte(tt.content)); err != nil || sum != want {
				t.Errorf("sum after change = %x, %v, want %x", sum, err, want)
			}
			if got := h.hashed.Load(); got != 2 {
				t.Errorf("files read = %d, want 2", got)
			}
		})
	}
}

func TestHasherMaxSize(t *testing.T) {
	tests := []struct {
		size     int
		tooLarge bool
	}{
		{0, false},
		{10, false},
		{11, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bin")
			writeFile(t, path, bytes.Repeat([]byte{'a'}, tt.size))
			h := NewHasher(10)
			_, err := hashFile(t, h, path)
			if errors.Is(err, ErrTooLarge) != tt.tooLarge || (err != nil && !tt.tooLarge) {
				t.Errorf("sum of %d bytes with a 10-byte cap = %v, want ErrTooLarge %v", tt.size, err, tt.tooLarge)
			}
			if tt.tooLarge && h.hashed.Load() != 0 {
				t.Errorf("files read = %d, want 0", h.hashed.Load())
			}
		})
	}
	if got := NewHasher(0).maxSize; got != 512<<20 {
		t.Errorf("NewHasher(0) cap = %d, want %d", got, 512<<20)
	}
}

func TestHasherConcurrent(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprint(i))
		writeFile(t, p, bytes.Repeat([]byte{byte(i)}, 1<<20))
		paths = append(paths, p)
	}
	h := NewHasher(0)
	// Hold each hash long enough for every caller to arrive.
	h.testOnlyBeforeHash = func() { time.Sleep(50 * time.Millisecond) }
	var wg sync.WaitGroup
	for i := range 30 {
		path := paths[i%len(paths)]
		want := sha256.Sum256(bytes.Repeat([]byte{byte(i % len(paths))}, 1<<20))
		wg.Go(func() {
			f, err := os.Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil {
				t.Error(err)
				return
			}
			if sum, err := h.sum(f, &st); err != nil || sum != want {
				t.Errorf("sum(%s) = %x, %v, want %x", path, sum, err, want)
			}
		})
	}
	wg.Wait()
	if got := h.hashed.Load(); got != int64(len(paths)) {
		t.Errorf("files read = %d, want %d (one per file)", got, len(paths))
	}
}

func TestHasherCacheBound(t *testing.T) {
	dir := t.TempDir()
	h := NewHasher(0)
	h.limit = 4
	for i := range 10 {
		p := filepath.Join(dir, fmt.Sprint(i))
		writeFile(t, p, []byte{byte(i)})
		if _, err := hashFile(t, h, p); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(h.cache); got > 4 {
		t.Errorf("cached digests = %d, want at most 4", got)
	}
}

func TestHasherChangeWhileHashing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	writeFile(t, path, []byte("version 1"))
	h := NewHasher(0)
	h.testOnlyBeforeHash = func() {
		h.testOnlyBeforeHash = nil
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteString("VERSION")
		f.Close()
	}
	if _, err := hashFile(t, h, path); !errors.Is(err, ErrExeChanged) {
		t.Errorf("sum of a file written while hashed = %v, want %v", err, ErrExeChanged)
	}
	if len(h.cache) != 0 {
		t.Errorf("cached digests = %d, want 0 after a failed hash", len(h.cache))
	}
	if sum, err := hashFile(t, h, path); err != nil || sum != sha256.Sum256([]byte("VERSION 1")) {
		t.Errorf("sum afterwards = %x, %v, want the new content's", sum, err)
	}
}
