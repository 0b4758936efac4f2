package wire

import (
	"encoding/binary"
	"io"
)

// A Reader reads frames from a byte stream, such as a connection, into one
// reused buffer. It checks each length field before reading the frame, so a
// peer cannot make it allocate more than its limit.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	rd   io.Reader
	max  int
	buf  []byte
	r, w int   // buf[r:w] has been read from rd but not returned
	prev int   // buf[prev:r] is the frame returned last
	err  error // error from rd, returned once buf[r:w] cannot serve
}

// NewReader returns a Reader that reads frames from r and refuses frames
// whose length field exceeds max. The agent passes [MaxRequestSize] and a
// client [MaxFrameSize]; a max outside 5..MaxFrameSize means MaxFrameSize.
//
// The Reader may read ahead of the frame it returns, so r should not be read
// from other than through the Reader.
func NewReader(r io.Reader, max int) *Reader {
	if max < headerSize-4 || max > MaxFrameSize {
		max = MaxFrameSize
	}
	return &Reader{rd: r, max: max, buf: make([]byte, 4+min(max, smallFrame))}
}

// ReadFrame reads the next frame and returns its type, id and body, which
// [ParseBody] decodes. The body is valid until the next call, which zeroes it
// in the buffer so that a secret value does not linger there; a caller may
// also clear it sooner. The type is not checked.
//
// At a clean end of the stream between frames, ReadFrame returns [io.EOF];
// in the middle of a frame, [io.ErrUnexpectedEOF]. A length field below 5
// or above the limit yields a [*ParseError] wrapping [ErrFrameTooSmall] or
// [ErrFrameTooLarge]; the stream cannot be resynchronised after it, so close
// the connection. Other errors come from the underlying reader; after a
// temporary one, such as a deadline, ReadFrame may be called again and
// resumes where it stopped.
func (r *Reader) ReadFrame() (t Type, id uint32, body []byte, err error) {
	clear(r.buf[r.prev:r.r])
	r.prev = r.r
	if r.r == r.w {
		r.r, r.w, r.prev = 0, 0, 0
		if len(r.buf) > 4+smallFrame {
			// A large frame is done: give its memory back, so that idle
			// connections stay small.
			clear(r.buf)
			r.buf = make([]byte, 4+min(r.max, smallFrame))
		}
	}
	if err := r.fill(4); err != nil {
		if err == io.EOF && r.r < r.w {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(r.buf[r.r:])
	if err := checkLength(n, r.max); err != nil {
		return 0, 0, nil, err
	}
	size := 4 + int(n)
	if err := r.fill(size); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	f := r.buf[r.r : r.r+size : r.r+size]
	r.r += size
	return Type(f[4]), binary.BigEndian.Uint32(f[5:]), f[headerSize:], nil
}

// fill reads until buf[r:w] holds at least n bytes, n <= 4+r.max.
func (r *Reader) fill(n int) error {
	if len(r.buf)-r.r < n {
		if len(r.buf) < n {
			b := make([]byte, max(n, min(2*len(r.buf), 4+r.max)))
			copy(b, r.buf[r.r:r.w])
			clear(r.buf)
			r.buf = b
		} else {
			copy(r.buf, r.buf[r.r:r.w])
			clear(r.buf[r.w-r.r : r.w])
		}
		r.w -= r.r
		r.r, r.prev = 0, 0
	}
	for empty := 0; r.w-r.r < n; {
		if r.err != nil {
			err := r.err
			r.err = nil
			return err
		}
		m, err := r.rd.Read(r.buf[r.w:])
		r.w += m
		r.err = err
		if m == 0 && err == nil {
			if empty++; empty == 100 {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// Buffered returns the number of bytes read from the stream but not yet
// returned in a frame: a non-zero value means the next frame has started.
func (r *Reader) Buffered() int { return r.w - r.r }

// Reset zeroes the Reader's buffer and drops what it held, for a
// connection that is being closed with an answer possibly unread.
func (r *Reader) Reset() {
	clear(r.buf)
	r.r, r.w, r.prev, r.err = 0, 0, 0, nil
}
