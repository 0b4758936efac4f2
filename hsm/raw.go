//go:build cgo && linux

package hsm

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef unsigned long kw_ulong;

// The start of CK_FUNCTION_LIST (PKCS #11 v2.x; v3 modules return the
// same layout from C_GetFunctionList): a CK_VERSION, then the function
// pointers in the order of the standard. Only C_Encrypt and C_Decrypt are
// called through it.
struct kw_function_list {
	unsigned char major, minor;
	void *C_Initialize, *C_Finalize, *C_GetInfo, *C_GetFunctionList;
	void *C_GetSlotList, *C_GetSlotInfo, *C_GetTokenInfo, *C_GetMechanismList;
	void *C_GetMechanismInfo, *C_InitToken, *C_InitPIN, *C_SetPIN;
	void *C_OpenSession, *C_CloseSession, *C_CloseAllSessions, *C_GetSessionInfo;
	void *C_GetOperationState, *C_SetOperationState, *C_Login, *C_Logout;
	void *C_CreateObject, *C_CopyObject, *C_DestroyObject, *C_GetObjectSize;
	void *C_GetAttributeValue, *C_SetAttributeValue, *C_FindObjectsInit, *C_FindObjects;
	void *C_FindObjectsFinal, *C_EncryptInit, *C_Encrypt, *C_EncryptUpdate;
	void *C_EncryptFinal, *C_DecryptInit, *C_Decrypt;
};

typedef kw_ulong (*kw_get_function_list)(struct kw_function_list **);
typedef kw_ulong (*kw_crypt)(kw_ulong, unsigned char *, kw_ulong, unsigned char *, kw_ulong *);

static void *kw_dlopen(const char *path, const char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		*err = dlerror();
	}
	return h;
}

static kw_ulong kw_function_list(void *h, struct kw_function_list **list) {
	kw_get_function_list f = (kw_get_function_list)dlsym(h, "C_GetFunctionList");
	if (f == NULL) {
		return (kw_ulong)-1;
	}
	return f(list);
}

static kw_ulong kw_call(void *fn, kw_ulong session, unsigned char *in, kw_ulong in_len, unsigned char *out, kw_ulong *out_len) {
	return ((kw_crypt)fn)(session, in, in_len, out, out_len);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// rawModule calls C_Encrypt and C_Decrypt of a module directly, with
// output buffers keyward allocates in Go memory. miekg/pkcs11 sizes the
// output with a NULL query (which some modules answer wrongly for GCM) and
// leaves the plaintext of C_Decrypt in a C buffer it frees without
// clearing; this does neither.
type rawModule struct {
	encrypt, decrypt unsafe.Pointer
}

// rawModules holds the modules loaded for raw calls, by canonical path.
// Their dlopen handles are never closed: unloading a PKCS #11 module that
// started threads can crash the process, and the library stays mapped
// across C_Finalize and a later C_Initialize.
var rawModules = struct {
	sync.Mutex
	m map[string]*rawModule
}{m: make(map[string]*rawModule)}

// loadRaw dlopens path (RTLD_NOW, so missing dependencies show up here with
// the loader's message) and reads its function list.
func loadRaw(path string) (*rawModule, error) {
	rawModules.Lock()
	defer rawModules.Unlock()
	if r, ok := rawModules.m[path]; ok {
		return r, nil
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	h := C.kw_dlopen(cpath, &cerr)
	if h == nil {
		msg := "unknown error"
		if cerr != nil {
			msg = C.GoString(cerr)
		}
		return nil, fmt.Errorf("%w: cannot load %s: %s; check that it is a PKCS #11 module built for this machine and that its dependencies are installed",
			ErrModuleNotFound, path, msg)
	}
	var list *C.struct_kw_function_list
	if rv := C.kw_function_list(h, &list); rv != 0 || list == nil {
		if rv == ^C.kw_ulong(0) {
			return nil, fmt.Errorf("%w: %s has no C_GetFunctionList: it is not a PKCS #11 module", ErrModuleNotFound, path)
		}
		return nil, fmt.Errorf("%w: C_GetFunctionList of %s failed: %w", ErrModuleNotFound, path, pkcs11.Error(rv))
	}
	if list.major < 2 || list.C_Encrypt == nil || list.C_Decrypt == nil {
		return nil, fmt.Errorf("%w: %s reports PKCS #11 version %d.%d; keyward needs 2.20 or later", ErrModuleNotFound, path, list.major, list.minor)
	}
	r := &rawModule{encrypt: list.C_Encrypt, decrypt: list.C_Decrypt}
	rawModules.m[path] = r
	return r, nil
}

// maxOutput bounds the output size a module may ask for.
const maxOutput = 4096

// crypt runs a single-part C_Encrypt or C_Decrypt whose operation was
// initialised on session, writing into a buffer of size bytes. When the
// module answers CKR_BUFFER_TOO_SMALL (the operation then stays active),
// it retries once with the size the module asked for. The buffer that is
// not returned is cleared.
func (r *rawModule) crypt(decrypt bool, session pkcs11.SessionHandle, in []byte, size int) ([]byte, error) {
	fn := r.encrypt
	if decrypt {
		fn = r.decrypt
	}
	if len(in) == 0 {
		return nil, errors.New("hsm: empty input")
	}
	out := make([]byte, size)
	for try := 0; ; try++ {
		n := C.kw_ulong(len(out))
		rv := C.kw_call(fn, C.kw_ulong(session),
			(*C.uchar)(unsafe.Pointer(&in[0])), C.kw_ulong(len(in)),
			(*C.uchar)(unsafe.Pointer(&out[0])), &n)
		switch {
		case rv == C.kw_ulong(pkcs11.CKR_BUFFER_TOO_SMALL) && try == 0 && int(n) > len(out) && n <= maxOutput:
			clear(out)
			out = make([]byte, int(n))
			continue
		case rv != 0:
			clear(out)
			return nil, pkcs11.Error(rv)
		case int(n) > len(out):
			clear(out)
			return nil, fmt.Errorf("hsm: module reported %d output bytes into a %d-byte buffer", n, len(out))
		}
		clear(out[n:])
		return out[:n:n], nil
	}
}
