package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// raw builds bytes from hex digits, with whitespace ignored and text between
// single quotes taken literally, so frames in tests read like the spec.
func raw(s string) []byte {
	var out []byte
	for i, part := range strings.Split(s, "'") {
		if i%2 == 1 {
			out = append(out, part...)
			continue
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(part), ""))
		if err != nil {
			panic(fmt.Sprintf("raw(%q): %v", s, err))
		}
		out = append(out, b...)
	}
	return out
}

// setLength returns a copy of frame with its length field set to n.
func setLength(frame []byte, n uint32) []byte {
	f := bytes.Clone(frame)
	binary.BigEndian.PutUint32(f, n)
	return f
}

// A vector is one valid frame from testdata/vectors.json, written out by
// hand from the specification and shared with the Python and Node tests,
// so it tests every encoder as well as every parser.
type vector struct {
	name  string
	frame []byte
	id    uint32
	want  Message
}

// vectors loads testdata/vectors.json.
func vectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name, Frame, Type string
			ID                uint32
			Message           json.RawMessage
		}
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	var out []vector
	for _, v := range file.Vectors {
		m := messageNamed(v.Type)
		if m == nil {
			t.Fatalf("vectors.json: %s: unknown type %q", v.Name, v.Type)
		}
		dec := json.NewDecoder(bytes.NewReader(v.Message))
		dec.DisallowUnknownFields()
		if err := dec.Decode(m); err != nil {
			t.Fatalf("vectors.json: %s: %v", v.Name, err)
		}
		out = append(out, vector{v.Name, raw(v.Frame), v.ID, m})
	}
	return out
}

// messageNamed returns an empty message of the type named s, or nil.
func messageNamed(s string) Message {
	for _, e := range types {
		if e.name == s {
			return e.new()
		}
	}
	return nil
}

// TestVectorsCoverEveryType: the shared vectors hold at least one frame
// of every message type.
func TestVectorsCoverEveryType(t *testing.T) {
	seen := map[Type]bool{}
	for _, v := range vectors(t) {
		seen[v.want.Type()] = true
	}
	for _, e := range types {
		if !seen[e.t] {
			t.Errorf("testdata/vectors.json has no %s frame", e.name)
		}
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range vectors(t) {
		t.Run(tc.name, func(t *testing.T) {
			id, m, err := Parse(tc.frame)
			if err != nil || id != tc.id || !reflect.DeepEqual(m, tc.want) {
				t.Fatalf("Parse(%x) = %d, %#v, %v, want %d, %#v, nil", tc.frame, id, m, err, tc.id, tc.want)
			}
			if got := Marshal(tc.id, tc.want); !bytes.Equal(got, tc.frame) {
				t.Errorf("Marshal(%d, %#v) = %x, want %x", tc.id, tc.want, got, tc.frame)
			}
		})
	}
}

// checkParseError checks that Parse(frame) fails the way the package
// promises, with an error wrapping want.
func checkParseError(t *testing.T, frame []byte, want error) {
	t.Helper()
	_, m, err := Parse(frame)
	var pe *ParseError
	if m != nil || !errors.As(err, &pe) || !errors.Is(err, want) {
		t.Errorf("Parse(%x) = %v, %v, want nil, *ParseError wrapping %v", frame, m, err, want)
	}
}

func TestParseDamaged(t *testing.T) {
	for _, tc := range vectors(t) {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.frame) {
				// Cut short, length field unchanged.
				checkParseError(t, tc.frame[:i], ErrMalformed)
				// Cut short, length field agreeing: the body is truncated.
				if i >= headerSize {
					checkParseError(t, setLength(tc.frame[:i], uint32(i-4)), ErrMalformed)
				}
			}
			// A trailing byte, counted by the length field or not.
			long := append(bytes.Clone(tc.frame), 0)
			checkParseError(t, long, ErrMalformed)
			checkParseError(t, setLength(long, uint32(len(long)-4)), ErrMalformed)
			// Length fields out of range.
			for _, n := range []uint32{0, 1, 4} {
				checkParseError(t, setLength(tc.frame, n), ErrFrameTooSmall)
			}
			for _, n := range []uint32{MaxFrameSize + 1, math.MaxUint32} {
				checkParseError(t, setLength(tc.frame, n), ErrFrameTooLarge)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  error
		why   string // in the error text, so the frame fails for the reason meant
	}{
		{"empty", nil, ErrMalformed, "no length prefix"},
		{"short-prefix", raw("000000"), ErrMalformed, "no length prefix"},
		{"header-only-prefix", raw("00000005"), ErrMalformed, "but 0 bytes follow"},
		{"unknown-request-type", raw("00000005 7e 00000001"), ErrUnknownType, "Type(0x7e)"},
		{"type-zero", raw("00000005 00 00000001"), ErrUnknownType, "Type(0x00)"},
		{"type-7f", raw("00000005 7f 00000001"), ErrUnknownType, "Type(0x7f)"},
		{"unknown-response-type", raw("00000005 80 00000001"), ErrUnknownType, "Type(0x80)"},
		{"type-fe", raw("00000005 fe 00000001"), ErrUnknownType, "Type(0xfe)"},
		{"hello/no-versions", raw("00000006 01 00000001 00"), ErrMalformed, "0 versions"},
		{"hello/17-versions", raw("00000028 01 00000001 11" + strings.Repeat(" 0001", 17)), ErrMalformed, "17 versions"},
		{"hello/255-versions", raw("00000204 01 00000001 ff" + strings.Repeat(" 0001", 255)), ErrMalformed, "255 versions"},
		{"hello/count-exceeds-body", raw("00000008 01 00000001 02 0001"), ErrMalformed, "version truncated"},
		{"get/name-exceeds-body", raw("00000009 02 00000001 05 'ab' 00"), ErrMalformed, "name truncated"},
		{"get/trailing", raw("0000000b 02 00000001 00 00000000 00"), ErrMalformed, "1 trailing bytes"},
		{"list/body", raw("00000006 03 00000001 00"), ErrMalformed, "1 trailing bytes"},
		{"status/body", raw("00000006 04 00000001 00"), ErrMalformed, "1 trailing bytes"},
		{"secret/value-over-max", append(raw("00010018 82 00000001 01 'x' 00000001 0000000000000000 00010001"), make([]byte, MaxSecretSize+1)...),
			ErrMalformed, "value length 65537, limit 65536"},
		{"secret/value-length-huge", raw("00000017 82 00000001 01 'x' 00000001 0000000000000000 ffffffff"), ErrMalformed, "value length 4294967295"},
		{"names/count-exceeds-body", raw("0000000d 83 00000001 00000006 03 'abc'"), ErrMalformed, "count 6, but 4 bytes follow"},
		{"names/count-huge", raw("00000009 83 00000001 ffffffff"), ErrMalformed, "count 4294967295"},
		{"names/name-truncated", raw("0000000e 83 00000001 00000002 03 'abc' 03"), ErrMalformed, "name truncated"},
		{"status_ok/healthy-2", raw("00000017 84 00000006 02 03 'tpm' 00000000 0000000000000000 00"), ErrMalformed, "healthy is 2"},
		{"status_ok/healthy-ff", raw("00000017 84 00000006 ff 03 'tpm' 00000000 0000000000000000 00"), ErrMalformed, "healthy is 255"},
		{"error/message-exceeds-body", raw("0000000b ff 00000001 0001 0003 'ab'"), ErrMalformed, "message truncated"},
		{"put/undefined-flag", raw("00000019 08 00000001 01 'x' 04 0000000000000000 00000000 00000001 'v'"), ErrMalformed, "flags 0x04 has undefined bits"},
		{"health_ok/problems-exceed-body", raw("0000001e 88 00000001 01 0000000000000000 0000000000000000 00000000 00000009"), ErrMalformed, "count 9, but 0 bytes follow"},
		{"watch/no-names", raw("00000006 06 00000001 00"), ErrMalformed, "0 names"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkParseError(t, tc.frame, tc.want)
			if _, _, err := Parse(tc.frame); err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("Parse(%x) = %v, want an error saying %q", tc.frame, err, tc.why)
			}
		})
	}
}

// TestParseLimits checks the largest frames that are valid, and that one
// more byte is not.
func TestParseLimits(t *testing.T) {
	// 4095 names of 255 bytes and one of 246 fill MaxFrameSize exactly.
	names := make([]string, 4096)
	for i := range names {
		names[i] = strings.Repeat("n", 255)
	}
	names[4095] = strings.Repeat("n", 246)
	secret := &Secret{Name: strings.Repeat("s", MaxStr8Len), Version: 1, Value: bytes.Repeat([]byte{0xA5}, MaxSecretSize)}

	for _, m := range []Message{&Names{Names: names}, secret} {
		t.Run(m.Type().String(), func(t *testing.T) {
			frame := Marshal(1, m)
			if _, got, err := Parse(frame); err != nil || !reflect.DeepEqual(got, m) {
				t.Errorf("Parse(%x...) = %v, want nil error and the message back", frame[:16], err)
			}
			if m.Type() == TypeNames && len(frame) != 4+MaxFrameSize {
				t.Errorf("len(Marshal(names)) = %d, want %d", len(frame), 4+MaxFrameSize)
			}
		})
	}
	t.Run("names/one-over", func(t *testing.T) {
		checkParseError(t, Marshal(1, &Names{Names: append(names[:4095:4095], strings.Repeat("n", 247))}), ErrFrameTooLarge)
	})
}

// TestRoundTrip checks Parse(Marshal(id, m)) == id, m for messages built in
// Go, including edge values.
func TestRoundTrip(t *testing.T) {
	msgs := []Message{
		&Hello{Versions: []uint16{Version1}},
		&Hello{Versions: []uint16{3, 0, 1, 1, 2, 0xffff, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
		&Get{Name: "binance/mm-prod"},
		&Get{Name: strings.Repeat("\xff", MaxStr8Len), Version: 42},
		&List{},
		&Status{},
		&HelloOK{Version: Version1, Agent: "keyward 0.1.0"},
		&Secret{Name: "okx/exec", Version: math.MaxUint32, Expires: math.MinInt64, Value: []byte{0, 1, 2}},
		&Secret{Name: "", Version: 1, Expires: math.MaxInt64, Value: []byte{}},
		&Names{Names: []string{}},
		&Names{Names: []string{"a", "", strings.Repeat("z", MaxStr8Len)}},
		&StatusOK{Healthy: true, Backend: "tpm", Secrets: math.MaxUint32, UptimeMS: 1, Agent: "keyward 0.1.0"},
		&StatusOK{},
		&Error{Code: CodeRateLimited, Message: CodeRateLimited.Message()},
		&Error{Code: 0, Message: strings.Repeat("m", math.MaxUint16)},
		&Error{Code: math.MaxUint16},
	}
	for _, m := range msgs {
		for _, id := range []uint32{0, 1, math.MaxUint32} {
			t.Run(fmt.Sprintf("%v/%d", m.Type(), id), func(t *testing.T) {
				frame := Marshal(id, m)
				gotID, got, err := Parse(frame)
				if err != nil || gotID != id || !reflect.DeepEqual(got, m) {
					t.Errorf("Parse(Marshal(%d, %v)) = %d, %v, %v, want the same back", id, m, gotID, got, err)
				}
				if got := Marshal(id, got); !bytes.Equal(got, frame) {
					t.Errorf("Marshal(Parse(%x)) = %x", frame, got)
				}
			})
		}
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	frame := Marshal(1, &Secret{Name: "n", Version: 1, Value: []byte("value")})
	_, m, err := Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	clear(frame)
	if v := m.(*Secret).Value; string(v) != "value" {
		t.Errorf("Secret.Value = %q after clearing the frame, want %q", v, "value")
	}
}

func TestAppendFrame(t *testing.T) {
	m := &Get{Name: "x", Version: 1}
	want := Marshal(7, m)
	buf := []byte("prefix")
	got := AppendFrame(buf, 7, m)
	if !bytes.Equal(got[:6], []byte("prefix")) || !bytes.Equal(got[6:], want) {
		t.Errorf("AppendFrame(%q, 7, %v) = %q, want prefix then %x", "prefix", m, got, want)
	}
	buf = make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = AppendFrame(buf[:0], 7, m) }); n != 0 {
		t.Errorf("AppendFrame into a reused buffer: %v allocations, want 0", n)
	}
	if !bytes.Equal(buf, want) {
		t.Errorf("AppendFrame(buf[:0], 7, %v) = %x, want %x", m, buf, want)
	}
}

func TestAppendFramePanics(t *testing.T) {
	long := strings.Repeat("x", MaxStr8Len+1)
	tests := []struct {
		name string
		m    Message
	}{
		{"hello/none", &Hello{}},
		{"hello/17", &Hello{Versions: make([]uint16, 17)}},
		{"get/long-name", &Get{Name: long}},
		{"hello_ok/long-agent", &HelloOK{Agent: long}},
		{"secret/long-name", &Secret{Name: long}},
		{"secret/value-over-max", &Secret{Name: "x", Value: make([]byte, MaxSecretSize+1)}},
		{"names/long-name", &Names{Names: []string{"ok", long}}},
		{"status_ok/long-backend", &StatusOK{Backend: long}},
		{"status_ok/long-agent", &StatusOK{Agent: long}},
		{"error/long-message", &Error{Message: strings.Repeat("m", math.MaxUint16+1)}},
		{"watch/none", &Watch{}},
		{"put/value-over-max", &Put{Name: "x", Value: make([]byte, MaxSecretSize+1)}},
		{"health_ok/long-name", &HealthOK{Problems: []Issue{{Name: long}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Marshal(1, %v) did not panic", tc.m)
				}
			}()
			Marshal(1, tc.m)
		})
	}
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{
		{TypeHello, "hello"}, {TypeGet, "get"}, {TypeList, "list"}, {TypeStatus, "status"},
		{TypeHelloOK, "hello_ok"}, {TypeSecret, "secret"}, {TypeNames, "names"},
		{TypeStatusOK, "status_ok"}, {TypeError, "error"},
		{0, "Type(0x00)"}, {0x7e, "Type(0x7e)"}, {0xa0, "Type(0xa0)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.t.String(); got != tc.want {
				t.Errorf("Type(%#x).String() = %q, want %q", uint8(tc.t), got, tc.want)
			}
		})
	}
}

func TestCode(t *testing.T) {
	tests := []struct {
		c         Code
		name, msg string
	}{
		{CodeNotFound, "not_found", "no such secret"},
		{CodeDenied, "denied", "access denied or no such secret"},
		{CodeExpired, "expired", "secret expired"},
		{CodeUnavailable, "unavailable", "temporarily unavailable, try again later"},
		{CodeBadRequest, "bad_request", "bad request"},
		{CodeRateLimited, "rate_limited", "too many requests, try again later"},
		{CodeInternal, "internal", "internal error"},
		{0, "Code(0)", "unknown error"},
		{8, "Code(8)", "unknown error"},
		{math.MaxUint16, "Code(65535)", "unknown error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.String(); got != tc.name {
				t.Errorf("Code(%d).String() = %q, want %q", tc.c, got, tc.name)
			}
			if got := tc.c.Message(); got != tc.msg {
				t.Errorf("Code(%d).Message() = %q, want %q", tc.c, got, tc.msg)
			}
		})
	}
}

func TestErrorError(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{&Error{Code: CodeDenied}, "agent: denied: access denied or no such secret"},
		{&Error{Code: CodeBadRequest, Message: "unknown operation"}, "agent: bad_request: unknown operation"},
		{&Error{Code: 42}, "agent: Code(42): unknown error"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			var err error = tc.e
			if got := err.Error(); got != tc.want {
				t.Errorf("(%#v).Error() = %q, want %q", tc.e, got, tc.want)
			}
		})
	}
}

func BenchmarkAppendFrameSecret(b *testing.B) {
	m := &Secret{Name: "binance/mm-prod", Version: 3, Value: bytes.Repeat([]byte{'k'}, 64)}
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(Marshal(1, m))))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], 1, m)
	}
}

func BenchmarkParseGet(b *testing.B) {
	frame := Marshal(1, &Get{Name: "binance/mm-prod"})
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDocsListEveryType: the package doc and docs/protocol.md name every
// message type, with its type byte, so that neither falls behind the code.
func TestDocsListEveryType(t *testing.T) {
	pkgDoc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range types {
		goName := reflect.TypeOf(e.new()).Elem().Name()
		if want := fmt.Sprintf("0x%02X %s ", uint8(e.t), goName); !strings.Contains(string(pkgDoc), want) {
			t.Errorf("doc.go does not list %q", want)
		}
		if want := fmt.Sprintf("| `0x%02X` | %s |", uint8(e.t), goName); !strings.Contains(string(spec), want) {
			t.Errorf("docs/protocol.md's message table does not list %q", want)
		}
		if want := fmt.Sprintf("### 0x%02X %s", uint8(e.t), goName); !strings.Contains(string(spec), want) {
			t.Errorf("docs/protocol.md has no section %q", want)
		}
	}
	// The bad-input table's range of unknown request types starts just
	// after the last request type.
	var last Type
	for _, e := range types {
		if e.t < 0x80 {
			last = max(last, e.t)
		}
	}
	if want := fmt.Sprintf("unknown type: `0x00`, `0x%02X`–`0x7F`", uint8(last)+1); !strings.Contains(string(spec), want) {
		t.Errorf("docs/protocol.md's bad-input table does not say %q", want)
	}
	if want := fmt.Sprintf("> %d in a request", MaxRequestSize); !strings.Contains(string(spec), want) {
		t.Errorf("docs/protocol.md's bad-input table does not say %q", want)
	}
}
