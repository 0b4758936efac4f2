package pin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keyward/keyward/internal/tty"
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
		fileOwner  int    // chown the configured file (root only)
		stdin      string // piped with --pin-stdin; "" for none
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
		{name: "max length", s: setup{file: strings.Repeat("7", MaxLen) + "\r\n"}, want: strings.Repeat("7", MaxLen)},
		{name: "terminal", s: setup{terminal: true, typed: ttyPIN + "\n"}, want: ttyPIN},
		{name: "stdin", s: setup{stdin: ttyPIN + "\n", terminal: true, typed: "other\n"}, want: ttyPIN},
		{name: "file before stdin", s: setup{file: filePIN, stdin: ttyPIN}, want: filePIN},
		{name: "stdin two lines", s: setup{stdin: ttyPIN + "\nmore\n"}, wantErr: "more than one line"},
		{name: "stdin too long", s: setup{stdin: strings.Repeat("7", 1000)}, wantErr: "longer than 256"},
		{name: "world readable", s: setup{file: filePIN, fileMode: 0o644}, wantErr: "chmod 0600"},
		{name: "world writable", s: setup{file: filePIN, fileMode: 0o602}, wantErr: "chmod 0600"},
		{name: "world readable uri", s: setup{uri: uriPIN, uriMode: 0o604}, wantErr: "chmod 0600"},
		{name: "empty", s: setup{emptyFile: true}, wantErr: "empty"},
		{name: "only newline", s: setup{file: "\n"}, wantErr: "empty"},
		{name: "two newlines", s: setup{file: filePIN + "\n\n"}, wantErr: "more than one line"},
		{name: "two lines", s: setup{file: filePIN + "\n" + filePIN + "\n"}, wantErr: "more than one line"},
		{name: "nul", s: setup{file: filePIN + "\x00"}, wantErr: "more than one line"},
		{name: "too long", s: setup{file: strings.Repeat("7", MaxLen+1)}, wantErr: "longer than 256"},
		{name: "far too long", s: setup{file: strings.Repeat("7", 10000)}, wantErr: "longer than 256"},
		{name: "missing file does not fall through", s: setup{filePath: "/nonexistent/pin", terminal: true, typed: ttyPIN + "\n"}, wantErr: "no such file"},
		{name: "directory", s: setup{filePath: "/"}, wantErr: "not a regular file"},
		{name: "fifo", s: setup{filePath: "fifo"}, wantErr: "not a regular file"},
		{name: "empty terminal line", s: setup{terminal: true, typed: "\n"}, wantErr: "empty"},
		{name: "nothing typed", s: setup{terminal: true, typed: ""}, wantErr: "is empty"},
		{name: "no source", s: setup{}, is: ErrNone, wantErr: "systemd credential"},
		{name: "bad credential name", s: setup{credName: "../pin"}, wantErr: "plain file name"},
		{name: "file of another user", s: setup{file: filePIN, fileOwner: 4242}, wantErr: "chown root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("CREDENTIALS_DIRECTORY", "")
			src := Source{Credential: tc.s.credName, For: `token "t"`}
			if src.Credential == "" {
				src.Credential = "keyward-pin"
			}
			if tc.s.cred != "" || tc.s.credDirSet {
				creds := filepath.Join(dir, "credentials")
				if err := os.Mkdir(creds, 0o700); err != nil {
					t.Fatal(err)
				}
				t.Setenv("CREDENTIALS_DIRECTORY", creds)
				if tc.s.cred != "" {
					writeFile(t, creds, src.Credential, tc.s.cred, 0o400)
				}
			}
			mode := func(m os.FileMode) os.FileMode {
				if m == 0 {
					return 0o600
				}
				return m
			}
			if tc.s.uri != "" {
				src.URIFile = writeFile(t, dir, "uri-pin", tc.s.uri, mode(tc.s.uriMode))
			}
			if tc.s.stdin != "" {
				src.Stdin = strings.NewReader(tc.s.stdin)
			}
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
			if tc.s.fileOwner != 0 {
				if os.Geteuid() != 0 {
					t.Skip("needs root to give a file to another uid")
				}
				if err := os.Chown(src.File, tc.s.fileOwner, tc.s.fileOwner); err != nil {
					t.Fatal(err)
				}
			}
			out := setTerminal(t, tc.s.terminal, tc.s.typed)

			pin, err := Read(src)
			if tc.want != "" {
				if err != nil || string(pin) != tc.want {
					t.Fatalf("Read() = %q, %v, want %q", pin, err, tc.want)
				}
				if tc.want == ttyPIN && tc.s.stdin == "" && !strings.Contains(out.String(), `Enter the PIN of token "t"`) {
					t.Errorf("prompt = %q, want it to name the token", out)
				}
				return
			}
			if tc.wantErr == "" && tc.is == nil {
				if err != nil {
					t.Fatalf("Read() = %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Read() = %q, nil, want error containing %q", pin, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Read() = %v, want error containing %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Read() = %v, want errors.Is %v", err, tc.is)
			}
			for _, p := range []string{credPIN, uriPIN, filePIN, ttyPIN, "7777777777"} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("Read() error %q contains the PIN", err)
				}
			}
		})
	}
}

// fakeTerminal is typed input plus a record of what was written.
type fakeTerminal struct {
	io.Reader
	out *bytes.Buffer
}

func (f fakeTerminal) Write(b []byte) (int, error) { return f.out.Write(b) }

// setTerminal makes Read see a terminal on which input is typed, and
// returns what Read writes to it. With present false, Read sees none.
func setTerminal(t testing.TB, present bool, input string) *bytes.Buffer {
	old := terminal
	out := new(bytes.Buffer)
	terminal = func(text string) ([]byte, bool, error) {
		if !present {
			return nil, false, nil
		}
		line, err := tty.Prompt(fakeTerminal{Reader: bytes.NewReader([]byte(input)), out: out}, text, MaxLen)
		if err != nil {
			return nil, false, err
		}
		defer clear(line)
		pin, err := check(line)
		if err != nil {
			return nil, false, fmt.Errorf("the PIN entered %w", err)
		}
		return pin, true, nil
	}
	t.Cleanup(func() { terminal = old })
	return out
}
