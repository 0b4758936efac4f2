package systemd

import (
	"bytes"
	"embed"
	"path"
)

//go:embed keyward.service keyward.socket keyward-metrics.socket keyward.sysusers keyward.tmpfiles
var shipped embed.FS

// Kinds of shipped file.
const (
	KindUnit     = "unit"     // PREFIX/lib/systemd/system/NAME
	KindSysusers = "sysusers" // PREFIX/lib/sysusers.d/keyward.conf
	KindTmpfiles = "tmpfiles" // PREFIX/lib/tmpfiles.d/keyward.conf
)

// DefaultPrefix is where the shipped service unit expects keyward: it runs
// DefaultPrefix/bin/keyward.
const DefaultPrefix = "/usr/local"

// A File is one of the files keyward ships for systemd, as installed
// under a prefix.
type File struct {
	// Path is where it is installed, e.g. /usr/local/lib/systemd/system/keyward.service.
	Path string
	// Kind is KindUnit, KindSysusers or KindTmpfiles.
	Kind string
	// Data is the file's content, with the service running
	// PREFIX/bin/keyward; each call to [Files] returns a copy.
	Data []byte
}

// Binary returns the keyward binary the service unit runs under prefix.
func Binary(prefix string) string { return path.Join(prefix, "bin", "keyward") }

// Files returns the shipped unit files and snippets as installed under
// prefix (/usr/local or /usr), in the order an installer writes them.
func Files(prefix string) []File {
	list := []struct{ src, dir, name, kind string }{
		{"keyward.service", "lib/systemd/system", "keyward.service", KindUnit},
		{"keyward.socket", "lib/systemd/system", "keyward.socket", KindUnit},
		{"keyward-metrics.socket", "lib/systemd/system", "keyward-metrics.socket", KindUnit},
		{"keyward.sysusers", "lib/sysusers.d", "keyward.conf", KindSysusers},
		{"keyward.tmpfiles", "lib/tmpfiles.d", "keyward.conf", KindTmpfiles},
	}
	files := make([]File, len(list))
	for i, f := range list {
		b, err := shipped.ReadFile(path.Clean(f.src))
		if err != nil {
			panic("systemd: embedded file missing: " + err.Error())
		}
		if f.src == "keyward.service" {
			b = bytes.ReplaceAll(b, []byte("ExecStart="+Binary(DefaultPrefix)+" "), []byte("ExecStart="+Binary(prefix)+" "))
		}
		files[i] = File{Path: path.Join(prefix, f.dir, f.name), Kind: f.kind, Data: b}
	}
	return files
}
