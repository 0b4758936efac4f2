//go:build !linux

package hsm

// A lockedBuffer holds a secret (the PIN). On this system it is ordinary
// memory, cleared by wipe.
type lockedBuffer struct{ b []byte }

// newLockedBuffer returns a lockedBuffer holding a copy of src.
func newLockedBuffer(src []byte) *lockedBuffer {
	return &lockedBuffer{b: append([]byte(nil), src...)}
}

// bytes returns the secret; it is valid until wipe.
func (l *lockedBuffer) bytes() []byte { return l.b }

// wipe clears the secret.
func (l *lockedBuffer) wipe() {
	if l != nil {
		clear(l.b)
		l.b = nil
	}
}
