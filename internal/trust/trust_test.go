package trust_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/trust"
)

// tree makes dir/a/b/file with the given modes and returns the file path.
func tree(t *testing.T, aMode, bMode, fileMode os.FileMode) string {
	t.Helper()
	top := t.TempDir()
	a := filepath.Join(top, "a")
	b := filepath.Join(a, "b")
	f := filepath.Join(b, "file")
	if err := os.MkdirAll(b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]os.FileMode{a: aMode, b: bMode, f: fileMode} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name             string
		a, b, file       os.FileMode
		mode             trust.Mode
		wantErr, wantFix string
	}{
		{name: "public file", a: 0o755, b: 0o755, file: 0o644, mode: trust.Public},
		{name: "private file", a: 0o755, b: 0o700, file: 0o600, mode: trust.Private},
		{name: "group-writable file", a: 0o755, b: 0o755, file: 0o664, mode: trust.Public,
			wantErr: "is writable by group or others (mode 0664)", wantFix: "chmod go-w"},
		{name: "private file group-readable", a: 0o755, b: 0o755, file: 0o640, mode: trust.Private},
		{name: "private file readable", a: 0o755, b: 0o755, file: 0o604, mode: trust.Private,
			wantErr: "is accessible to other users (mode 0604)", wantFix: "chmod 0600"},
		{name: "private file group-writable", a: 0o755, b: 0o755, file: 0o660, mode: trust.Private,
			wantErr: "is accessible to other users (mode 0660)", wantFix: "chmod 0600"},
		{name: "writable parent", a: 0o755, b: 0o777, file: 0o644, mode: trust.Public,
			wantErr: "/a/b is writable by group or others (mode 0777)", wantFix: "chmod go-w"},
		{name: "sticky parent", a: 0o755, b: 0o777 | os.ModeSticky, file: 0o644, mode: trust.Public,
			wantErr: "/a/b is writable by group or others", wantFix: "chmod go-w"},
		{name: "sticky ancestor", a: 0o777 | os.ModeSticky, b: 0o755, file: 0o644, mode: trust.Public},
		{name: "writable ancestor", a: 0o775, b: 0o755, file: 0o644, mode: trust.Public,
			wantErr: "/a is writable by group or others (mode 0775)", wantFix: "chmod go-w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tree(t, tc.a, tc.b, tc.file)
			err := trust.Check("test file", f, tc.mode)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.wantFix) {
				t.Fatalf("Check() = %v, want an error containing %q and %q", err, tc.wantErr, tc.wantFix)
			}
		})
	}
}

func TestCheckSymlinks(t *testing.T) {
	good := tree(t, 0o755, 0o755, 0o644)
	bad := tree(t, 0o755, 0o777, 0o644)

	// A trusted link to a file in a directory others may write.
	link := filepath.Join(filepath.Dir(good), "link")
	if err := os.Symlink(bad, link); err != nil {
		t.Fatal(err)
	}
	if err := trust.Check("test file", link, trust.Public); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Check(link to a file in a writable directory) = %v, want a refusal", err)
	}

	// A link others could repoint, to a trusted file.
	link2 := filepath.Join(filepath.Dir(bad), "link")
	if err := os.Symlink(good, link2); err != nil {
		t.Fatal(err)
	}
	if err := trust.Check("test file", link2, trust.Public); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Check(link in a writable directory) = %v, want a refusal", err)
	}
}

func TestCheckOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another uid")
	}
	for _, which := range []string{"file", "parent", "ancestor"} {
		t.Run(which, func(t *testing.T) {
			f := tree(t, 0o755, 0o755, 0o644)
			p := map[string]string{"file": f, "parent": filepath.Dir(f), "ancestor": filepath.Dir(filepath.Dir(f))}[which]
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			err := trust.Check("test file", f, trust.Public)
			if !errors.Is(err, trust.ErrOwner) || !strings.Contains(err.Error(), "chown root "+p) {
				t.Fatalf("Check() with %s owned by uid 4242 = %v, want ErrOwner naming chown root %s", which, err, p)
			}
		})
	}
}

func TestCheckMissing(t *testing.T) {
	if err := trust.Check("test file", filepath.Join(t.TempDir(), "none"), trust.Public); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check(missing) = %v, want ErrNotExist", err)
	}
	if err := trust.Check("test file", t.TempDir(), trust.Public); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Check(directory) = %v, want not a regular file", err)
	}
}
