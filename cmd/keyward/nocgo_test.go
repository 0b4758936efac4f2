package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/fleet"
)

// TestSealWithoutCgo builds keyward with CGO_ENABLED=0, as a workstation
// with no C toolchain would, and seals with it: a provisioner key file
// works, a key in a token is refused with what to do instead.
func TestSealWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keyward without cgo; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "keyward")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-buildvcs=false", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Stdin = dir, strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "KEYWARD_CONFIG="+filepath.Join(dir, "none.toml"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	seed := make([]byte, fleet.SeedSize)
	rand.Read(seed)
	key, err := fleet.NewImportKey(seed, [fleet.HostIDSize]byte{1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "h1.recipient"), key.Recipient("h1", "pkcs11:k").Marshal(), 0o644)
	if out, err := run("", "provisioner", "new", "--out", "prov.key"); err != nil {
		t.Fatalf("provisioner new: %v\n%s", err, out)
	}
	if out, err := run("no-cgo-value\n", "seal", "--key", "prov.key", "--to", "h1.recipient", "--out", "out", "a/b"); err != nil {
		t.Fatalf("seal: %v\n%s", err, out)
	}
	b, err := store.ReadBundleFile(filepath.Join(dir, "out", "h1", "a+b.kwb"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := key.Open(b, []*fleet.ProvisionerKey{b.Provisioner}); err != nil || !bytes.Equal(v, []byte("no-cgo-value")) {
		t.Fatalf("the bundle opens to %q, %v", v, err)
	}
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("1234\n"), 0o600)
	out, err := run("v\n", "seal", "--pkcs11", "pkcs11:token=t;object=o?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:"+pinFile,
		"--to", "h1.recipient", "a/b")
	if err == nil || !strings.Contains(out, "without cgo") || !strings.Contains(out, "sign with a key file (--key)") {
		t.Fatalf("seal --pkcs11 without cgo = %v\n%s; want a refusal that names cgo and --key", err, out)
	}
}
