package testenv

import (
	"bytes"
	"os"
	"sync"
	"testing"
)

// PublicDir returns a new directory that every uid can enter (mode 0755),
// removed when the test ends: for sockets and binaries that processes
// running as other users must reach. t.TempDir's parent is 0700.
func PublicDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "keyward-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A Buffer is a bytes.Buffer that is safe for concurrent writers (a
// process's two output streams, a logger) and a reading test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
