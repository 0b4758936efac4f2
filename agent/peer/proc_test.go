package peer

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"system service", "0::/system.slice/mm-prod.service\n", "mm-prod.service"},
		{"sub-cgroup of a service", "0::/system.slice/mm-prod.service/worker\n", "mm-prod.service"},
		{"user unit", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/evil.service\n", "user@1000.service"},
		{"session scope", "0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"},
		{"scope", "0::/system.slice/run-u7.scope\n", "run-u7.scope"},
		{"init scope", "0::/init.scope\n", "init.scope"},
		{"nested slices", "0::/system.slice/trading.slice/mm.service\n", "mm.service"},
		{"root", "0::/\n", ""},
		{"slice only", "0::/system.slice\n", ""},
		{"no newline", "0::/system.slice/mm.service", "mm.service"},
		{"empty", "", ""},
		{"bare suffix", "0::/.service/x.service\n", "x.service"},
		{"suffix inside a name", "0::/system.slice/a.service.d/b.scope\n", "b.scope"},
		{"relative path", "0::system.slice/mm.service\n", ""},
		{"path with colon", "0::/system.slice/a:b.service\n", "a:b.service"},
		{
			"hybrid prefers v2",
			"1:name=systemd:/system.slice/v1.service\n0::/system.slice/v2.service\n",
			"v2.service",
		},
		{
			"hybrid, v2 at root",
			"9:name=systemd:/system.slice/v1.service\n4:memory:/x\n0::/\n",
			"",
		},
		{
			"cgroup v1 only",
			"12:pids:/system.slice/other.service\n1:name=systemd:/system.slice/mm.service\n",
			"mm.service",
		},
		{"v1 combined controllers", "1:cpu,name=systemd:/system.slice/mm.service\n", "mm.service"},
		{"v1 without systemd", "3:cpu,cpuacct:/system.slice/mm.service\n", ""},
		{"v1 name=systemd-like", "1:name=systemdx:/system.slice/mm.service\n", ""},
		{"repeated v2 line", "0::/user.slice/x\n0::/system.slice/mm.service\n", ""},
		{"repeated v1 line", "1:name=systemd:/a.service\n2:name=systemd:/b.service\n", ""},
		{"v2 with controllers is not v2", "0:cpu:/system.slice/mm.service\n", ""},
		{"garbage", "hello\n::\n:\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseUnit([]byte(tt.file)); got != tt.want {
				t.Errorf("parseUnit(%q) = %q, want %q", tt.file, got, tt.want)
			}
		})
	}
}

func FuzzParseUnit(f *testing.F) {
	f.Add([]byte("0::/system.slice/mm-prod.service\n"))
	f.Add([]byte("0::/user.slice/user-1000.slice/user@1000.service/app.slice/evil.service\n"))
	f.Add([]byte("1:name=systemd:/system.slice/mm.service\n0::/\n"))
	f.Fuzz(func(t *testing.T, file []byte) {
		got := parseUnit(file)
		if got == "" {
			return
		}
		if strings.Contains(got, "/") || !(strings.HasSuffix(got, ".service") || strings.HasSuffix(got, ".scope")) {
			t.Fatalf("parseUnit(%q) = %q, want \"\" or a unit name", file, got)
		}
		if !strings.Contains(string(file), "/"+got) {
			t.Fatalf("parseUnit(%q) = %q, not a path component of the input", file, got)
		}
	})
}

// stat builds a /proc/PID/stat line with the given command name and start
// time, as kernel 6.18 writes it.
func stat(comm string, starttime uint64) string {
	return fmt.Sprintf("4242 (%s) S 1 4242 4242 0 -1 4194560 161 0 0 0 0 0 0 0 20 0 1 0 %d 2510848 240 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n", comm, starttime)
}

func TestParseStartTime(t *testing.T) {
	tests := []struct {
		name, stat string
		want       uint64
		ok         bool
	}{
		{"plain", stat("sleep", 123456), 123456, true},
		{"spaces in comm", stat("a b c", 7), 7, true},
		{"parens in comm", stat(") 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 (", 99), 99, true},
		{"newline in comm", stat("a\nb", 5), 5, true},
		{"max", stat("x", 1<<64-1), 1<<64 - 1, true},
		{"no paren", "4242 sleep S 1", 0, false},
		{"too few fields", "4242 (sleep) S 1 2 3\n", 0, false},
		{"not a number", strings.Replace(stat("x", 1), " 1 2510848", " z 2510848", 1), 0, false},
		{"negative", strings.Replace(stat("x", 1), " 1 2510848", " -1 2510848", 1), 0, false},
		{"empty", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tt.stat))
			if got != tt.want || (err == nil) != tt.ok {
				t.Errorf("parseStartTime(%q) = %d, %v, want %d, ok %v", tt.stat, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseStartTimeSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseStartTime(b); err != nil || got == 0 {
		t.Errorf("parseStartTime(/proc/self/stat) = %d, %v, want a start time", got, err)
	}
}

func FuzzParseStartTime(f *testing.F) {
	f.Add("sleep", uint64(123456))
	f.Add(") S 1 (", uint64(1))
	f.Add("", uint64(0))
	f.Fuzz(func(t *testing.T, comm string, starttime uint64) {
		s := stat(comm, starttime)
		if got, err := parseStartTime([]byte(s)); err != nil || got != starttime {
			t.Fatalf("parseStartTime(%q) = %d, %v, want %d", s, got, err, starttime)
		}
		parseStartTime([]byte(comm)) // must not panic
	})
}

func TestParseGroups(t *testing.T) {
	const pre = "Name:\tx\nUmask:\t0022\nGid:\t0\t0\t0\t0\nFDSize:\t64\n"
	tests := []struct {
		name, status string
		want         []uint32
		ok           bool
	}{
		{"one", pre + "Groups:\t4244 \nNStgid:\t1\n", []uint32{4244}, true},
		{"several", pre + "Groups:\t4 24 27 4294967295 \n", []uint32{4, 24, 27, 4294967295}, true},
		{"none", pre + "Groups:\t \nNStgid:\t1\n", []uint32{}, true},
		{"none, no space", pre + "Groups:\t\n", []uint32{}, true},
		{"missing", pre, nil, false},
		{"truncated", pre + "Groups:\t4 24 27", nil, false},
		{"repeated", pre + "Groups:\t4 \nGroups:\t0 \n", nil, false},
		{"too large", pre + "Groups:\t4294967296 \n", nil, false},
		{"negative", pre + "Groups:\t-1 \n", nil, false},
		{"not a number", pre + "Groups:\twheel \n", nil, false},
		{"not at line start", "Name:\tGroups: 0\n" + "Groups:\t5 \n", []uint32{5}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGroups([]byte(tt.status))
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) || (err == nil) != tt.ok {
				t.Errorf("parseGroups(%q) = %v, %v, want %v, ok %v", tt.status, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseEffectiveID(t *testing.T) {
	const status = "Name:\tx\nUid:\t1000\t4242\t1000\t1000\nGid:\t5\t6\t7\t8\nGroups:\t \n"
	tests := []struct {
		name, status, line string
		want               uint32
		ok                 bool
	}{
		{"uid", status, "Uid", 4242, true},
		{"gid", status, "Gid", 6, true},
		{"missing", "Name:\tx\n", "Uid", 0, false},
		{"three fields", "Uid:\t1\t2\t3\n", "Uid", 0, false},
		{"not a number", "Uid:\t1\tx\t3\t4\n", "Uid", 0, false},
		{"truncated", "Uid:\t1\t2\t3\t4", "Uid", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEffectiveID([]byte(tt.status), tt.line)
			if got != tt.want || (err == nil) != tt.ok {
				t.Errorf("parseEffectiveID(%q, %q) = %d, %v, want %d, ok %v", tt.status, tt.line, got, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseGroups(f *testing.F) {
	f.Add([]byte("Name:\tx\nGroups:\t4 24 \nNStgid:\t1\n"))
	f.Add([]byte("Groups:\t \n"))
	f.Add([]byte("Groups:\t1 2 3"))
	f.Fuzz(func(t *testing.T, status []byte) {
		groups, err := parseGroups(status)
		if err != nil {
			if groups != nil {
				t.Fatalf("parseGroups(%q) = %v, %v, want nil groups with an error", status, groups, err)
			}
			return
		}
		// Written back as the kernel writes them, they parse the same.
		var b strings.Builder
		b.WriteString("Groups:\t")
		for _, g := range groups {
			fmt.Fprintf(&b, "%d ", g)
		}
		b.WriteString("\n")
		again, err := parseGroups([]byte(b.String()))
		if err != nil || !slices.Equal(again, groups) {
			t.Fatalf("parseGroups(%q) = %v, %v, want %v", b.String(), again, err, groups)
		}
	})
}
