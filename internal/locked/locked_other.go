//go:build !linux

package locked

// A Buffer holds a small secret. On this system it is ordinary memory,
// cleared by Wipe.
type Buffer struct{ b []byte }

// New returns a Buffer holding a copy of src.
func New(src []byte) *Buffer {
	return &Buffer{b: append([]byte(nil), src...)}
}

// Bytes returns the secret; it is valid until Wipe.
func (l *Buffer) Bytes() []byte { return l.b }

// Wipe clears the secret.
func (l *Buffer) Wipe() {
	if l != nil {
		clear(l.b)
		l.b = nil
	}
}
