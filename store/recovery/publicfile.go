package recovery

import (
	"bytes"
	"encoding/pem"
	"strconv"
	"time"
)

// Public kit file format v1 (docs/recovery.md): the kit as text, for a
// fleet kit's public half to be copied to every host and read by people.
// One PEM block (RFC 7468 textual encoding with RFC 1421 headers) of type
// "KEYWARD RECOVERY KIT" whose body is the binary kit ([Kit.Marshal]) and
// whose headers repeat what is in it, for the eye:
//
//	-----BEGIN KEYWARD RECOVERY KIT-----
//	Created: 2026-05-01T10:30:45Z
//	Kit: 8b278e01d3f717f4
//	Shares: 5
//	Threshold: 3
//
//	S1dSRUNPVgEDBQAAAABp9IB1ZHoAAQACBMBWf3wJ...
//	-----END KEYWARD RECOVERY KIT-----
//
// Parsing is strict: nothing but whitespace around the block, exactly
// these four headers, each equal to what the binary kit says.
const (
	publicFileType = "KEYWARD RECOVERY KIT"
	// MaxPublicFileSize bounds a public kit file: the 1,242-byte kit
	// in base64 and its headers take about 1.9 KiB.
	MaxPublicFileSize = 4 << 10
)

// publicHeaders returns the headers of k's public file.
func (k *Kit) publicHeaders() map[string]string {
	return map[string]string{
		"Kit":       k.ID,
		"Threshold": strconv.Itoa(k.Threshold),
		"Shares":    strconv.Itoa(k.Shares),
		"Created":   k.Created.UTC().Format(time.RFC3339),
	}
}

// MarshalPublic encodes the kit as a public kit file, the text
// `keyward recovery init --fleet` writes and hosts are configured with.
func (k *Kit) MarshalPublic() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: publicFileType, Headers: k.publicHeaders(), Bytes: k.Marshal()})
}

// ParsePublic decodes a public kit file as [Kit.MarshalPublic] writes it.
// It accepts whitespace around the block and nothing else; the headers
// must be exactly those MarshalPublic writes and agree with the kit. On
// failure it returns nil and a *[ParseError].
func ParsePublic(b []byte) (*Kit, error) {
	if len(b) > MaxPublicFileSize {
		return nil, parseErrorf("%d bytes is larger than a public kit file (%d bytes at most)", len(b), MaxPublicFileSize)
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN "+publicFileType+"-----")) {
		return nil, parseErrorf("not a public kit file: it must start with -----BEGIN %s-----", publicFileType)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil || block.Type != publicFileType {
		return nil, parseErrorf("the %s block is malformed or not closed", publicFileType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, parseErrorf("text after the end of the %s block", publicFileType)
	}
	k, err := ParseKit(block.Bytes)
	if err != nil {
		return nil, err
	}
	want := k.publicHeaders()
	if len(block.Headers) != len(want) {
		return nil, parseErrorf("%d headers, want %d (Created, Kit, Shares, Threshold)", len(block.Headers), len(want))
	}
	for _, name := range []string{"Created", "Kit", "Shares", "Threshold"} {
		v := want[name]
		got, ok := block.Headers[name]
		if !ok {
			return nil, parseErrorf("no %s header", name)
		}
		if got != v {
			return nil, parseErrorf("header %s is %q, and the kit says %q: the file was edited", name, got, v)
		}
	}
	return k, nil
}
