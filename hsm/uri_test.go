package hsm_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/hsm"
)

func TestParseURI(t *testing.T) {
	type want struct {
		token, manufacturer, serial, model, object, typ string
		id                                              []byte
		slot                                            uint64
		hasSlot                                         bool
		moduleName, modulePath, pinFile                 string
		canonical                                       string
	}
	for _, tc := range []struct {
		in   string
		want want
	}{
		{"pkcs11:", want{canonical: "pkcs11:"}},
		{"PKCS11:token=prod", want{token: "prod", canonical: "pkcs11:token=prod"}},
		{
			"pkcs11:token=keyward-test;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin",
			want{token: "keyward-test", object: "root", modulePath: "/usr/lib/softhsm/libsofthsm2.so", pinFile: "/etc/keyward/pin",
				canonical: "pkcs11:token=keyward-test;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin"},
		},
		{
			"pkcs11:object=root;token=My%20Token;serial=DECC0401648;manufacturer=Acme%2c%20Inc.;model=HSM-1;type=secret-key",
			want{token: "My Token", serial: "DECC0401648", manufacturer: "Acme, Inc.", model: "HSM-1", object: "root", typ: "secret-key",
				canonical: "pkcs11:token=My%20Token;manufacturer=Acme%2C%20Inc.;serial=DECC0401648;model=HSM-1;object=root;type=secret-key"},
		},
		{
			"pkcs11:id=%00%01%fe%FF;object=a&b",
			want{id: []byte{0, 1, 0xfe, 0xff}, object: "a&b", canonical: "pkcs11:object=a%26b;id=%00%01%FE%FF"},
		},
		{"pkcs11:id=ab", want{id: []byte("ab"), canonical: "pkcs11:id=%61%62"}},
		{"pkcs11:slot-id=007", want{slot: 7, hasSlot: true, canonical: "pkcs11:slot-id=7"}},
		{"pkcs11:token=%E2%82%AC", want{token: "€", canonical: "pkcs11:token=%E2%82%AC"}},
		{"pkcs11:object=x?module-name=softhsm2", want{object: "x", moduleName: "softhsm2", canonical: "pkcs11:object=x?module-name=softhsm2"}},
		{"pkcs11:?pin-source=/run/pin", want{pinFile: "/run/pin", canonical: "pkcs11:?pin-source=file:/run/pin"}},
		{"pkcs11:?pin-source=file:///run/pin", want{pinFile: "/run/pin", canonical: "pkcs11:?pin-source=file:/run/pin"}},
		{"pkcs11:?pin-source=//run/pin", want{pinFile: "//run/pin", canonical: "pkcs11:?pin-source=file:////run/pin"}},
		{"pkcs11:?module-path=/opt/my%20hsm/lib.so", want{modulePath: "/opt/my hsm/lib.so", canonical: "pkcs11:?module-path=/opt/my%20hsm/lib.so"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := hsm.ParseURI(tc.in)
			if err != nil {
				t.Fatalf("ParseURI(%q) = %v, want success", tc.in, err)
			}
			slot, hasSlot := u.SlotID()
			got := want{u.Token(), u.Manufacturer(), u.Serial(), u.Model(), u.Object(), u.Type(), u.ID(), slot, hasSlot,
				u.ModuleName(), "", u.PINFile(), u.String()}
			if u.ModuleName() == "" {
				if got.modulePath, err = u.ModulePath(); err != nil && tc.want.modulePath != "" {
					t.Errorf("ModulePath() = %v", err)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseURI(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			again, err := hsm.ParseURI(u.String())
			if err != nil || !reflect.DeepEqual(again, u) {
				t.Errorf("ParseURI(%q) = %v, %v; want the URI parsed from %q", u.String(), again, err, tc.in)
			}
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"pin-value", "pkcs11:token=a?pin-value=s3cr3t-PIN", []string{"pin-value is refused", "pin-source=file:", "systemd credential"}},
		{"pin-value in path", "pkcs11:pin-value=s3cr3t-PIN", []string{"pin-value is refused"}},
		{"pin-value bad chars", "pkcs11:?pin-value=s3cr3t-PIN%zz\x01", []string{"pin-value is refused"}},
		{"unknown path", "pkcs11:label=x", []string{`"label" is not supported`, "token, manufacturer, serial, model, slot-id, object, type, id"}},
		{"unknown query", "pkcs11:?module=x", []string{`"module" is not supported`, "module-name, module-path, pin-source"}},
		{"vendor", "pkcs11:x-vendor=1", []string{"not supported"}},
		{"query attr in path", "pkcs11:module-path=/x.so", []string{"belongs in the query"}},
		{"path attr in query", "pkcs11:?token=x", []string{"belongs in the path"}},
		{"repeated", "pkcs11:token=a;token=b", []string{"token appears more than once"}},
		{"repeated query", "pkcs11:?module-path=/a&module-path=/b", []string{"more than once"}},
		{"no value", "pkcs11:token", []string{"token has no value"}},
		{"empty value", "pkcs11:token=", []string{"token has an empty value"}},
		{"empty attribute", "pkcs11:token=a;;object=b", []string{"empty path attribute"}},
		{"empty query", "pkcs11:token=a?", []string{"empty query"}},
		{"scheme", "pkcs12:token=a", []string{`must start with "pkcs11:"`}},
		{"no scheme", "token=a", []string{`must start with "pkcs11:"`}},
		{"bad escape", "pkcs11:token=a%zz", []string{"invalid percent-encoding"}},
		{"short escape", "pkcs11:token=a%2", []string{"truncated percent-encoding"}},
		{"space", "pkcs11:token=a b", []string{"must be percent-encoded"}},
		{"slash in path", "pkcs11:object=a/b", []string{`'/' must be percent-encoded`}},
		{"control", "pkcs11:object=a\x00", []string{"must be percent-encoded"}},
		{"nul decoded", "pkcs11:object=a%00", []string{"not valid UTF-8 text"}},
		{"bad utf-8", "pkcs11:token=%ff", []string{"not valid UTF-8 text"}},
		{"long token", "pkcs11:token=" + strings.Repeat("a", 33), []string{"at most 32"}},
		{"long serial", "pkcs11:serial=" + strings.Repeat("1", 17), []string{"at most 16"}},
		{"type", "pkcs11:type=key", []string{"type must be one of"}},
		{"slot-id", "pkcs11:slot-id=-1", []string{"decimal number"}},
		{"slot-id range", "pkcs11:slot-id=99999999999999999999", []string{"out of range"}},
		{"relative module-path", "pkcs11:?module-path=lib.so", []string{"absolute path"}},
		{"module-name with dir", "pkcs11:?module-name=../lib", []string{"without a directory"}},
		{"pin-source command", "pkcs11:?pin-source=%7C/bin/get-pin", []string{"commands", "not supported"}},
		{"pin-source relative", "pkcs11:?pin-source=file:pin", []string{"absolute path"}},
		{"pin-source host", "pkcs11:?pin-source=file://host/pin", []string{"local file"}},
		{"too long", "pkcs11:object=" + strings.Repeat("a", hsm.MaxURILen), []string{"longer than the limit"}},
		{"canonical too long", "pkcs11:object=" + strings.Repeat("a", 1000) + ";id=" + strings.Repeat("a", 1000) + "?module-path=/" + strings.Repeat("a", 100), []string{"canonical form"}},
		{"fragment", "pkcs11:token=a#b", []string{"must be percent-encoded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := hsm.ParseURI(tc.in)
			if err == nil {
				t.Fatalf("ParseURI(%q) = %v, want error", tc.in, u)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseURI(%q) = %v, want error containing %q", tc.in, err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("ParseURI error %q contains the PIN", err)
			}
			if !strings.HasPrefix(err.Error(), "hsm: ") {
				t.Errorf("ParseURI error %q lacks the hsm: prefix", err)
			}
		})
	}
}

func TestURIIDIsCopied(t *testing.T) {
	u, err := hsm.ParseURI("pkcs11:id=%01%02")
	if err != nil {
		t.Fatal(err)
	}
	u.ID()[0] = 9
	if got := u.ID(); !bytes.Equal(got, []byte{1, 2}) {
		t.Errorf("ID() after changing a returned copy = %x, want 0102", got)
	}
}

func TestModulePath(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"libvendor.so", "p11-kit-trust.so", "exact.so.1"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "libdir.so"), 0o755); err != nil {
		t.Fatal(err)
	}
	hsm.SetModuleDirs(t, []string{filepath.Join(dir, "missing"), dir})
	for _, tc := range []struct {
		in, want string
		wantErr  error
	}{
		{"pkcs11:?module-path=/opt/hsm/lib.so", "/opt/hsm/lib.so", nil},
		{"pkcs11:?module-name=vendor", filepath.Join(dir, "libvendor.so"), nil},
		{"pkcs11:?module-name=p11-kit-trust", filepath.Join(dir, "p11-kit-trust.so"), nil},
		{"pkcs11:?module-name=exact.so.1", filepath.Join(dir, "exact.so.1"), nil},
		{"pkcs11:?module-name=dir", "", hsm.ErrModuleNotFound},
		{"pkcs11:?module-name=absent", "", hsm.ErrModuleNotFound},
		{"pkcs11:token=a", "", hsm.ErrModuleNotFound},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := hsm.ParseURI(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := u.ModulePath()
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("ModulePath() = %q, %v, want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:",
		"pkcs11:token=keyward-test;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin",
		"pkcs11:token=My%20Token;manufacturer=Acme;serial=123;model=M;slot-id=4;object=o;type=secret-key;id=%01%02",
		"pkcs11:?module-name=softhsm2&pin-source=//x",
		"pkcs11:?pin-value=1234",
		"pkcs11:id=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := hsm.ParseURI(s)
		if err != nil {
			if u != nil {
				t.Fatalf("ParseURI(%q) = %v, %v; want nil on error", s, u, err)
			}
			return
		}
		c := u.String()
		again, err := hsm.ParseURI(c)
		if err != nil {
			t.Fatalf("ParseURI(%q) = %v; canonical form of %q does not parse", c, err, s)
		}
		if !reflect.DeepEqual(again, u) {
			t.Fatalf("ParseURI(%q) = %#v, want %#v (from %q)", c, again, u, s)
		}
		if again.String() != c {
			t.Fatalf("String() = %q, want %q", again.String(), c)
		}
	})
}
