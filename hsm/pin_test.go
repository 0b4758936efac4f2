package hsm_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keyward/keyward/hsm"
)

// The PINs the tests write; no error may contain them.
const (
	credPIN = "cred-4711"
	uriPIN  = "uri-0815"
	filePIN = "file-1234"
	ttyPIN  = "tty-9876"
)

func TestReadPIN(t *testing.T) {
	writeFile := func(t *testing.T, dir, name, body string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // beyond the umask
			t.Fatal(err)
		}
		return p
	}
	type setup struct {
		cred       string // credential file body; "" for none
		credName   string // PINSource.Credential
		credDirSet bool   // set CREDENTIALS_DIRECTORY even without a credential
		uri        string // pin file body named by the URI; "" for none
		uriMode    os.FileMode
		file       string // configured pin file body; "" for none
		emptyFile  bool   // configure an empty pin file
		fileMode   os.FileMode
		filePath   string // overrides the configured path
		terminal   bool
		typed      string
	}
	for _, tc := range []struct {
		name    string
		s       setup
		want    string
		wantErr string
		is      error
	}{
		{name: "credential", s: setup{cred: credPIN + "\n", uri: uriPIN, file: filePIN}, want: credPIN},
		{name: "named credential", s: setup{cred: credPIN, credName: "hsm-pin"}, want: credPIN},
		{name: "credential dir without credential", s: setup{credDirSet: true, uri: uriPIN + "\n"}, want: uriPIN},
		{name: "uri before file", s: setup{uri: uriPIN + "\n", file: filePIN}, want: uriPIN},
		{name: "file", s: setup{file: filePIN + "\n"}, want: filePIN},
		{name: "file before terminal", s: setup{file: filePIN, terminal: true, typed: ttyPIN + "\n"}, want: filePIN},
		{name: "crlf", s: setup{file: filePIN + "\r\n"}, want: filePIN},
		{name: "no newline", s: setup{file: filePIN}, want: filePIN},
		{name: "group readable", s: setup{file: filePIN, fileMode: 0o640}, want: filePIN},
		{name: "max length", s: setup{file: strings.Repeat("7", hsm.MaxPINLen) + "\r\n"}, want: strings.Repeat("7", hsm.MaxPINLen)},
		{name: "terminal", s: setup{terminal: true, typed: ttyPIN + "\n"}, want: ttyPIN},
		{name: "world readable", s: setup{file: filePIN, fileMode: 0o644}, wantErr: "chmod 0600"},
		{name: "world writable", s: setup{file: filePIN, fileMode: 0o602}, wantErr: "chmod 0600"},
		{name: "world readable uri", s: setup{uri: uriPIN, uriMode: 0o604}, wantErr: "chmod 0600"},
		{name: "empty", s: setup{emptyFile: true}, wantErr: "empty"},
		{name: "only newline", s: setup{file: "\n"}, wantErr: "empty"},
		{name: "two newlines", s: setup{file: filePIN + "\n\n"}, wantErr: "more than one line"},
		{name: "two lines", s: setup{file: filePIN + "\n" + filePIN + "\n"}, wantErr: "more than one line"},
		{name: "nul", s: setup{file: filePIN + "\x00"}, wantErr: "more than one line"},
		{name: "too long", s: setup{file: strings.Repeat("7", hsm.MaxPINLen+1)}, wantErr: "longer than 256"},
		{name: "far too long", s: setup{file: strings.Repeat("7", 10000)}, wantErr: "longer than 256"},
		{name: "missing file does not fall through", s: setup{filePath: "/nonexistent/pin", terminal: true, typed: ttyPIN + "\n"}, wantErr: "no such file"},
		{name: "directory", s: setup{filePath: "/"}, wantErr: "not a regular file"},
		{name: "fifo", s: setup{filePath: "fifo"}, wantErr: "not a regular file"},
		{name: "empty terminal line", s: setup{terminal: true, typed: "\n"}, wantErr: "empty"},
		{name: "nothing typed", s: setup{terminal: true, typed: ""}, wantErr: "is empty"},
		{name: "no source", s: setup{}, is: hsm.ErrNoPIN, wantErr: "systemd credential"},
		{name: "bad credential name", s: setup{credName: "../pin"}, wantErr: "plain file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("CREDENTIALS_DIRECTORY", "")
			src := hsm.PINSource{Credential: tc.s.credName}
			if tc.s.cred != "" || tc.s.credDirSet {
				creds := filepath.Join(dir, "credentials")
				if err := os.Mkdir(creds, 0o700); err != nil {
					t.Fatal(err)
				}
				t.Setenv("CREDENTIALS_DIRECTORY", creds)
				if tc.s.cred != "" {
					name := tc.s.credName
					if name == "" {
						name = hsm.DefaultPINCredential
					}
					writeFile(t, creds, name, tc.s.cred, 0o400)
				}
			}
			mode := func(m os.FileMode) os.FileMode {
				if m == 0 {
					return 0o600
				}
				return m
			}
			uri := "pkcs11:token=t;object=o"
			if tc.s.uri != "" {
				uri += "?pin-source=file:" + writeFile(t, dir, "uri-pin", tc.s.uri, mode(tc.s.uriMode))
			}
			u, err := hsm.ParseURI(uri)
			if err != nil {
				t.Fatal(err)
			}
			src.URI = u
			switch {
			case tc.s.filePath == "fifo":
				src.File = filepath.Join(dir, "fifo")
				if err := syscall.Mkfifo(src.File, 0o600); err != nil {
					t.Fatal(err)
				}
			case tc.s.filePath != "":
				src.File = tc.s.filePath
			case tc.s.file != "" || tc.s.emptyFile:
				src.File = writeFile(t, dir, "pin", tc.s.file, mode(tc.s.fileMode))
			}
			out := hsm.SetTerminal(t, tc.s.terminal, tc.s.typed)

			pin, err := hsm.ReadPIN(src)
			if tc.want != "" {
				if err != nil || string(pin) != tc.want {
					t.Fatalf("ReadPIN() = %q, %v, want %q", pin, err, tc.want)
				}
				if tc.want == ttyPIN && !strings.Contains(out.String(), `Enter the PIN of token "t"`) {
					t.Errorf("prompt = %q, want it to name the token", out)
				}
				return
			}
			if tc.wantErr == "" && tc.is == nil {
				if err != nil {
					t.Fatalf("ReadPIN() = %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadPIN() = %q, nil, want error containing %q", pin, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ReadPIN() = %v, want error containing %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("ReadPIN() = %v, want errors.Is %v", err, tc.is)
			}
			for _, p := range []string{credPIN, uriPIN, filePIN, ttyPIN, "7777777777"} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("ReadPIN() error %q contains the PIN", err)
				}
			}
		})
	}
}

// terminal is a fake terminal: typed input and the output written.
type terminal struct {
	io.Reader
	io.Writer
}

// TestPromptPIN checks what the PIN prompt adds to tty.Prompt (tested in
// internal/tty): a PIN is not empty and fits MaxPINLen.
func TestPromptPIN(t *testing.T) {
	for _, tc := range []struct {
		name, typed, want, wantErr string
	}{
		{name: "line", typed: "1234\n", want: "1234"},
		{name: "empty", typed: "\n", wantErr: "empty"},
		{name: "nothing", typed: "", wantErr: "is empty"},
		{name: "too long", typed: strings.Repeat("1", 300) + "\n", wantErr: "longer than 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			pin, err := hsm.PromptPIN(terminal{strings.NewReader(tc.typed), &out}, "PIN: ")
			if string(pin) != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("PromptPIN(%q) = %q, %v, want %q, %q", tc.typed, pin, err, tc.want, tc.wantErr)
			}
		})
	}
}
