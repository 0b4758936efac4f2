package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocNamesEveryFile: the package doc's map of files names every
// source file, so that it does not fall behind the code.
func TestDocNamesEveryFile(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "doc.go" {
			continue
		}
		if !strings.Contains(string(doc), "//\t"+f) && !strings.Contains(string(doc), " "+f+":") && !strings.Contains(string(doc), " "+f+" ") {
			t.Errorf("doc.go does not name %s", f)
		}
	}
}
