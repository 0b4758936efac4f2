package locked_test

import (
	"bytes"
	"testing"

	"github.com/keyward/keyward/internal/locked"
)

func TestBuffer(t *testing.T) {
	src := []byte("correct-horse")
	b := locked.New(src)
	src[0] = 'X'
	if got := b.Bytes(); !bytes.Equal(got, []byte("correct-horse")) {
		t.Fatalf("Bytes() = %q, want a copy of the source", got)
	}
	b.Wipe()
	if b.Bytes() != nil {
		t.Errorf("Bytes() after Wipe = %q, want nil", b.Bytes())
	}
	b.Wipe() // twice is harmless
	var nilBuf *locked.Buffer
	nilBuf.Wipe()
	if e := locked.New(nil); len(e.Bytes()) != 0 {
		t.Errorf("New(nil).Bytes() = %q", e.Bytes())
	}
}
