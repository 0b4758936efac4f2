package testenv

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// DefaultSoftHSMLabel is the label of the token SoftHSM creates.
const DefaultSoftHSMLabel = "keyward-test"

// softHSMModules are the places distributions install the SoftHSM
// module; KEYWARD_SOFTHSM_MODULE, when set, comes first.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/" + map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH] + "-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// A SoftHSMToken is an initialised SoftHSM token in a test's temporary
// directory, with a random user PIN made for that test.
type SoftHSMToken struct {
	// ModulePath is the SoftHSM PKCS #11 module.
	ModulePath string
	// ConfPath is the softhsm2.conf that SOFTHSM2_CONF names.
	ConfPath string
	// TokenDir is the directory holding the token files.
	TokenDir string
	// Label is the token label.
	Label string
	// PIN is the user PIN: 8 random digits.
	PIN []byte
	// PINFile holds PIN and a newline, mode 0600.
	PINFile string
}

// SoftHSM creates a SoftHSM token labelled [DefaultSoftHSMLabel] in
// t.TempDir(), with its own softhsm2.conf, and points SOFTHSM2_CONF at it
// with t.Setenv. SoftHSM reads SOFTHSM2_CONF when the module is
// initialised, so every Token on an earlier token must be closed first.
// It skips the test when SoftHSM is missing (see [Require]).
func SoftHSM(t testing.TB) *SoftHSMToken {
	t.Helper()
	util := Require(t, "softhsm2-util")
	module := softHSMModule()
	if module == "" {
		Require(t, softHSMModules[0])
		return nil
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	base := &SoftHSMToken{ModulePath: module, ConfPath: conf, TokenDir: tokens}
	return base.initToken(t, util, DefaultSoftHSMLabel, filepath.Join(dir, "pin"))
}

// AddToken initialises another token with its own random PIN in the same
// token directory, so that both are reachable through one module
// initialisation.
func (s *SoftHSMToken) AddToken(t testing.TB, label string) *SoftHSMToken {
	t.Helper()
	util := Require(t, "softhsm2-util")
	return s.initToken(t, util, label, filepath.Join(filepath.Dir(s.ConfPath), "pin-"+label))
}

// initToken runs softhsm2-util --init-token and writes the PIN file.
func (s *SoftHSMToken) initToken(t testing.TB, util, label, pinFile string) *SoftHSMToken {
	t.Helper()
	pin := randomDigits(t, 8)
	soPIN := randomDigits(t, 12)
	// softhsm2-util takes PINs only on its command line or from a
	// terminal; these are throwaway PINs of a throwaway token.
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.ConfPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token --label %s: %v\n%s", label, err, out)
	}
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &SoftHSMToken{
		ModulePath: s.ModulePath,
		ConfPath:   s.ConfPath,
		TokenDir:   s.TokenDir,
		Label:      label,
		PIN:        []byte(pin),
		PINFile:    pinFile,
	}
}

// URI returns a PKCS #11 URI for the key labelled object on this token,
// e.g. pkcs11:token=keyward-test;object=root?module-path=...&pin-source=file:...
func (s *SoftHSMToken) URI(object string) string {
	return "pkcs11:token=" + escape(s.Label, "") + ";object=" + escape(object, "") +
		"?module-path=" + escape(s.ModulePath, "/") + "&pin-source=file:" + escape(s.PINFile, "/")
}

// softHSMModule returns the first SoftHSM module that exists, or "".
func softHSMModule() string {
	candidates := softHSMModules
	if env := os.Getenv("KEYWARD_SOFTHSM_MODULE"); env != "" {
		candidates = append([]string{env}, candidates...)
	}
	for _, p := range candidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// randomDigits returns n random decimal digits.
func randomDigits(t testing.TB, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}

// escape percent-encodes s for a PKCS #11 URI, keeping unreserved
// characters and those in keep.
func escape(s, keep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~"+keep, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
