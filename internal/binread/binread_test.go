package binread

import "testing"

func TestReader(t *testing.T) {
	r := New([]byte{1, 0, 2, 0, 0, 0, 3, 'a', 'b'})
	if a, b, c, s := r.U8(), r.U16(), r.U32(), string(r.Bytes(2)); a != 1 || b != 2 || c != 3 || s != "ab" || r.Err() != nil || r.Rest() != 0 {
		t.Fatalf("read %d %d %d %q, err %v, rest %d", a, b, c, s, r.Err(), r.Rest())
	}
	// Past the end: an error, zeros for small fields, nothing allocated
	// for a large one, and the first error kept.
	if v := r.U64(); v != 0 || r.Err() == nil {
		t.Fatalf("U64 past the end = %d, %v", v, r.Err())
	}
	first := r.Err()
	if b := r.Bytes(1 << 30); b != nil || r.Err() != first {
		t.Fatalf("Bytes(1<<30) after an error = %d bytes, %v", len(b), r.Err())
	}
}
