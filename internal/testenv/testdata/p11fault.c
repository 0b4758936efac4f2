/*
 * p11fault is a PKCS #11 module for tests. It loads another module (the
 * target, SoftHSM), forwards every call to it through its own function
 * list, and before each call asks a control file whether to pass the call
 * through, fail it with a given return code, or sleep first. It counts
 * every call. It stands in for a network HSM that drops its connection,
 * resets or stops answering.
 *
 * Build (internal/testenv does this):
 *
 *	gcc -shared -fPIC -O2 -Wall -Werror -fvisibility=hidden \
 *		-I<miekg/pkcs11 module dir> '-DP11FAULT_TARGET="/usr/lib/softhsm/libsofthsm2.so"' \
 *		-o libp11fault.so p11fault.c -ldl -lpthread
 *
 * Environment:
 *
 *	P11FAULT_TARGET   the module to forward to instead of the built-in
 *	                  one; read once, at the first C_GetFunctionList
 *	P11FAULT_CONTROL  the control file, read at every C_Initialize;
 *	                  without it every call passes
 *	P11FAULT_COUNTS   a file of 68 native-endian 64-bit counters, one per
 *	                  function in CK_FUNCTION_LIST order, mapped shared
 *	                  once (at the first C_GetFunctionList or C_Initialize
 *	                  that finds it) and incremented atomically on every
 *	                  call, failed and hung calls included
 *
 * The control file holds one line, re-read whenever the file changes
 * (inode, size or mtime; replace it with a rename):
 *
 *	pass                    forward every call
 *	fail RV [SCOPE]         answer RV (e.g. 0x32, CKR_DEVICE_REMOVED)
 *	hang MS [SCOPE]         sleep MS milliseconds, then forward
 *
 * SCOPE is "all" (the default: every call but C_GetFunctionList and
 * C_Finalize, which only drops local state), "session" (calls that take a
 * session handle) or "crypto" (cryptographic calls). A line that does not
 * parse means pass.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CK_PTR *
#define CK_DEFINE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"

#ifndef P11FAULT_TARGET
#define P11FAULT_TARGET "/usr/lib/softhsm/libsofthsm2.so"
#endif

/* What a call is, for SCOPE. */
enum kind { K_NEVER, K_GLOBAL, K_SLOT, K_SESSION, K_CRYPTO };

/*
 * Every function of CK_FUNCTION_LIST (PKCS #11 v2.40), in its order:
 * X(kind, name, parameters, arguments).
 */
#define FUNCS(X) \
	X(K_GLOBAL, C_Initialize, (CK_VOID_PTR a), (a)) \
	X(K_NEVER, C_Finalize, (CK_VOID_PTR a), (a)) \
	X(K_GLOBAL, C_GetInfo, (CK_INFO_PTR a), (a)) \
	X(K_NEVER, C_GetFunctionList, (CK_FUNCTION_LIST_PTR_PTR a), (a)) \
	X(K_SLOT, C_GetSlotList, (CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_SLOT, C_GetSlotInfo, (CK_SLOT_ID a, CK_SLOT_INFO_PTR b), (a, b)) \
	X(K_SLOT, C_GetTokenInfo, (CK_SLOT_ID a, CK_TOKEN_INFO_PTR b), (a, b)) \
	X(K_SLOT, C_GetMechanismList, (CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_SLOT, C_GetMechanismInfo, (CK_SLOT_ID a, CK_MECHANISM_TYPE b, CK_MECHANISM_INFO_PTR c), (a, b, c)) \
	X(K_SLOT, C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d), (a, b, c, d)) \
	X(K_SESSION, C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_SESSION, C_SetPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e), (a, b, c, d, e)) \
	X(K_SLOT, C_OpenSession, (CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e), (a, b, c, d, e)) \
	X(K_SESSION, C_CloseSession, (CK_SESSION_HANDLE a), (a)) \
	X(K_SLOT, C_CloseAllSessions, (CK_SLOT_ID a), (a)) \
	X(K_SESSION, C_GetSessionInfo, (CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b), (a, b)) \
	X(K_SESSION, C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_SESSION, C_SetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e), (a, b, c, d, e)) \
	X(K_SESSION, C_Login, (CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d), (a, b, c, d)) \
	X(K_SESSION, C_Logout, (CK_SESSION_HANDLE a), (a)) \
	X(K_SESSION, C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d), (a, b, c, d)) \
	X(K_SESSION, C_CopyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e), (a, b, c, d, e)) \
	X(K_SESSION, C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b)) \
	X(K_SESSION, C_GetObjectSize, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_SESSION, C_GetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d), (a, b, c, d)) \
	X(K_SESSION, C_SetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d), (a, b, c, d)) \
	X(K_SESSION, C_FindObjectsInit, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_SESSION, C_FindObjects, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d), (a, b, c, d)) \
	X(K_SESSION, C_FindObjectsFinal, (CK_SESSION_HANDLE a), (a)) \
	X(K_CRYPTO, C_EncryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
	X(K_CRYPTO, C_Encrypt, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_EncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_CRYPTO, C_DecryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
	X(K_CRYPTO, C_Decrypt, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_DecryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_DecryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_CRYPTO, C_DigestInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b), (a, b)) \
	X(K_CRYPTO, C_Digest, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_DigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_CRYPTO, C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b)) \
	X(K_CRYPTO, C_DigestFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_CRYPTO, C_SignInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
	X(K_CRYPTO, C_Sign, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_SignUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_CRYPTO, C_SignFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
	X(K_CRYPTO, C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
	X(K_CRYPTO, C_SignRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_VerifyInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
	X(K_CRYPTO, C_Verify, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_VerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_CRYPTO, C_VerifyFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_CRYPTO, C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
	X(K_CRYPTO, C_VerifyRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_DigestEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_DecryptDigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_SignEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_DecryptVerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_GenerateKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e), (a, b, c, d, e)) \
	X(K_CRYPTO, C_GenerateKeyPair, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR h), (a, b, c, d, e, f, g, h)) \
	X(K_CRYPTO, C_WrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f), (a, b, c, d, e, f)) \
	X(K_CRYPTO, C_UnwrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR h), (a, b, c, d, e, f, g, h)) \
	X(K_CRYPTO, C_DeriveKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f), (a, b, c, d, e, f)) \
	X(K_CRYPTO, C_SeedRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_CRYPTO, C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
	X(K_SESSION, C_GetFunctionStatus, (CK_SESSION_HANDLE a), (a)) \
	X(K_SESSION, C_CancelFunction, (CK_SESSION_HANDLE a), (a)) \
	X(K_SLOT, C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c), (a, b, c))

#define INDEX(kind, name, params, args) IDX_##name,
enum { FUNCS(INDEX) P11FAULT_NFUNCS };

/* The counters are in CK_FUNCTION_LIST order: check that FUNCS is too. */
#define CHECK_ORDER(kind, name, params, args) \
	_Static_assert(offsetof(CK_FUNCTION_LIST, name) == \
		offsetof(CK_FUNCTION_LIST, C_Initialize) + IDX_##name * sizeof(void *), \
		#name " is out of CK_FUNCTION_LIST order");
FUNCS(CHECK_ORDER)
_Static_assert(P11FAULT_NFUNCS == 68, "PKCS #11 v2.40 has 68 functions");

enum action { PASS, FAIL, HANG };
enum scope { SCOPE_ALL, SCOPE_SESSION, SCOPE_CRYPTO };

struct mode {
	enum action action;
	enum scope scope;
	CK_RV rv;
	long ms;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST_PTR target;     /* the real module's list */
static char *control;                   /* control file path, or NULL */
static struct stat seen;                /* the control file last read */
static struct mode current;             /* what it said */
static unsigned long long local_counts[P11FAULT_NFUNCS];
static unsigned long long *counts = local_counts;

/* parse reads one control line; anything unknown means pass. */
static struct mode parse(const char *line)
{
	struct mode m = {PASS, SCOPE_ALL, CKR_OK, 0};
	char verb[16] = "", arg[32] = "", scope[16] = "";
	if (sscanf(line, "%15s %31s %15s", verb, arg, scope) < 1) {
		return m;
	}
	if (strcmp(verb, "fail") == 0) {
		m.action = FAIL;
		m.rv = (CK_RV)strtoul(arg, NULL, 0);
	} else if (strcmp(verb, "hang") == 0) {
		m.action = HANG;
		m.ms = strtol(arg, NULL, 10);
	} else {
		return m;
	}
	if (strcmp(scope, "session") == 0) {
		m.scope = SCOPE_SESSION;
	} else if (strcmp(scope, "crypto") == 0) {
		m.scope = SCOPE_CRYPTO;
	}
	return m;
}

/* mode_now returns what the control file says, re-reading it if it changed. */
static struct mode mode_now(void)
{
	struct mode m = {PASS, SCOPE_ALL, CKR_OK, 0};
	struct stat st;
	pthread_mutex_lock(&mu);
	if (control == NULL) {
		pthread_mutex_unlock(&mu);
		return m;
	}
	if (stat(control, &st) != 0) {
		memset(&seen, 0, sizeof(seen));
		current = m;
	} else if (st.st_ino != seen.st_ino || st.st_size != seen.st_size ||
		   st.st_mtim.tv_sec != seen.st_mtim.tv_sec || st.st_mtim.tv_nsec != seen.st_mtim.tv_nsec) {
		char line[128] = "";
		FILE *f = fopen(control, "r");
		if (f != NULL) {
			if (fgets(line, sizeof(line), f) == NULL) {
				line[0] = '\0';
			}
			fclose(f);
		}
		current = parse(line);
		seen = st;
	}
	m = current;
	pthread_mutex_unlock(&mu);
	return m;
}

/* before counts a call and applies the fault mode; it returns the code to
 * answer instead of forwarding, or CKR_OK to forward. */
static CK_RV before(int idx, enum kind kind)
{
	__atomic_fetch_add(&counts[idx], 1, __ATOMIC_SEQ_CST);
	if (kind == K_NEVER) {
		return CKR_OK;
	}
	struct mode m = mode_now();
	if (m.action == PASS) {
		return CKR_OK;
	}
	if ((m.scope == SCOPE_SESSION && kind != K_SESSION && kind != K_CRYPTO) ||
	    (m.scope == SCOPE_CRYPTO && kind != K_CRYPTO)) {
		return CKR_OK;
	}
	if (m.action == FAIL) {
		return m.rv;
	}
	struct timespec ts = {m.ms / 1000, (m.ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
	return CKR_OK;
}

/* map_counts maps P11FAULT_COUNTS once; mu must be held. */
static void map_counts(void)
{
	const char *n = getenv("P11FAULT_COUNTS");
	if (n == NULL || *n == '\0' || counts != local_counts) {
		return;
	}
	int fd = open(n, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		return;
	}
	void *p = mmap(NULL, sizeof(local_counts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p != MAP_FAILED) {
		counts = p; /* kept mapped for the life of the process */
	}
	close(fd);
}

/* load opens the target module once; it is never unloaded. */
static CK_RV load(void)
{
	CK_RV rv = CKR_OK;
	pthread_mutex_lock(&mu);
	map_counts();
	if (target == NULL) {
		const char *path = getenv("P11FAULT_TARGET");
		if (path == NULL || *path == '\0') {
			path = P11FAULT_TARGET;
		}
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		CK_C_GetFunctionList get = h ? (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList") : NULL;
		if (get == NULL || get(&target) != CKR_OK || target == NULL) {
			target = NULL;
			rv = CKR_GENERAL_ERROR;
		}
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

/* configure reads the environment at C_Initialize. */
static void configure(void)
{
	const char *c = getenv("P11FAULT_CONTROL");
	pthread_mutex_lock(&mu);
	free(control);
	control = (c != NULL && *c != '\0') ? strdup(c) : NULL;
	memset(&seen, 0, sizeof(seen));
	map_counts();
	pthread_mutex_unlock(&mu);
}

/* w_NAME counts and applies the fault mode, then forwards. */
#define WRAP(kind, name, params, args) \
	__attribute__((unused)) static CK_RV w_##name params \
	{ \
		CK_RV rv = before(IDX_##name, kind); \
		if (rv != CKR_OK) { \
			return rv; \
		} \
		return target->name args; \
	}
FUNCS(WRAP)

/* initialize reads the environment, then runs w_C_Initialize. */
static CK_RV initialize(CK_VOID_PTR args)
{
	configure();
	return w_C_Initialize(args);
}

#define ENTRY(kind, name, params, args) list.name = w_##name;
static CK_FUNCTION_LIST list;

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	if (out == NULL) {
		return CKR_ARGUMENTS_BAD;
	}
	CK_RV rv = load();
	if (rv != CKR_OK) {
		return rv;
	}
	__atomic_fetch_add(&counts[IDX_C_GetFunctionList], 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&mu);
	list.version = target->version;
	FUNCS(ENTRY)
	list.C_Initialize = initialize;
	list.C_GetFunctionList = C_GetFunctionList;
	pthread_mutex_unlock(&mu);
	*out = &list;
	return CKR_OK;
}
