package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/pin"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

func TestSoftHSMConformance(t *testing.T) {
	b, _ := storetest.SoftHSMBackend(t)
	storetest.Run(t, b)
}

func TestSoftHSMTamper(t *testing.T) {
	b, _ := storetest.SoftHSMBackend(t)
	RunTamper(t, b)
}

// TestEnvelopeDoesNotLeak: neither the value nor the data key appears in
// the envelope or the token's files.
func TestEnvelopeDoesNotLeak(t *testing.T) {
	b, tok := storetest.SoftHSMBackend(t)
	s := newStore(t, b)
	const value = "leak-canary-9d7c1e5f"
	mustPut(t, s, "binance/mm-prod", value, store.PutOptions{})
	for _, dir := range []string{s.Dir(), tok.TokenDir} {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(value)) {
				t.Errorf("%s contains the plaintext", path)
			}
			return nil
		})
	}
}

// writerEnv makes the test binary a writer that puts secrets until killed.
const writerEnv = "KEYWARD_STORE_TEST_WRITER"

// rewrapperEnv makes the test binary re-wrap a store to a new key label
// until killed or done.
const rewrapperEnv = "KEYWARD_STORE_TEST_REWRAPPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(writerEnv); dir != "" {
		os.Exit(runWriter(dir))
	}
	if dir := os.Getenv(rewrapperEnv); dir != "" {
		os.Exit(runRewrapper(dir))
	}
	os.Exit(m.Run())
}

// openLabel opens (creating if needed) the key labelled label on the token
// of the URI in $KEYWARD_STORE_TEST_URI.
func openLabel(label string) (*hsm.Token, error) {
	u, err := hsm.ParseURI(os.Getenv("KEYWARD_STORE_TEST_URI"))
	if err != nil {
		return nil, err
	}
	userPIN, err := pin.Read(pin.Source{Credential: "keyward-pin", URIFile: u.PINFile()})
	if err != nil {
		return nil, err
	}
	tok, _, err := hsm.Init(hsm.Config{URI: u.WithObject(label), PIN: userPIN})
	return tok, err
}

// runRewrapper re-wraps the store in dir from the key it records (or
// "kek") to the label in $KEYWARD_STORE_TEST_LABEL.
func runRewrapper(dir string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	oldLabel, err := store.RootKeyLabel(dir)
	if err != nil {
		return fail(err)
	}
	if oldLabel == "" {
		oldLabel = "kek"
	}
	from, err := openLabel(oldLabel)
	if err != nil {
		return fail(err)
	}
	to, err := openLabel(os.Getenv("KEYWARD_STORE_TEST_LABEL"))
	if err != nil {
		return fail(err)
	}
	s, err := store.New(store.Config{Dir: dir, Backend: from, Host: testHost})
	if err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	if _, err := s.RewrapTo(context.Background(), to, labelRecord(os.Getenv("KEYWARD_STORE_TEST_LABEL"))); err != nil {
		return fail(err)
	}
	return 0
}

// runWriter puts new versions of a few secrets as fast as it can. Its
// store and token URI come from the environment, the PIN from the
// URI's pin-source file.
func runWriter(dir string) int {
	u, err := hsm.ParseURI(os.Getenv("KEYWARD_STORE_TEST_URI"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	userPIN, err := pin.Read(pin.Source{Credential: "keyward-pin", URIFile: u.PINFile()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := hsm.Open(hsm.Config{URI: u, PIN: userPIN})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := store.New(store.Config{Dir: dir, Backend: b, Host: testHost})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	value := make([]byte, 4096)
	// Logged in: from here on the token's own files are not written, so a
	// kill can only interrupt the store's writes, which are under test.
	fmt.Println("ready")
	for i := 0; ; i++ {
		name := "crash/s" + strconv.Itoa(i%5)
		if _, err := s.Put(context.Background(), name, value, store.PutOptions{NewVersion: true}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
}

// TestCrashSafety kills a writer with SIGKILL at random points during many
// puts; every envelope left must be complete and decrypt.
func TestCrashSafety(t *testing.T) {
	b, tok := storetest.SoftHSMBackend(t)
	s := newStore(t, b)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	ctx := context.Background()
	for round := range rounds {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), writerEnv+"="+s.Dir(), "KEYWARD_STORE_TEST_URI="+tok.URI("kek"))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// SoftHSM rewrites its token file at login, and a kill then can
		// destroy the token: kill only once the writer is logged in.
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: writer did not start: %q, %v", round, line, err)
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: writer ended with %v before it was killed", round, err)
		}
		envs, damaged, err := s.List()
		if err != nil || len(damaged) > 0 {
			t.Fatalf("round %d: List() = %v damaged, %v", round, damaged, err)
		}
		for _, e := range envs {
			sec, err := s.OpenEnvelope(ctx, e)
			if err != nil {
				t.Fatalf("round %d: %s version %d does not open: %v", round, e.Name, e.Version, err)
			}
			sec.Destroy()
		}
		t.Logf("round %d: %d complete envelopes", round, len(envs))
	}
	envs, _, _ := s.List()
	if len(envs) == 0 {
		t.Fatal("the writer stored nothing; the test proved nothing")
	}
	// A later writer removes the temporary files a killed one left.
	mustPut(t, s, "after/crash", "x", store.PutOptions{})
	if tmp, _ := filepath.Glob(filepath.Join(s.Dir(), ".tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary files left after a clean put: %v", tmp)
	}
}

// TestRewrapKilled kills a key-encryption-key rotation with SIGKILL at
// random points: after each kill every envelope opens with the old or the
// new key, and running the rotation again completes it, with the store
// switched to the new key.
func TestRewrapKilled(t *testing.T) {
	ctx := context.Background()
	b, tok := storetest.SoftHSMBackend(t)
	s := newStore(t, b)
	for i := range 60 {
		mustPut(t, s, fmt.Sprintf("exchange/key-%02d", i), fmt.Sprintf("value-%02d", i), store.PutOptions{})
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]*hsm.Token{"kek": b}
	key := func(label string) *hsm.Token {
		if keys[label] == nil {
			u, _ := hsm.ParseURI(tok.URI(label))
			k, _, err := hsm.Init(hsm.Config{URI: u, PIN: tok.PIN})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { k.Close() })
			keys[label] = k
		}
		return keys[label]
	}
	rounds := 6
	if testing.Short() {
		rounds = 3
	}
	for round := 1; round <= rounds; round++ {
		label := fmt.Sprintf("kek-%d", round)
		key(label) // created here, so the child only finds it
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), rewrapperEnv+"="+s.Dir(), "KEYWARD_STORE_TEST_URI="+tok.URI("kek"), "KEYWARD_STORE_TEST_LABEL="+label)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: rewrapper did not start: %q, %v", round, line, err)
		}
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		// Killed anywhere: every envelope opens under the key it names.
		envs, damaged, err := s.List()
		if err != nil || len(damaged) > 0 || len(envs) != 60 {
			t.Fatalf("round %d: List() = %d, %v, %v", round, len(envs), damaged, err)
		}
		moved := 0
		for _, e := range envs {
			if e.KeyID == key(label).KeyID() {
				moved++
			}
			k := keys["kek"]
			for l, kk := range keys {
				if kk.KeyID() == e.KeyID {
					k = keys[l]
				}
			}
			ks, _ := store.New(store.Config{Dir: s.Dir(), Backend: k, Host: testHost})
			sec, err := ks.OpenEnvelope(ctx, e)
			if err != nil {
				t.Fatalf("round %d: %s does not open under %s: %v", round, e.Name, e.KeyID, err)
			}
			sec.Destroy()
		}

		t.Logf("round %d: killed with %d of 60 envelopes under the new key", round, moved)

		// Running it again completes it.
		current, _ := store.RootKeyLabel(s.Dir())
		if current == "" {
			current = "kek"
		}
		from, _ := store.New(store.Config{Dir: s.Dir(), Backend: key(current), Host: testHost})
		if current != label {
			if _, err := from.RewrapTo(ctx, key(label), labelRecord(label)); err != nil {
				t.Fatalf("round %d: re-run RewrapTo() = %v", round, err)
			}
		}
		if got, _ := store.RootKeyLabel(s.Dir()); got != label {
			t.Fatalf("round %d: the store records key %q, want %q", round, got, label)
		}
		done, _ := store.New(store.Config{Dir: s.Dir(), Backend: key(label), Host: testHost})
		envs, _, _ = done.List()
		for _, e := range envs {
			if e.KeyID != key(label).KeyID() {
				t.Fatalf("round %d: %s is under %s after completion, want %s", round, e.Name, e.KeyID, key(label).KeyID())
			}
			sec, err := done.OpenEnvelope(ctx, e)
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, e.Name, err)
			}
			sec.Destroy()
		}
		t.Logf("round %d: complete under %s", round, label)
	}
}

// labelRecord is the key record that switches a store to the HSM key label.
func labelRecord(label string) map[string][]byte {
	return map[string][]byte{store.RootKeyFile: []byte(label + "\n")}
}
