package hsm

import "golang.org/x/sys/unix"

// A lockedBuffer holds a secret (the PIN) outside the Go heap: in an
// anonymous mapping that is locked in RAM where RLIMIT_MEMLOCK allows and
// excluded from core dumps. The garbage collector never copies it.
type lockedBuffer struct {
	b      []byte
	mapped bool
}

// newLockedBuffer returns a lockedBuffer holding a copy of src.
func newLockedBuffer(src []byte) *lockedBuffer {
	l := new(lockedBuffer)
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

// bytes returns the secret; it is valid until wipe.
func (l *lockedBuffer) bytes() []byte { return l.b }

// wipe clears the secret and releases its memory.
func (l *lockedBuffer) wipe() {
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
