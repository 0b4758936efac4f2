package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzParse checks that Parse never panics, fails with nil and a
// *ParseError, and accepts only frames that Marshal reproduces byte for
// byte. It also checks that a Reader splits the same input the same way.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		id, m, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if m != nil || !errors.As(err, &pe) {
				t.Fatalf("Parse(%x) = %v, %v, want nil, *ParseError", data, m, err)
			}
		} else if got := Marshal(id, m); !bytes.Equal(got, data) {
			t.Fatalf("Parse(%x) = %d, %v, but Marshal gives %x", data, id, m, got)
		}

		r := NewReader(bytes.NewReader(data), MaxFrameSize)
		for n := 0; ; n++ {
			typ, rid, body, rerr := r.ReadFrame()
			if rerr != nil {
				if err == nil && (n != 1 || rerr != io.EOF) {
					t.Fatalf("Reader over %x: %v after %d frames, want io.EOF after 1", data, rerr, n)
				}
				break
			}
			bm, berr := ParseBody(typ, body)
			if err == nil && (typ != m.Type() || rid != id || berr != nil || !bytes.Equal(Marshal(rid, bm), data)) {
				t.Fatalf("Reader over %x: frame %v, %d, %x, %v; Parse gave %d, %v", data, typ, rid, body, berr, id, m)
			}
		}
	})
}
