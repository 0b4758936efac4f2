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

func TestMain(m *testing.M) {
	if dir := os.Getenv(writerEnv); dir != "" {
		os.Exit(runWriter(dir))
	}
	os.Exit(m.Run())
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
	pin, err := hsm.ReadPIN(hsm.PINSource{URI: u})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := hsm.Open(hsm.Config{URI: u, PIN: pin})
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
