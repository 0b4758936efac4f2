package tty

import (
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1234\n", "1234"},
		{"1234\r\n", "1234"},
		{"1234", "1234"},
		{"12\n34\n", "12"},
		{"\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		r := strings.NewReader(tt.in)
		got, err := ReadLine(iotest.OneByteReader(r))
		if err != nil || string(got) != tt.want {
			t.Errorf("ReadLine(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	r := strings.NewReader("12\n34\n")
	ReadLine(r)
	if rest := r.Len(); rest != 3 {
		t.Errorf("ReadLine consumed past the line: %d bytes left, want 3", rest)
	}
	if _, err := ReadLine(strings.NewReader(strings.Repeat("x", MaxLine+1))); err == nil {
		t.Errorf("ReadLine(oversized) = nil error")
	}
}
