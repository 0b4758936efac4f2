package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// leaks reports the first rendering of value found in out: as text, hex,
// base64 or fmt's decimal byte list.
func leaks(out string, value []byte) string {
	for _, enc := range []string{
		string(value),
		hex.EncodeToString(value),
		strings.ToUpper(hex.EncodeToString(value)),
		base64.StdEncoding.EncodeToString(value),
		strings.Trim(fmt.Sprint(value), "[]"),
	} {
		if strings.Contains(out, enc) {
			return enc
		}
	}
	return ""
}

func TestSecretRedacted(t *testing.T) {
	value := []byte("hunter2-do-not-print")
	s := Secret{Name: "binance/mm-prod", Version: 3, Expires: 1767225600, Value: value}
	tests := []struct {
		name string
		arg  any
	}{
		{"value", s},
		{"pointer", &s},
		{"message", Message(&s)},
		{"in-struct", struct{ S Secret }{s}},
		{"in-slice", []Secret{s}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := fmt.Sprintf("%v %+v %#v %s %q %x %X %d", tc.arg, tc.arg, tc.arg, tc.arg, tc.arg, tc.arg, tc.arg, tc.arg)
			if enc := leaks(out, value); enc != "" {
				t.Errorf("fmt.Sprintf(%%v...) = %q, contains the value as %q", out, enc)
			}
			if !strings.Contains(out, "binance/mm-prod") || !strings.Contains(out, "redacted, 20 bytes") {
				t.Errorf("fmt.Sprintf(%%v...) = %q, want the name and the value's length", out)
			}
		})
	}

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		slog.New(h).Info("served", "secret", s, "ptr", &s, "msg", Message(&s))
	}
	if enc := leaks(buf.String(), value); enc != "" {
		t.Errorf("slog output %q contains the value as %q", buf.String(), enc)
	}
	if !strings.Contains(buf.String(), `"value_len":20`) {
		t.Errorf("slog JSON output %q lacks value_len", buf.String())
	}
}

func TestSecretString(t *testing.T) {
	s := Secret{Name: "a/b", Version: 1, Value: []byte("xyz")}
	tests := []struct {
		format, want string
	}{
		{"%v", `Secret{Name: "a/b", Version: 1, Expires: 0, Value: <redacted, 3 bytes>}`},
		{"%#v", `wire.Secret{Name: "a/b", Version: 1, Expires: 0, Value: <redacted, 3 bytes>}`},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			if got := fmt.Sprintf(tc.format, s); got != tc.want {
				t.Errorf("Sprintf(%q, s) = %q, want %q", tc.format, got, tc.want)
			}
		})
	}
}
