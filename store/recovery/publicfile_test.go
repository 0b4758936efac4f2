package recovery

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestPublicFileRoundTrip(t *testing.T) {
	kit, _ := newTestKit(t, 5, 3)
	b := kit.MarshalPublic()
	if !bytes.HasPrefix(b, []byte("-----BEGIN KEYWARD RECOVERY KIT-----\nCreated: 2026-05-01T10:30:45Z\nKit: "+kit.ID+"\nShares: 5\nThreshold: 3\n\n")) {
		t.Errorf("MarshalPublic() starts %q", b[:120])
	}
	for _, in := range [][]byte{b, append([]byte("\n  "), append(bytes.Clone(b), "\n\n"...)...)} {
		got, err := ParsePublic(in)
		if err != nil {
			t.Fatalf("ParsePublic() = %v", err)
		}
		if !bytes.Equal(got.Marshal(), kit.Marshal()) || got.ID != kit.ID {
			t.Errorf("ParsePublic() = kit %s, want %s", got.ID, kit.ID)
		}
	}
}

func TestParsePublicRejects(t *testing.T) {
	kit, _ := newTestKit(t, 5, 3)
	other, _ := newTestKit(t, 3, 2)
	good := string(kit.MarshalPublic())
	tests := map[string]struct{ in, want string }{
		"empty":           {"", "must start with"},
		"binary kit":      {string(kit.Marshal()), "must start with"},
		"text before":     {"kit:\n" + good, "must start with"},
		"text after":      {good + "and more\n", "text after"},
		"two blocks":      {good + good, "text after"},
		"unclosed":        {strings.TrimSuffix(good, "-----END KEYWARD RECOVERY KIT-----\n"), "malformed or not closed"},
		"other type":      {strings.ReplaceAll(good, "KEYWARD RECOVERY KIT", "KEYWARD RECOVERY KITS"), "must start with"},
		"edited id":       {strings.Replace(good, "Kit: "+kit.ID, "Kit: "+other.ID, 1), "header Kit is"},
		"edited k":        {strings.Replace(good, "Threshold: 3", "Threshold: 2", 1), "header Threshold is"},
		"missing header":  {strings.Replace(good, "Shares: 5\n", "", 1), "3 headers, want 4"},
		"renamed header":  {strings.Replace(good, "Shares: 5\n", "Share: 5\n", 1), "no Shares header"},
		"extra header":    {strings.Replace(good, "Shares: 5\n", "Shares: 5\nOwner: me\n", 1), "5 headers"},
		"other body":      {swapBody(good, string(other.MarshalPublic())), "the file was edited"},
		"oversized":       {good + strings.Repeat(" ", MaxPublicFileSize), "larger than"},
		"truncated body":  {strings.Replace(good, "\n-----END", "AAAA\n-----END", 1), "malformed kit"},
		"not base64 body": {strings.Replace(good, "\n-----END", "!\n-----END", 1), "malformed or not closed"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			k, err := ParsePublic([]byte(tt.in))
			var pe *ParseError
			if k != nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePublic() = %v, %v; want a *ParseError containing %q", k, err, tt.want)
			}
		})
	}
}

// swapBody returns the headers of file a with the body of file b.
func swapBody(a, b string) string {
	ha, _, _ := strings.Cut(a, "\n\n")
	_, bb, _ := strings.Cut(b, "\n\n")
	return ha + "\n\n" + bb
}

func FuzzParsePublic(f *testing.F) {
	kit, _ := newTestKit(f, 5, 3)
	f.Add(kit.MarshalPublic())
	f.Add([]byte("-----BEGIN KEYWARD RECOVERY KIT-----\nKit: 00\n\nAAAA\n-----END KEYWARD RECOVERY KIT-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePublic(b)
		if err != nil {
			var pe *ParseError
			if k != nil || !errors.As(err, &pe) {
				t.Fatalf("ParsePublic() = %v, %v; want nil, *ParseError", k, err)
			}
			return
		}
		again, err := ParsePublic(k.MarshalPublic())
		if err != nil || !bytes.Equal(again.Marshal(), k.Marshal()) {
			t.Fatalf("ParsePublic(MarshalPublic()) = %v, %v; want the same kit", again, err)
		}
	})
}
