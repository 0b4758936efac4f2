package hsm

// Wrapped format, version 1: FormatV1 || IV || AES-GCM(ciphertext || tag).
const (
	// FormatV1 is the first byte of every blob Wrap returns.
	FormatV1 = 0x01
	// WrappedSize is the size in bytes of every blob Wrap returns.
	WrappedSize = 1 + ivSize + DataKeySize + tagSize
	// DataKeySize is the only data key size Wrap accepts: an AES-256 key.
	DataKeySize = 32

	ivSize  = 12
	tagSize = 16
)

// aad is the AES-GCM additional data of every wrap: it binds the blob to
// its purpose and format version.
var aad = []byte("keyward data-key v1")
