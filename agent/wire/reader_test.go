package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"
	"testing/iotest"
)

// stream returns every valid frame in one byte stream, plus a secret frame
// large enough to make a Reader grow its buffer.
func stream(t testing.TB) (frames [][]byte, all []byte) {
	for _, tc := range vectors(t) {
		frames = append(frames, tc.frame)
	}
	big := Marshal(8, &Secret{Name: "big", Version: 1, Value: bytes.Repeat([]byte{0x5A}, MaxSecretSize)})
	frames = append(frames, big, vectors(t)[0].frame)
	return frames, bytes.Join(frames, nil)
}

func TestReaderFrames(t *testing.T) {
	frames, all := stream(t)
	tests := []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(all) }},
		{"one-byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(all)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(all)) }},
		{"data-err", func() io.Reader { return iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(all))) }},
		{"timeout", func() io.Reader { return iotest.TimeoutReader(iotest.HalfReader(bytes.NewReader(all))) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.r(), MaxFrameSize)
			for i, f := range frames {
				typ, id, body, err := r.ReadFrame()
				if err == iotest.ErrTimeout {
					// A temporary error: the next call resumes.
					typ, id, body, err = r.ReadFrame()
				}
				wantID, _, _ := Parse(f)
				if err != nil || typ != Type(f[4]) || id != wantID || !bytes.Equal(body, f[headerSize:]) {
					t.Fatalf("frame %d: ReadFrame() = %v, %d, %x, %v, want %v, %d, %x, nil", i, typ, id, body, err, Type(f[4]), wantID, f[headerSize:])
				}
			}
			if _, _, _, err := r.ReadFrame(); err != io.EOF {
				t.Errorf("ReadFrame() at end = %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderZeroesPreviousFrame(t *testing.T) {
	small := bytes.Repeat([]byte("small-secret"), 4)
	mid := bytes.Repeat([]byte("mid-secret"), 300)              // the buffer is compacted
	big := bytes.Repeat([]byte("big-secret"), MaxSecretSize/10) // and grows
	values := [][]byte{small, mid, mid, big, nil}
	var frames [][]byte
	for i, v := range values {
		frames = append(frames, Marshal(uint32(i+1), &Secret{Name: "s", Version: 1, Value: v}))
	}
	for _, chunk := range []int{1, 7, 1000, 1100, 3000, 1 << 20} {
		r := NewReader(&loopReader{data: bytes.Join(frames, nil), chunk: chunk}, MaxFrameSize)
		for i := range 3 * len(frames) {
			if _, _, _, err := r.ReadFrame(); err != nil {
				t.Fatal(err)
			}
			// Outside this frame and what was read ahead, no copy of
			// the previous frame's value is left.
			prev := values[(i+len(values)-1)%len(values)]
			rest := bytes.Clone(r.buf)
			clear(rest[r.prev:r.w])
			if i > 0 && len(prev) > 0 && bytes.Contains(rest, prev[:20]) {
				t.Errorf("chunk %d, frame %d: the previous frame's value is still in the buffer", chunk, i)
			}
		}
	}
}

func TestReaderTruncated(t *testing.T) {
	for _, tc := range vectors(t) {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.frame) {
				want := io.ErrUnexpectedEOF
				if i == 0 {
					want = io.EOF
				}
				r := NewReader(iotest.OneByteReader(bytes.NewReader(tc.frame[:i])), MaxRequestSize)
				if _, _, _, err := r.ReadFrame(); err != want {
					t.Errorf("ReadFrame() of %x = %v, want %v", tc.frame[:i], err, want)
				}
			}
		})
	}
}

// sizeReader serves data once and records the largest buffer it was given.
type sizeReader struct {
	data []byte
	max  int
}

func (r *sizeReader) Read(p []byte) (int, error) {
	r.max = max(r.max, len(p))
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReaderBadLength(t *testing.T) {
	tests := []struct {
		name   string
		length uint32
		max    int
		want   error
	}{
		{"zero", 0, MaxRequestSize, ErrFrameTooSmall},
		{"four", 4, MaxRequestSize, ErrFrameTooSmall},
		{"over-request", MaxRequestSize + 1, MaxRequestSize, ErrFrameTooLarge},
		{"frame-size-at-agent", MaxFrameSize, MaxRequestSize, ErrFrameTooLarge},
		{"over-frame", MaxFrameSize + 1, MaxFrameSize, ErrFrameTooLarge},
		{"over-frame-default", MaxFrameSize + 1, 0, ErrFrameTooLarge},
		{"max-u32", math.MaxUint32, MaxFrameSize, ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A whole frame of the claimed size follows where it is small,
			// so only the length check can refuse it.
			data := setLength(make([]byte, 4+min(tc.length, MaxFrameSize+1)), tc.length)
			var (
				src   *sizeReader
				r     *Reader
				err   error
				least = uint64(math.MaxUint64)
			)
			// The least of a few tries, as other goroutines may allocate
			// during one.
			for range 5 {
				src = &sizeReader{data: data}
				r = NewReader(src, tc.max)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, _, _, err = r.ReadFrame()
				runtime.ReadMemStats(&after)
				least = min(least, after.TotalAlloc-before.TotalAlloc)
			}

			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame() with length %d = %v, want *ParseError wrapping %v", tc.length, err, tc.want)
			}
			if least > 1024 {
				t.Errorf("ReadFrame() with length %d allocated %d bytes, want it refused before allocating", tc.length, least)
			}
			if src.max > 4+MaxRequestSize {
				t.Errorf("ReadFrame() with length %d read into a %d-byte buffer, want at most %d", tc.length, src.max, 4+MaxRequestSize)
			}
			if _, _, _, err2 := r.ReadFrame(); !errors.Is(err2, tc.want) {
				t.Errorf("second ReadFrame() = %v, want %v again", err2, tc.want)
			}
		})
	}
}

func TestNewReaderMax(t *testing.T) {
	tests := []struct{ max, want int }{
		{-1, MaxFrameSize}, {0, MaxFrameSize}, {4, MaxFrameSize}, {5, 5},
		{MaxRequestSize, MaxRequestSize}, {MaxFrameSize, MaxFrameSize}, {MaxFrameSize + 1, MaxFrameSize},
	}
	for _, tc := range tests {
		if got := NewReader(nil, tc.max).max; got != tc.want {
			t.Errorf("NewReader(nil, %d).max = %d, want %d", tc.max, got, tc.want)
		}
	}
}

// stuckReader returns 0, nil forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	if _, _, _, err := NewReader(stuckReader{}, 0).ReadFrame(); err != io.ErrNoProgress {
		t.Errorf("ReadFrame() from a reader stuck at 0, nil = %v, want io.ErrNoProgress", err)
	}
}

// loopReader serves data over and over, in reads of at most chunk bytes.
type loopReader struct {
	data  []byte
	off   int
	chunk int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), l.chunk)], l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func TestReaderAllocs(t *testing.T) {
	_, all := stream(t)
	// Odd-sized reads split frames everywhere, so the buffer is compacted.
	r := NewReader(&loopReader{data: all, chunk: 1000}, MaxFrameSize)
	for range 100 { // warm up: the buffer grows to fit the big secret
		if _, _, _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, _, e := r.ReadFrame(); e != nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("ReadFrame: %v allocations per frame, want 0", allocs)
	}
}

func BenchmarkReaderReadFrame(b *testing.B) {
	frame := Marshal(1, &Get{Name: "binance/mm-prod"})
	r := NewReader(&loopReader{data: frame, chunk: len(frame)}, MaxRequestSize)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReaderShrinks: after a large frame, an idle Reader gives the memory
// back, so that an idle connection that once sent a large request stays
// small.
func TestReaderShrinks(t *testing.T) {
	big := Marshal(1, &Put{Name: "x", Value: bytes.Repeat([]byte{1}, MaxSecretSize)})
	small := Marshal(2, &Get{Name: "x"})
	r := NewReader(bytes.NewReader(append(big, small...)), MaxRequestSize)
	if _, _, _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if len(r.buf) < len(big) {
		t.Fatalf("buffer of %d bytes after a %d-byte frame", len(r.buf), len(big))
	}
	if _, _, _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if len(r.buf) > 4+smallFrame {
		t.Errorf("buffer of %d bytes after the large frame was consumed, want at most %d", len(r.buf), 4+smallFrame)
	}
}
