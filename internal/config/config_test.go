package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyward.toml")

	cfg, err := Load(path, false)
	if err != nil || !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("Load(missing, optional) = %+v, %v; want defaults", cfg, err)
	}
	if _, err := Load(path, true); err == nil {
		t.Errorf("Load(missing, required) = nil error")
	}

	os.WriteFile(path, []byte("[store]\ndir = \"/srv/kw\"\n[pkcs11]\nmax_sessions = 4\n"), 0o600)
	cfg, err = Load(path, true)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if cfg.Store.Dir != "/srv/kw" || cfg.PKCS11.MaxSessions != 4 || cfg.Store.MachineIDFile != "/etc/machine-id" {
		t.Errorf("Load() = %+v; want overrides over defaults", cfg)
	}
}

func TestParseRejects(t *testing.T) {
	tests := map[string]string{
		"unknown key":     "[store]\ndirr = \"/x\"\n",
		"unknown table":   "[stor]\ndir = \"/x\"\n",
		"bad backend":     "backend = \"vault\"\n",
		"empty dir":       "[store]\ndir = \"\"\n",
		"sessions 0":      "[pkcs11]\nmax_sessions = 0\n",
		"wrong type":      "[pkcs11]\nmax_sessions = \"8\"\n",
		"syntax":          "[store\n",
		"empty uri":       "[pkcs11]\nuri = \"\"\n",
		"empty machineid": "[store]\nmachine_id_file = \"\"\n",
		"relative kit":    "[recovery]\nfleet_kit = \"fleet.kit\"\n",
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := Default()
			if err := Parse([]byte(text), &cfg); err == nil {
				t.Errorf("Parse(%q) = nil error", text)
			}
		})
	}
	cfg := Default()
	err := Parse([]byte("[store]\ndirr = \"/x\"\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), `"store.dirr"`) {
		t.Errorf("Parse(typo) = %v; want the key named", err)
	}
}

func TestLoadRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.toml")
	os.WriteFile(path, []byte(strings.Repeat("#", MaxFileSize+1)), 0o600)
	if _, err := Load(path, true); err == nil {
		t.Errorf("Load(oversized) = nil error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("backend = \"pkcs11\"\n[store]\ndir = \"/var/lib/keyward\"\n"))
	f.Add([]byte("[pkcs11]\nuri = \"pkcs11:token=a\"\nmax_sessions = 3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := Default()
		if err := Parse(b, &cfg); err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a configuration that does not validate: %v", err)
		}
	})
}

// A configuration that someone else can change would let them choose the
// PKCS #11 module keyward loads: it is refused, as is a default path that
// exists but is untrusted.
func TestLoadRefusesUntrusted(t *testing.T) {
	for _, tc := range []struct {
		name          string
		dirMode, mode os.FileMode
		required      bool
		want          string
	}{
		{"writable file", 0o755, 0o666, true, "writable by group or others"},
		{"writable directory", 0o777, 0o644, true, "directory"},
		{"writable default file", 0o755, 0o646, false, "chmod go-w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "keyward.toml")
			if err := os.WriteFile(path, []byte("[pkcs11]\nuri = \"pkcs11:object=k?module-path=/tmp/evil.so\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			os.Chmod(dir, tc.dirMode)
			if _, err := Load(path, tc.required); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load(%s) = %v, want a refusal containing %q", tc.name, err, tc.want)
			}
		})
	}
}

// TestDocsListEverySetting: docs/configuration.md has a row for every
// setting, so that the page cannot fall behind the code.
func TestDocsListEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := f.Tag.Get("toml")
			if key == "" {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
				walk(prefix+key+".", f.Type)
				continue
			}
			keys = append(keys, prefix+key)
		}
	}
	walk("", reflect.TypeOf(Config{}))
	if len(keys) < 20 {
		t.Fatalf("found only %d settings: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "| `"+k+"` |") {
			t.Errorf("docs/configuration.md has no row for %s", k)
		}
	}
}

func TestDurationDays(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("[store]\ngrace = \"2d\"\nexpiry_warning = \"30d\"\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Grace.Duration != 48*time.Hour || cfg.Store.ExpiryWarning.Duration != 30*24*time.Hour {
		t.Errorf("grace %v, expiry_warning %v; want 48h and 720h", cfg.Store.Grace, cfg.Store.ExpiryWarning)
	}
	for _, bad := range []string{"-1h", "1x", "d", "-2d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = nil error", bad)
		}
	}
}
