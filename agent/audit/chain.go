package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
)

// The chain's fields close every JSON line: `,"seq":N,"prev":"…"` is
// appended to the line slog wrote, the line so far is hashed, and
// `,"hash":"…"}` ends it. The hash covers every byte before `,"hash":`,
// the previous event's hash included.
const (
	seqField  = `,"` + KeySeq + `":`
	prevField = `,"` + KeyPrev + `":"`
	hashField = `,"` + KeyHash + `":"`
	hashLen   = 2 * sha256.Size
	// sealLen is the length of `,"hash":"<64 hex>"}`, which ends a line.
	sealLen = len(hashField) + hashLen + len(`"}`)
)

// A Head names the newest event of a trail: its sequence number and the
// hex SHA-256 of its line. Recorded elsewhere (off the host, or in the
// operational log, where the agent writes it at each rotation and stop),
// a head lets `keyward audit verify --head` tell whether the trail was
// cut or rewritten since. The zero Head is a trail with no event.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// LogValue implements [slog.LogValuer].
func (h Head) LogValue() slog.Value {
	return slog.GroupValue(slog.Uint64(KeySeq, h.Seq), slog.String(KeyHash, h.Hash))
}

// String returns "seq N hash H".
func (h Head) String() string { return fmt.Sprintf("seq %d hash %s", h.Seq, h.Hash) }

// chain seals each line written with its sequence number and the hash of
// the line before. It is used by the Log's goroutine only.
type chain struct {
	seq  uint64
	prev []byte // hex hash of the last line, empty before the first
	sum  [hashLen]byte
}

func newChain(h Head) *chain {
	return &chain{seq: h.Seq, prev: []byte(h.Hash)}
}

func (c *chain) head() Head { return Head{Seq: c.seq, Hash: string(c.prev)} }

// seal ends the line that starts at offset start of buf, as slog wrote
// it (a JSON object and a newline), with the chain's fields.
func (c *chain) seal(buf *bytes.Buffer, start int) {
	line := buf.Bytes()[start:]
	if !bytes.HasSuffix(line, []byte("}\n")) {
		return // not a line of slog's JSON handler; verify reports it
	}
	buf.Truncate(buf.Len() - 2)
	c.seq++
	b := buf.AvailableBuffer()
	b = append(b, seqField...)
	b = strconv.AppendUint(b, c.seq, 10)
	b = append(b, prevField...)
	b = append(b, c.prev...)
	b = append(b, '"')
	buf.Write(b)
	sum := sha256.Sum256(buf.Bytes()[start:])
	hex.Encode(c.sum[:], sum[:])
	c.prev = append(c.prev[:0], c.sum[:]...)
	b = buf.AvailableBuffer()
	b = append(b, hashField...)
	b = append(b, c.sum[:]...)
	b = append(b, "\"}\n"...)
	buf.Write(b)
}

// A tail is what a file trail ends with, read when the agent opens it.
type tail struct {
	head   Head
	closed bool   // its last event is a stop or a rotation
	torn   bool   // it ends in a partial line
	empty  bool   // it has no byte
	bad    string // why its last line is not an event, if it is not
}

// readTail reads the last line of f.
func readTail(f *os.File) (tail, error) {
	fi, err := f.Stat()
	if err != nil {
		return tail{}, err
	}
	size := fi.Size()
	if size == 0 {
		return tail{empty: true}, nil
	}
	n := min(size, MaxLine+1)
	b := make([]byte, n)
	if _, err := f.ReadAt(b, size-n); err != nil {
		return tail{}, err
	}
	var t tail
	if b[len(b)-1] != '\n' {
		t.torn = true
		i := bytes.LastIndexByte(b, '\n')
		if i < 0 {
			t.bad = "the file holds no whole line"
			return t, nil
		}
		b = b[:i+1]
	}
	b = b[:len(b)-1]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	} else if n < size {
		t.bad = "its last line is longer than the limit"
		return t, nil
	}
	r, err := parseLine(b)
	if err != nil {
		t.bad = err.Error()
		return t, nil
	}
	t.head = Head{Seq: r.Seq, Hash: r.Hash}
	t.closed = r.Op == OpStop || r.Op == OpRotate
	return t, nil
}

// startLevel is the start event's level: a warning when the file's end
// was not the end of a closed trail.
func (t tail) startLevel() slog.Level {
	if !t.empty && (t.torn || t.bad != "" || !t.closed) {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// startReason says, in the start event, what the trail continues from.
func (t tail) startReason() string {
	switch {
	case t.empty:
		return "a new audit trail"
	case t.bad != "":
		return "a new audit trail: the file's last line is not an audit event (" + t.bad + ")"
	}
	r := fmt.Sprintf("the trail continues from seq %d", t.head.Seq)
	if t.torn {
		r += "; the file ended in a partial line (an event cut by a crash or a full disk), which is not part of the trail"
	}
	if !t.closed {
		r += "; the previous run did not close the trail (the agent was killed, or the file's end was cut)"
	}
	return r
}
