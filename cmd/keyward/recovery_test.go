package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/keyward/keyward/internal/testenv"
)

// TestRestoreEncryptedShares walks the restore of docs/recovery.md with
// custodians who are not at the host: restore prints its one-time restore
// key; each custodian decrypts their share file with their own key and
// encrypts it to the restore key (one with the real age and the classic
// recipient, one with the post-quantum recipient as age 1.3 does); the
// operator pastes what they send. No share crosses in clear, and the
// store is restored onto the host's new machine id.
func TestRestoreEncryptedShares(t *testing.T) {
	testenv.Require(t, "age")
	tok := testenv.SoftHSM(t)
	dir := t.TempDir()
	machineID := filepath.Join(dir, "machine-id")
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("machine-id", "0123456789abcdef0123456789abcdef\n")
	keyward := func(stdin io.Reader, stderr io.Writer, args ...string) string {
		t.Helper()
		var stdout, errBuf bytes.Buffer
		if stderr == nil {
			stderr = &errBuf
		}
		if code := run(append([]string{"keyward", "--config", filepath.Join(dir, "keyward.toml")}, args...), stdin, &stdout, stderr); code != 0 {
			t.Fatalf("keyward %s: exit status %d\n%s%s", strings.Join(args, " "), code, stdout.String(), errBuf.String())
		}
		return stdout.String()
	}
	// The custodians' keys, and the fleet kit made on the workstation.
	var custodians []string
	ids := map[string]age.Identity{}
	for _, name := range []string{"alice", "bob", "carol"} {
		id, _ := age.GenerateX25519Identity()
		ids[name] = id
		write(name+".key", id.String()+"\n")
		custodians = append(custodians, "--custodian", write(name+".pub", id.Recipient().String()+"\n"))
	}
	ws := filepath.Join(dir, "ws")
	keyward(nil, nil, append([]string{"recovery", "init", "--fleet", "--threshold", "2", "--out", ws}, custodians...)...)
	write("keyward.toml", "[store]\ndir = "+quote(filepath.Join(dir, "store"))+"\nmachine_id_file = "+quote(machineID)+"\n"+
		"[pkcs11]\nuri = "+quote(tok.URI("keyward-kek"))+"\n[agent]\nsocket = "+quote(filepath.Join(dir, "agent.sock"))+"\n"+
		"[recovery]\nfleet_kit = "+quote(filepath.Join(ws, "fleet.kit"))+"\n")
	keyward(nil, nil, "init")
	keyward(strings.NewReader("fleet-secret"), nil, "put", "binance/mm-prod")
	// The new machine.
	write("machine-id", "fedcba9876543210fedcba9876543210\n")

	stdin, toRestore := io.Pipe()
	fromRestore, stderr := io.Pipe()
	done := make(chan string)
	go func() {
		defer stderr.Close()
		defer toRestore.Close()
		var stdout bytes.Buffer
		code := run([]string{"keyward", "--config", filepath.Join(dir, "keyward.toml"), "recovery", "restore"}, stdin, &stdout, stderr)
		done <- fmt.Sprintf("%s\nexit status %d", stdout.String(), code)
	}()
	sc := bufio.NewScanner(fromRestore)
	sc.Buffer(nil, 1<<20)
	var pq, classic string
	for sc.Scan() && classic == "" {
		switch l := sc.Text(); {
		case strings.HasPrefix(l, "age1pq1"):
			pq = l
		case strings.HasPrefix(l, "age1"):
			classic = l
		}
	}
	var rest bytes.Buffer
	go io.Copy(&rest, fromRestore)
	if pq == "" || classic == "" {
		t.Fatalf("restore printed no restore key")
	}
	// Alice, with Debian's age: age -d -i KEY FILE | age -a -r RESTORE_KEY.
	cmd := exec.Command("sh", "-c", `age -d -i "$1" "$2" | age -a -r "$3"`, "sh",
		filepath.Join(dir, "alice.key"), filepath.Join(ws, "share-1-alice.age"), classic)
	fromAlice, err := cmd.Output()
	if err != nil {
		t.Fatalf("alice's age: %v", err)
	}
	// Carol, with an age that knows post-quantum recipients.
	fromCarol := reencrypt(t, filepath.Join(ws, "share-3-carol.age"), ids["carol"], pq)
	for _, b := range [][]byte{fromAlice, fromCarol} {
		if bytes.Contains(b, []byte("keyward-recovery-1")) {
			t.Fatalf("a share crossed in clear: %s", b)
		}
		toRestore.Write(b)
	}
	toRestore.Close()
	out := <-done
	if !strings.HasSuffix(out, "exit status 0") || !strings.Contains(out, "restored 1 envelope(s) to pkcs11:") {
		t.Fatalf("restore: %s\n%s", out, rest.String())
	}
	if got := keyward(nil, nil, "list"); !regexp.MustCompile(`(?m)^binance/mm-prod\s+1\s+\S+\s+never\s+current$`).MatchString(got) {
		t.Errorf("list after restore:\n%s", got)
	}
}

// reencrypt is a custodian's age -d -i KEY FILE | age -a -r RECIPIENT.
func reencrypt(t *testing.T, file string, id age.Identity, recipient string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(armor.NewReader(f), id)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := age.ParseRecipients(strings.NewReader(recipient))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	aw := armor.NewWriter(&out)
	w, err := age.Encrypt(aw, rs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	w.Close()
	aw.Close()
	return out.Bytes()
}
