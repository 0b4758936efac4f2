package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// MaxLine bounds an event line that is read back (1 MiB): a longer line
// is reported, not read.
const MaxLine = 1 << 20

// A Record is an event read back from a file trail or the journal. As
// JSON it has the field names of the event it was read from (see the
// package doc), plus the file and line it was read from; an event of the
// journal has no seq, prev or hash.
type Record struct {
	File       string    `json:"file,omitempty"`
	Line       int       `json:"line,omitempty"`
	Time       time.Time `json:"time"`
	Level      string    `json:"level"`
	Caller     *Caller   `json:"caller,omitempty"`
	CallerUID  string    `json:"caller_uid,omitempty"`
	Op         string    `json:"op,omitempty"`
	Decision   string    `json:"decision,omitempty"`
	Secret     string    `json:"secret,omitempty"`
	Version    uint32    `json:"version,omitempty"`
	Code       string    `json:"code,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	Expires    string    `json:"expires,omitempty"`
	Exchange   string    `json:"exchange,omitempty"` // a sign or hmac request's
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"`
	Params     string    `json:"params,omitempty"` // parameter names, sorted, comma-separated
	Digest     string    `json:"digest,omitempty"` // hex SHA-256 of what was signed
	Suppressed int64     `json:"suppressed,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Latency    *int64    `json:"latency_us,omitempty"` // a request's, in microseconds
	Seq        uint64    `json:"seq,omitempty"`
	Prev       string    `json:"prev,omitempty"`
	Hash       string    `json:"hash,omitempty"`

	intact bool // the line's hash matches its content
}

// A Caller is who made a request, as the kernel told the agent.
type Caller struct {
	PID  int64  `json:"pid"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Exe  string `json:"exe"`
	Unit string `json:"unit,omitempty"`
}

// A lineError is a line that is not an event.
type lineError struct {
	file string
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.file, e.line, e.err) }

// parseLine reads one line of a file trail, without its newline: a JSON
// event of the log "audit" sealed by the chain. A line whose content does
// not match its hash is returned with intact false and no error.
func parseLine(line []byte) (Record, error) {
	if len(line) > MaxLine {
		return Record{}, errors.New("longer than the limit of 1 MiB")
	}
	body, seq, prev, hash, err := splitSeal(line)
	if err != nil {
		return Record{}, err
	}
	var ev struct {
		Record
		Log string `json:"log"`
		Msg string `json:"msg"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return Record{}, fmt.Errorf("not an audit event: %v", err)
	}
	if ev.Log != "audit" || ev.Msg != Message || ev.Time.IsZero() {
		return Record{}, errors.New(`not an audit event: no "log":"audit", "msg":"decision" and time`)
	}
	r := ev.Record
	r.File, r.Line = "", 0 // not the line's to say
	r.Seq, r.Prev, r.Hash = seq, prev, hash
	sum := sha256.Sum256(body)
	r.intact = hex.EncodeToString(sum[:]) == hash
	return r, nil
}

// splitSeal takes the chain's fields from the end of a line: the content
// hashed, the sequence number, the previous hash and the hash.
func splitSeal(line []byte) (body []byte, seq uint64, prev, hash string, err error) {
	noSeal := errors.New(`not an audit event of the chain: it does not end with "seq", "prev" and "hash"`)
	if len(line) < sealLen || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, 0, "", "", noSeal
	}
	at := len(line) - sealLen
	if !bytes.HasPrefix(line[at:], []byte(hashField)) {
		return nil, 0, "", "", noSeal
	}
	hash = string(line[at+len(hashField) : len(line)-2])
	body = line[:at]
	p := bytes.LastIndex(body, []byte(prevField))
	if p < 0 || body[len(body)-1] != '"' || p+len(prevField) > len(body)-1 {
		return nil, 0, "", "", noSeal
	}
	prev = string(body[p+len(prevField) : len(body)-1])
	s := bytes.LastIndex(body[:p], []byte(seqField))
	if s < 0 {
		return nil, 0, "", "", noSeal
	}
	digits := string(body[s+len(seqField) : p])
	seq, perr := strconv.ParseUint(digits, 10, 64)
	if perr != nil || seq == 0 || digits[0] == '0' || !isHash(hash) || prev != "" && !isHash(prev) {
		return nil, 0, "", "", noSeal
	}
	return body, seq, prev, hash, nil
}

// isHash reports whether s is a hash as the chain writes it: 64
// lower-case hex digits.
func isHash(s string) bool {
	if len(s) != hashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readFileEvents reads the file trail at path (decompressed if its name
// ends in .gz): event gets each event, bad each line that is not one. It
// stops at the end, at an error reading, or at an error from event.
func readFileEvents(path string, event func(*Record) error, bad func(*lineError)) error {
	rc, err := openTrail(path)
	if err != nil {
		return err
	}
	defer rc.Close()
	return readEvents(rc, path, parseLine, event, bad)
}

// readEvents reads r a line at a time: each line that parse reads goes to
// event, with name and its line number as the record's file and line
// (none when name is ""), and every other line to bad. It stops at the
// end, at an error reading, or at an error from event.
func readEvents(r io.Reader, name string, parse func([]byte) (Record, error), event func(*Record) error, bad func(*lineError)) error {
	lr := lineReader{br: bufio.NewReaderSize(r, 16<<10), name: name}
	for {
		line, err := lr.readLine()
		var le *lineError
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &le):
			bad(le)
			continue
		case err != nil:
			return err
		}
		rec, err := parse(line)
		if err != nil {
			bad(&lineError{name, lr.line, err})
			continue
		}
		if name != "" {
			rec.File, rec.Line = name, lr.line
		}
		if err := event(&rec); err != nil {
			return err
		}
	}
}

// lineReader reads lines of at most MaxLine bytes.
type lineReader struct {
	br   *bufio.Reader
	name string
	line int
	acc  []byte
}

// readLine returns the next line without its newline, valid until the
// next call; a line too long, or a last line with no newline, is a
// *lineError, after which reading may go on.
func (r *lineReader) readLine() ([]byte, error) {
	r.acc = r.acc[:0]
	tooLong := false
	for {
		frag, err := r.br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if len(r.acc)+len(frag) > MaxLine {
				tooLong = true
				r.acc = r.acc[:0]
			} else if !tooLong {
				r.acc = append(r.acc, frag...)
			}
			continue
		case errors.Is(err, io.EOF):
			if len(frag) == 0 && len(r.acc) == 0 && !tooLong {
				return nil, io.EOF
			}
			r.line++
			return nil, &lineError{r.name, r.line,
				errors.New("the last line is incomplete (no newline): cut by a crash, cut on purpose, or being written now")}
		case err != nil:
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		r.line++
		if tooLong || len(r.acc)+len(frag)-1 > MaxLine {
			return nil, &lineError{r.name, r.line, errors.New("longer than the limit of 1 MiB")}
		}
		if len(r.acc) == 0 {
			return frag[:len(frag)-1], nil
		}
		r.acc = append(r.acc, frag[:len(frag)-1]...)
		return r.acc, nil
	}
}

// openTrail opens a file trail for reading; a name ending in .gz (a
// file logrotate compressed) is decompressed.
func openTrail(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}
