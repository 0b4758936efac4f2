package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func testEnvelope() *Envelope {
	e := &Envelope{
		Header: Header{
			Name:       "binance/mm-prod",
			Version:    3,
			Created:    time.Unix(1790000000, 0).UTC(),
			Expires:    time.Unix(1800000000, 0).UTC(),
			PrevUntil:  time.Unix(1790086400, 0).UTC(),
			KeyID:      "pkcs11:abc/keyward-kek/01",
			Host:       DeriveHostID("0123456789abcdef0123456789abcdef"),
			WrappedKey: bytes.Repeat([]byte{7}, 61),
		},
		Ciphertext: bytes.Repeat([]byte{9}, 40),
	}
	e.Nonce[0] = 1
	return e
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := testEnvelope()
	b := e.Marshal()
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(e)) = %v", err)
	}
	if !bytes.Equal(got.Marshal(), b) {
		t.Errorf("Marshal(Parse(b)) != b")
	}
	if got.Name != e.Name || got.Version != e.Version || !got.Created.Equal(e.Created) ||
		!got.Expires.Equal(e.Expires) || !got.PrevUntil.Equal(e.PrevUntil) || got.KeyID != e.KeyID || got.Host != e.Host {
		t.Errorf("Parse() header = %+v, want %+v", got.Header, e.Header)
	}
	if got.Backend() != "pkcs11" {
		t.Errorf("Backend() = %q, want pkcs11", got.Backend())
	}

	e.Expires = time.Time{}
	got, err = Parse(e.Marshal())
	if err != nil || !got.Expires.IsZero() {
		t.Errorf("Parse(no expiry) = %v, %v; want zero expiry", got, err)
	}

	// An exchange credential: format v2, its attributes in the header.
	e.Credential = &CredentialInfo{Exchange: "binance", KeyID: "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", KeyType: "hmac"}
	b = e.Marshal()
	if b[7] != 2 {
		t.Errorf("format byte of a credential = %d, want 2", b[7])
	}
	got, err = Parse(b)
	if err != nil || got.Credential == nil || *got.Credential != *e.Credential || !bytes.Equal(got.Marshal(), b) {
		t.Errorf("Parse(credential) = %+v, %v; want the credential back, re-encoding to the same bytes", got, err)
	}
}

func TestParseRejects(t *testing.T) {
	good := testEnvelope().Marshal()
	mutate := func(f func(e *Envelope)) []byte {
		e := testEnvelope()
		f(e)
		return e.Marshal()
	}
	tests := map[string][]byte{
		"empty":                        nil,
		"trailing byte":                append(bytes.Clone(good), 0),
		"bad magic":                    append([]byte("KEYWARX\x01"), good[8:]...),
		"format 2 header of a v1 body": append([]byte("KEYWARD\x02"), good[8:]...),
		"format 3":                     append([]byte("KEYWARD\x03"), good[8:]...),
		"bad exchange":                 mutate(func(e *Envelope) { e.Credential = &CredentialInfo{Exchange: "Bin ance", KeyID: "k", KeyType: "hmac"} }),
		"empty key id":                 mutate(func(e *Envelope) { e.Credential = &CredentialInfo{Exchange: "binance", KeyType: "hmac"} }),
		"key id newline":               mutate(func(e *Envelope) { e.Credential = &CredentialInfo{Exchange: "binance", KeyID: "a\nb", KeyType: "hmac"} }),
		"bad name":                     mutate(func(e *Envelope) { e.Name = "a/../b" }),
		"version 0":                    mutate(func(e *Envelope) { e.Version = 0 }),
		"no key id":                    mutate(func(e *Envelope) { e.KeyID = "" }),
		"key id space":                 mutate(func(e *Envelope) { e.KeyID = "a b" }),
		"no wrapped key":               mutate(func(e *Envelope) { e.WrappedKey = nil }),
		"short ct":                     mutate(func(e *Envelope) { e.Ciphertext = e.Ciphertext[:15] }),
		"created 0":                    mutate(func(e *Envelope) { e.Created = time.Unix(0, 0) }),
	}
	for i := 1; i < len(good); i++ {
		tests[fmt.Sprintf("truncated at %d", i)] = good[:i]
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			e, err := Parse(b)
			var pe *ParseError
			if e != nil || !errors.As(err, &pe) {
				t.Errorf("Parse(%x) = %v, %v; want nil, *ParseError", b, e, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(testEnvelope().Marshal())
	e := testEnvelope()
	e.Expires = time.Time{}
	f.Add(e.Marshal())
	e.Credential = &CredentialInfo{Exchange: "okx", KeyID: "key-1", KeyType: "hmac"}
	f.Add(e.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			var pe *ParseError
			if e != nil || !errors.As(err, &pe) {
				t.Fatalf("Parse() = %v, %v; want nil, *ParseError", e, err)
			}
			return
		}
		if got := e.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("Marshal(Parse(b)) = %x, want %x", got, b)
		}
	})
}
