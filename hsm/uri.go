package hsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxURILen is the longest PKCS #11 URI [ParseURI] accepts, in bytes.
const MaxURILen = 4096

// Attribute names, in the order String writes them.
var (
	pathAttrs  = []string{"token", "manufacturer", "serial", "model", "slot-id", "object", "type", "id"}
	queryAttrs = []string{"module-name", "module-path", "pin-source"}
)

// Object types a "type" attribute may name (RFC 7512, section 2.3).
var objectTypes = []string{"cert", "data", "private", "public", "secret-key"}

// Lengths of the fixed-size fields of CK_TOKEN_INFO: a longer value can
// never match a token.
var tokenFieldMax = map[string]int{"token": 32, "manufacturer": 32, "serial": 16, "model": 16}

// maxValueLen bounds object labels, ids and paths after decoding.
const maxValueLen = 1024

// A URI is a parsed PKCS #11 URI (RFC 7512) naming a token, a key on it,
// the module that drives it and where its PIN comes from. It holds no
// secret: a URI carrying pin-value is refused by [ParseURI].
//
// A URI is immutable and safe for concurrent use.
type URI struct {
	token, manufacturer, serial, model string
	slotID                             uint64
	hasSlotID                          bool
	object                             string
	typ                                string
	id                                 []byte
	moduleName, modulePath             string
	pinFile                            string
}

// ParseURI parses a PKCS #11 URI such as
//
//	pkcs11:token=prod;object=keyward-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin
//
// It understands the path attributes token, manufacturer, serial, model,
// slot-id, object, type and id (id is raw bytes, usually fully
// percent-encoded) and the query attributes module-name, module-path and
// pin-source. It is strict: unknown or repeated attributes, empty values,
// characters that must be percent-encoded and URIs longer than
// [MaxURILen] are errors. pin-value is refused, because a PIN must never
// sit in a configuration string or on a command line.
//
// Error messages name the offending attribute but never repeat the URI.
func ParseURI(s string) (*URI, error) {
	if len(s) > MaxURILen {
		return nil, fmt.Errorf("hsm: PKCS #11 URI is %d bytes, longer than the limit of %d", len(s), MaxURILen)
	}
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, errors.New(`hsm: PKCS #11 URI must start with "pkcs11:"`)
	}
	rest := s[len(scheme):]
	path, query, hasQuery := strings.Cut(rest, "?")
	u := new(URI)
	seen := make(map[string]bool)
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			if err := u.setAttr(attr, false, seen); err != nil {
				return nil, err
			}
		}
	}
	if hasQuery {
		if query == "" {
			return nil, errors.New("hsm: PKCS #11 URI has an empty query after \"?\"")
		}
		for _, attr := range strings.Split(query, "&") {
			if err := u.setAttr(attr, true, seen); err != nil {
				return nil, err
			}
		}
	}
	// Percent-encoding can make the canonical form longer than the input;
	// refuse what String could not hand back to ParseURI.
	if n := len(u.String()); n > MaxURILen {
		return nil, fmt.Errorf("hsm: PKCS #11 URI is %d bytes in canonical form, longer than the limit of %d", n, MaxURILen)
	}
	return u, nil
}

// setAttr decodes one name=value pair into u.
func (u *URI) setAttr(attr string, inQuery bool, seen map[string]bool) error {
	name, raw, ok := strings.Cut(attr, "=")
	part, valid := "path", pathAttrs
	if inQuery {
		part, valid = "query", queryAttrs
	}
	// Refuse a PIN before looking at its value, so that no part of it can
	// end up in an error message.
	if name == "pin-value" {
		return errors.New("hsm: PKCS #11 URI attribute pin-value is refused: a PIN must never be written in a " +
			"configuration string or on a command line; use pin-source=file:/path/to/pin (mode 0600) or a " +
			"systemd credential (LoadCredentialEncrypted=)")
	}
	if !slices.Contains(valid, name) {
		if name == "" {
			return fmt.Errorf("hsm: PKCS #11 URI has an empty %s attribute; valid ones are %s", part, strings.Join(valid, ", "))
		}
		if len(name) > 32 || !isAttrName(name) {
			return fmt.Errorf("hsm: PKCS #11 URI has a malformed %s attribute name; valid ones are %s", part, strings.Join(valid, ", "))
		}
		if slices.Contains(pathAttrs, name) || slices.Contains(queryAttrs, name) {
			other := "query (after \"?\")"
			if inQuery {
				other = "path (before \"?\")"
			}
			return fmt.Errorf("hsm: PKCS #11 URI attribute %s belongs in the %s", name, other)
		}
		return fmt.Errorf("hsm: PKCS #11 URI attribute %q is not supported; valid %s attributes are %s", name, part, strings.Join(valid, ", "))
	}
	if !ok {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s has no value (want %s=value)", name, name)
	}
	if seen[name] {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s appears more than once", name)
	}
	seen[name] = true
	if raw == "" {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s has an empty value", name)
	}
	v, err := unescape(raw, inQuery)
	if err != nil {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s: %w", name, err)
	}
	if name == "id" {
		if len(v) > maxValueLen {
			return fmt.Errorf("hsm: PKCS #11 URI attribute id is %d bytes, longer than %d", len(v), maxValueLen)
		}
		u.id = []byte(v)
		return nil
	}
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s is not valid UTF-8 text", name)
	}
	if limit, ok := tokenFieldMax[name]; ok && len(v) > limit {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s is %d bytes; PKCS #11 allows at most %d", name, len(v), limit)
	}
	if len(v) > maxValueLen {
		return fmt.Errorf("hsm: PKCS #11 URI attribute %s is %d bytes, longer than %d", name, len(v), maxValueLen)
	}
	switch name {
	case "token":
		u.token = v
	case "manufacturer":
		u.manufacturer = v
	case "serial":
		u.serial = v
	case "model":
		u.model = v
	case "object":
		u.object = v
	case "type":
		if !slices.Contains(objectTypes, v) {
			return fmt.Errorf("hsm: PKCS #11 URI attribute type must be one of %s", strings.Join(objectTypes, ", "))
		}
		u.typ = v
	case "slot-id":
		if strings.TrimLeft(v, "0123456789") != "" {
			return errors.New("hsm: PKCS #11 URI attribute slot-id must be a decimal number")
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("hsm: PKCS #11 URI attribute slot-id is out of range")
		}
		u.slotID, u.hasSlotID = n, true
	case "module-name":
		if strings.ContainsRune(v, '/') || v == "." || v == ".." {
			return errors.New("hsm: PKCS #11 URI attribute module-name must be a file name without a directory; use module-path for a full path")
		}
		u.moduleName = v
	case "module-path":
		if !filepath.IsAbs(v) {
			return errors.New("hsm: PKCS #11 URI attribute module-path must be an absolute path")
		}
		u.modulePath = v
	case "pin-source":
		p, err := parsePINSource(v)
		if err != nil {
			return err
		}
		u.pinFile = p
	}
	return nil
}

// parsePINSource accepts "file:/abs", "file:///abs" and "/abs" and returns
// the absolute path.
func parsePINSource(v string) (string, error) {
	p := v
	switch {
	case strings.HasPrefix(v, "|"):
		return "", errors.New("hsm: PKCS #11 URI pin-source commands (|program) are not supported; use pin-source=file:/path/to/pin")
	case strings.HasPrefix(v, "file://"):
		p = strings.TrimPrefix(v, "file://")
		if !strings.HasPrefix(p, "/") {
			return "", errors.New("hsm: PKCS #11 URI pin-source must name a local file (file:/path/to/pin)")
		}
	case strings.HasPrefix(v, "file:"):
		p = strings.TrimPrefix(v, "file:")
	}
	if !filepath.IsAbs(p) {
		return "", errors.New("hsm: PKCS #11 URI pin-source must be file: followed by an absolute path, e.g. pin-source=file:/etc/keyward/pin")
	}
	return p, nil
}

// Token returns the token label the URI selects, or "".
func (u *URI) Token() string { return u.token }

// Manufacturer returns the token manufacturer the URI selects, or "".
func (u *URI) Manufacturer() string { return u.manufacturer }

// Serial returns the token serial number the URI selects, or "".
func (u *URI) Serial() string { return u.serial }

// Model returns the token model the URI selects, or "".
func (u *URI) Model() string { return u.model }

// SlotID returns the slot the URI selects and whether it names one.
func (u *URI) SlotID() (id uint64, ok bool) { return u.slotID, u.hasSlotID }

// WithObject returns a copy of u that names the key labelled label, with
// no id: how keyward rewrap names a new key-encryption key in the same
// token.
func (u *URI) WithObject(label string) *URI {
	c := *u
	c.object = label
	c.id = nil
	return &c
}

// Object returns the object label (CKA_LABEL) the URI selects, or "".
func (u *URI) Object() string { return u.object }

// Type returns the object type the URI selects ("secret-key", ...), or "".
func (u *URI) Type() string { return u.typ }

// ID returns a copy of the object id (CKA_ID) the URI selects, or nil.
func (u *URI) ID() []byte {
	if u.id == nil {
		return nil
	}
	return append([]byte(nil), u.id...)
}

// ModuleName returns the module-name attribute, or "".
func (u *URI) ModuleName() string { return u.moduleName }

// PINFile returns the absolute path named by the pin-source attribute, or
// "".
func (u *URI) PINFile() string { return u.pinFile }

// moduleDirs are the directories searched for module-name, in order: the
// p11-kit module directories, then the system library directories. Only
// root-owned system locations are searched; never the working directory
// or LD_LIBRARY_PATH.
var moduleDirs = func() []string {
	triplet := map[string]string{
		"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu",
		"arm": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
		"riscv64": "riscv64-linux-gnu",
	}[runtime.GOARCH]
	var dirs []string
	if triplet != "" {
		dirs = append(dirs, "/usr/lib/"+triplet+"/pkcs11")
	}
	dirs = append(dirs, "/usr/lib64/pkcs11", "/usr/lib/pkcs11")
	if triplet != "" {
		dirs = append(dirs, "/usr/lib/"+triplet)
	}
	return append(dirs, "/usr/lib64", "/usr/lib", "/usr/local/lib")
}()

// ModulePath returns the file of the PKCS #11 module: the module-path
// attribute, else the module-name attribute looked up as NAME, NAME.so
// and libNAME.so in the p11-kit and system library directories. The error
// wraps [ErrModuleNotFound].
func (u *URI) ModulePath() (string, error) {
	if u.modulePath != "" {
		return u.modulePath, nil
	}
	if u.moduleName == "" {
		return "", fmt.Errorf("%w: the URI names no module; add module-path=/path/to/module.so (or module-name=NAME) to its query", ErrModuleNotFound)
	}
	names := []string{u.moduleName}
	if !strings.Contains(u.moduleName, ".so") {
		names = []string{u.moduleName + ".so", "lib" + u.moduleName + ".so"}
	}
	for _, dir := range moduleDirs {
		for _, n := range names {
			p := filepath.Join(dir, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: module-name=%s is not in %s; install the token vendor's PKCS #11 package or give module-path",
		ErrModuleNotFound, u.moduleName, strings.Join(moduleDirs, ", "))
}

// String returns the URI in canonical form: attributes in a fixed order,
// id fully percent-encoded, other values percent-encoded where RFC 7512
// requires it. ParseURI(u.String()) yields a URI equal to u.
func (u *URI) String() string {
	var path, query []string
	add := func(list *[]string, name, v, keep string) {
		if v != "" {
			*list = append(*list, name+"="+escape(v, keep))
		}
	}
	add(&path, "token", u.token, "")
	add(&path, "manufacturer", u.manufacturer, "")
	add(&path, "serial", u.serial, "")
	add(&path, "model", u.model, "")
	if u.hasSlotID {
		path = append(path, "slot-id="+strconv.FormatUint(u.slotID, 10))
	}
	add(&path, "object", u.object, "")
	add(&path, "type", u.typ, "")
	if len(u.id) > 0 {
		var b strings.Builder
		for _, c := range u.id {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		path = append(path, "id="+b.String())
	}
	add(&query, "module-name", u.moduleName, "")
	add(&query, "module-path", u.modulePath, "/")
	if u.pinFile != "" {
		scheme := "file:"
		if strings.HasPrefix(u.pinFile, "//") {
			scheme = "file://" // so that the path does not read as a host
		}
		query = append(query, "pin-source="+scheme+escape(u.pinFile, "/"))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// escape percent-encodes every byte of s that is neither unreserved nor in
// keep.
func escape(s, keep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// unescape checks that s holds only characters RFC 7512 allows in a path
// (or query) value and decodes its percent-encoding.
func unescape(s string, inQuery bool) (string, error) {
	allowed := ":[]@!$'()*+,=&"
	if inQuery {
		allowed = ":[]@!$'()*+,=/?|"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", errors.New("truncated percent-encoding")
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", errors.New("invalid percent-encoding")
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		case isUnreserved(c) || strings.IndexByte(allowed, c) >= 0:
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			return "", fmt.Errorf("byte 0x%02X must be percent-encoded", c)
		default:
			return "", fmt.Errorf("character %q must be percent-encoded", c)
		}
	}
	return b.String(), nil
}

// unhex decodes one hexadecimal digit.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isAttrName reports whether s looks like an attribute name, so that it
// may be quoted in an error.
func isAttrName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
