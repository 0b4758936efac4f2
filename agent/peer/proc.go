package peer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxProcFile bounds every read of a /proc file. A process with thousands
// of supplementary groups has a larger status file; it fails attestation.
const maxProcFile = 64 << 10

// readProc reads a whole /proc file into buf, growing it as needed, and
// refuses a file over maxProcFile bytes: a truncated file could end in a
// truncated number or path. The hot path passes a buffer on its stack.
func readProc(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > maxProcFile {
			return nil, fmt.Errorf("%s is over %d bytes", path, maxProcFile)
		}
	}
}

var errMalformed = errors.New("malformed")

// parseStartTime returns field 22, starttime, of a /proc/PID/stat file.
// The command name in field 2 may hold spaces, parentheses and newlines, so
// fields are counted from the last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: %w: no ')'", errMalformed)
	}
	// Fields 3 and on follow the ')', separated by spaces; starttime is
	// the 20th of them.
	rest := stat[i+1:]
	for n := 1; ; n++ {
		var f []byte
		f, rest, _ = bytes.Cut(bytes.TrimLeft(rest, " \n"), []byte{' '})
		if len(f) == 0 {
			return 0, fmt.Errorf("stat: %w: %d fields after the command name", errMalformed, n-1)
		}
		if n < 20 {
			continue
		}
		t, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w: starttime %q", errMalformed, string(f))
		}
		return t, nil
	}
}

// statusFields returns the fields after "name:" on a /proc/PID/status
// line, which must be there once and end in a newline.
func statusFields(status []byte, name string) ([][]byte, error) {
	var fields [][]byte
	found := false
	for rest := status; len(rest) > 0; {
		line, after, ok := bytes.Cut(rest, []byte{'\n'})
		rest = after
		list, isName := bytes.CutPrefix(line, []byte(name+":"))
		if !isName {
			continue
		}
		if !ok || found {
			return nil, fmt.Errorf("status: %w: truncated or repeated %s line", errMalformed, name)
		}
		found = true
		fields = bytes.Fields(list)
	}
	if !found {
		return nil, fmt.Errorf("status: %w: no %s line", errMalformed, name)
	}
	return fields, nil
}

// parseGroups returns the supplementary groups on the "Groups:" line of a
// /proc/PID/status file: decimal IDs separated by spaces.
func parseGroups(status []byte) ([]uint32, error) {
	fields, err := statusFields(status, "Groups")
	if err != nil {
		return nil, err
	}
	groups := make([]uint32, 0, len(fields))
	for _, g := range fields {
		n, err := strconv.ParseUint(string(g), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("status: %w: group %q", errMalformed, g)
		}
		groups = append(groups, uint32(n))
	}
	return groups, nil
}

// parseEffectiveID returns the effective ID, the second of four, on the
// "Uid:" or "Gid:" line of a /proc/PID/status file.
func parseEffectiveID(status []byte, name string) (uint32, error) {
	fields, err := statusFields(status, name)
	if err != nil {
		return 0, err
	}
	if len(fields) != 4 {
		return 0, fmt.Errorf("status: %w: %d fields on the %s line", errMalformed, len(fields), name)
	}
	n, err := strconv.ParseUint(string(fields[1]), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("status: %w: %s %q", errMalformed, name, fields[1])
	}
	return uint32(n), nil
}

// parseUnit returns the systemd unit of a process from its /proc/PID/cgroup
// file, or "" when it has none or the file is ambiguous.
//
// The path is the cgroup v2 line "0::PATH", or, when there is none (cgroup
// v1 only), the line whose controllers include "name=systemd". The unit is
// the first component of that path ending in ".service" or ".scope", so a
// user's units below user@UID.service report user@UID.service and cannot
// pass for system units. A repeated line gives "": the kernel never writes
// one.
func parseUnit(cgroupFile []byte) string {
	var v2, v1 string
	n2, n1 := 0, 0
	for line := range strings.Lines(string(cgroupFile)) {
		id, rest, ok1 := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		controllers, path, ok2 := strings.Cut(rest, ":")
		switch {
		case !ok1 || !ok2:
		case id == "0" && controllers == "":
			v2, n2 = path, n2+1
		case isSystemdHierarchy(controllers):
			v1, n1 = path, n1+1
		}
	}
	switch {
	case n2 == 1:
		return unitOf(v2)
	case n2 == 0 && n1 == 1:
		return unitOf(v1)
	}
	return ""
}

func isSystemdHierarchy(controllers string) bool {
	for c := range strings.SplitSeq(controllers, ",") {
		if c == "name=systemd" {
			return true
		}
	}
	return false
}

// unitOf returns the first component of an absolute cgroup path that names
// a service or scope unit, or "".
func unitOf(path string) string {
	if !strings.HasPrefix(path, "/") {
		return ""
	}
	for c := range strings.SplitSeq(path[1:], "/") {
		for _, suffix := range []string{".service", ".scope"} {
			if len(c) > len(suffix) && strings.HasSuffix(c, suffix) {
				return c
			}
		}
	}
	return ""
}
