package locked

import "golang.org/x/sys/unix"

// A Buffer holds a small secret (a PIN, a root key) outside the Go heap:
// in an anonymous mapping that is locked in RAM where RLIMIT_MEMLOCK
// allows and excluded from core dumps. The garbage collector never copies
// it.
//
// A Buffer is safe for concurrent reads; Wipe must not race with Bytes.
type Buffer struct {
	b      []byte
	mapped bool
}

// New returns a Buffer holding a copy of src. The caller should clear src.
func New(src []byte) *Buffer {
	l := new(Buffer)
	if len(src) == 0 {
		return l
	}
	b, err := unix.Mmap(-1, 0, len(src), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		l.b = make([]byte, len(src))
	} else {
		l.b, l.mapped = b, true
		_ = unix.Mlock(b)                       // best effort
		_ = unix.Madvise(b, unix.MADV_DONTDUMP) // best effort
	}
	copy(l.b, src)
	return l
}

// Bytes returns the secret; it is valid until Wipe. Do not modify it.
func (l *Buffer) Bytes() []byte { return l.b }

// Wipe clears the secret and releases its memory. It is safe to call on a
// nil Buffer and more than once.
func (l *Buffer) Wipe() {
	if l == nil || l.b == nil {
		return
	}
	clear(l.b)
	if l.mapped {
		_ = unix.Munlock(l.b)
		_ = unix.Munmap(l.b)
	}
	l.b, l.mapped = nil, false
}
