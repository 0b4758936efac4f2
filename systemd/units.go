package systemd

import (
	"embed"
	"path"
)

//go:embed keyward.service keyward.socket keyward.sysusers keyward.tmpfiles
var shipped embed.FS

// Kinds of shipped file, which say where each is installed.
const (
	KindUnit     = "unit"     // PREFIX/lib/systemd/system/NAME
	KindSysusers = "sysusers" // PREFIX/lib/sysusers.d/keyward.conf
	KindTmpfiles = "tmpfiles" // PREFIX/lib/tmpfiles.d/keyward.conf
)

// DefaultExecPath is the keyward binary the shipped service unit runs.
const DefaultExecPath = "/usr/local/bin/keyward"

// A File is one of the files keyward ships for systemd.
type File struct {
	// Name is the installed file name: keyward.service, keyward.conf, …
	Name string
	// Kind is KindUnit, KindSysusers or KindTmpfiles.
	Kind string
	// Data is the file's content; each call to [Files] returns a copy.
	Data []byte
}

// Files returns the shipped unit files and snippets, in the order an
// installer writes them.
func Files() []File {
	list := []struct{ src, name, kind string }{
		{"keyward.service", "keyward.service", KindUnit},
		{"keyward.socket", "keyward.socket", KindUnit},
		{"keyward.sysusers", "keyward.conf", KindSysusers},
		{"keyward.tmpfiles", "keyward.conf", KindTmpfiles},
	}
	files := make([]File, len(list))
	for i, f := range list {
		b, err := shipped.ReadFile(path.Clean(f.src))
		if err != nil {
			panic("systemd: embedded file missing: " + err.Error())
		}
		files[i] = File{Name: f.name, Kind: f.kind, Data: b}
	}
	return files
}
