package testenv

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/keyward/keyward/internal/trust"
)

//go:embed testdata/p11fault.c
var p11faultSource []byte

// Fault modes for [FaultPKCS11.Set]. A mode is one line of the shim's
// control file: "pass", "fail RV [SCOPE]" or "hang MS [SCOPE]", where
// SCOPE is "all" (every call but C_GetFunctionList and C_Finalize),
// "session" (calls that take a session handle) or "crypto"
// (cryptographic calls); see testdata/p11fault.c.
const (
	// FaultPass forwards every call.
	FaultPass = "pass"
	// FaultDeviceRemoved answers every call, C_Initialize included, with
	// CKR_DEVICE_REMOVED: the HSM is unplugged or its network is down.
	FaultDeviceRemoved = "fail 0x32 all"
	// FaultSessionInvalid answers every call that takes a session with
	// CKR_SESSION_HANDLE_INVALID: the HSM restarted behind the client.
	FaultSessionInvalid = "fail 0xb3 session"
	// FaultDeviceError answers every cryptographic call with
	// CKR_DEVICE_ERROR.
	FaultDeviceError = "fail 0x30 crypto"
)

// FaultHang returns the mode that delays every call by d before
// forwarding it: an HSM that stops answering for a while.
func FaultHang(d time.Duration) string { return fmt.Sprintf("hang %d all", d.Milliseconds()) }

// p11Functions names the functions of CK_FUNCTION_LIST (PKCS #11 v2.40)
// in order: the shim's counters are in this order.
var p11Functions = strings.Fields(`C_Initialize C_Finalize C_GetInfo C_GetFunctionList C_GetSlotList
	C_GetSlotInfo C_GetTokenInfo C_GetMechanismList C_GetMechanismInfo C_InitToken C_InitPIN C_SetPIN
	C_OpenSession C_CloseSession C_CloseAllSessions C_GetSessionInfo C_GetOperationState
	C_SetOperationState C_Login C_Logout C_CreateObject C_CopyObject C_DestroyObject C_GetObjectSize
	C_GetAttributeValue C_SetAttributeValue C_FindObjectsInit C_FindObjects C_FindObjectsFinal
	C_EncryptInit C_Encrypt C_EncryptUpdate C_EncryptFinal C_DecryptInit C_Decrypt C_DecryptUpdate
	C_DecryptFinal C_DigestInit C_Digest C_DigestUpdate C_DigestKey C_DigestFinal C_SignInit C_Sign
	C_SignUpdate C_SignFinal C_SignRecoverInit C_SignRecover C_VerifyInit C_Verify C_VerifyUpdate
	C_VerifyFinal C_VerifyRecoverInit C_VerifyRecover C_DigestEncryptUpdate C_DecryptDigestUpdate
	C_SignEncryptUpdate C_DecryptVerifyUpdate C_GenerateKey C_GenerateKeyPair C_WrapKey C_UnwrapKey
	C_DeriveKey C_SeedRandom C_GenerateRandom C_GetFunctionStatus C_CancelFunction C_WaitForSlotEvent`)

// A FaultPKCS11 is a fault-injecting PKCS #11 module for one test: a
// small C shared object, built from testdata/p11fault.c, that forwards
// every call to the SoftHSM module and, as [FaultPKCS11.Set] says, passes
// it, fails it with a chosen return code, or delays it. It stands in for
// a network HSM that drops its connection, restarts or hangs, which
// SoftHSM alone cannot do. It counts every call.
//
// Set must be called from the test's goroutine; Count from any.
type FaultPKCS11 struct {
	// ModulePath is the shim, in a directory that only the test's user
	// can write, so that keyward's module checks accept it.
	ModulePath string
	// ControlPath is the control file Set writes.
	ControlPath string

	t      testing.TB
	soft   *SoftHSMToken
	counts []byte // the shim's counters, mapped shared
}

// FaultModule builds the shim with gcc into a new directory of
// t.TempDir() (mode 0755), forwarding to soft's SoftHSM module, and
// points P11FAULT_CONTROL and P11FAULT_COUNTS at its control and counter
// files with t.Setenv (the shim reads them at C_Initialize, as SoftHSM
// reads SOFTHSM2_CONF). It starts in [FaultPass]. The PKCS #11 headers
// come from the github.com/miekg/pkcs11 module, found with `go list`.
// It skips the test when gcc is missing, or fails it when
// KEYWARD_TEST_REQUIRE_HARDWARE=1 (see [Require]).
func FaultModule(t testing.TB, soft *SoftHSMToken) *FaultPKCS11 {
	t.Helper()
	gcc := Require(t, "gcc")
	if gcc == "" {
		return nil
	}
	headers := pkcs11Headers(t)
	dir := filepath.Join(t.TempDir(), "p11fault")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "p11fault.c")
	if err := os.WriteFile(src, p11faultSource, 0o644); err != nil {
		t.Fatal(err)
	}
	f := &FaultPKCS11{
		ModulePath:  filepath.Join(dir, "libp11fault.so"),
		ControlPath: filepath.Join(dir, "control"),
		t:           t,
		soft:        soft,
	}
	cmd := exec.Command(gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
		"-I"+headers, "-DP11FAULT_TARGET="+cString(soft.ModulePath),
		"-o", f.ModulePath, src, "-ldl", "-lpthread")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the fault-injecting PKCS #11 module: %v\n%s", err, out)
	}
	if err := trust.Check("PKCS #11 module", f.ModulePath, trust.Public); err != nil {
		t.Fatalf("the fault-injecting module would be refused (set TMPDIR to a directory only you can write): %v", err)
	}

	countsPath := filepath.Join(dir, "counts")
	if err := os.WriteFile(countsPath, make([]byte, 8*len(p11Functions)), 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(countsPath, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.counts, err = syscall.Mmap(fd, 0, 8*len(p11Functions), syscall.PROT_READ, syscall.MAP_SHARED)
	syscall.Close(fd)
	if err != nil {
		t.Fatalf("map the shim's counters: %v", err)
	}
	// The shim keeps its own mapping; this one goes when the test ends.
	t.Cleanup(func() { syscall.Munmap(f.counts) })

	f.Set(FaultPass)
	t.Setenv("P11FAULT_CONTROL", f.ControlPath)
	t.Setenv("P11FAULT_COUNTS", countsPath)
	return f
}

// Set replaces the fault mode: one of the Fault constants, [FaultHang],
// or any control line the shim understands. Calls already being delayed
// finish their delay; every later call sees the new mode.
func (f *FaultPKCS11) Set(mode string) {
	f.t.Helper()
	tmp := f.ControlPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(mode+"\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	// A rename gives the file a new inode, which the shim notices even
	// within one mtime tick.
	if err := os.Rename(tmp, f.ControlPath); err != nil {
		f.t.Fatal(err)
	}
}

// Count returns how many times the module's function fn (e.g. "C_Login")
// has been called through the shim, or all calls for "".
func (f *FaultPKCS11) Count(fn string) uint64 {
	var n uint64
	for i, name := range p11Functions {
		if fn == "" || fn == name {
			n += atomic.LoadUint64((*uint64)(unsafe.Pointer(&f.counts[8*i])))
		}
	}
	return n
}

// URI returns a PKCS #11 URI for the key labelled object on the SoftHSM
// token, reached through the shim.
func (f *FaultPKCS11) URI(object string) string {
	return "pkcs11:token=" + escape(f.soft.Label, "") + ";object=" + escape(object, "") +
		"?module-path=" + escape(f.ModulePath, "/") + "&pin-source=file:" + escape(f.soft.PINFile, "/")
}

// pkcs11Headers returns the directory of the github.com/miekg/pkcs11
// module, which vendors the OASIS PKCS #11 headers.
func pkcs11Headers(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/miekg/pkcs11").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("find the github.com/miekg/pkcs11 module for its PKCS #11 headers: go list: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pkcs11.h")); err != nil {
		t.Fatalf("PKCS #11 headers: %v", err)
	}
	return dir
}

// cString quotes s as a C string literal for a -D option.
func cString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
