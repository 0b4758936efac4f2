package tpm_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/keyward/keyward/tpm"
)

// openSim starts a fresh in-process simulator (new seeds each time) and
// closes it at the end of the test. The simulator is a process-wide
// singleton: TPM tests never call t.Parallel.
func openSim(t testing.TB) transport.TPMCloser {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("OpenSimulator() = %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// openDevice opens a Device on t and closes it at the end of the test.
func openDevice(t testing.TB, cfg tpm.Config) *tpm.Device {
	t.Helper()
	d, err := tpm.Open(cfg)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return d
}

// extend extends PCR pcr of the SHA-256 bank with the hash of event.
func extend(t testing.TB, tp transport.TPM, pcr int, event string) {
	t.Helper()
	sum := sha256.Sum256([]byte(event))
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256, Digest: sum[:],
		}}},
	}.Execute(tp)
	if err != nil {
		t.Fatalf("PCRExtend(%d) = %v", pcr, err)
	}
}

// cmdCounter is a transport.TPM that counts the commands sent through it,
// by command code, so that tests and benchmarks can state the cost of an
// operation in TPM commands: on swtpm and the simulator a command costs
// far less than on a kernel TPM stack, so wall time hides it.
type cmdCounter struct {
	transport.TPM

	mu sync.Mutex
	n  map[tpm2.TPMCC]int
}

// countCommands returns a cmdCounter sending to tp.
func countCommands(tp transport.TPM) *cmdCounter {
	return &cmdCounter{TPM: tp, n: map[tpm2.TPMCC]int{}}
}

// Send implements transport.TPM.
func (c *cmdCounter) Send(cmd []byte) ([]byte, error) {
	if len(cmd) >= 10 {
		c.mu.Lock()
		c.n[tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))]++
		c.mu.Unlock()
	}
	return c.TPM.Send(cmd)
}

// Total returns the number of commands sent since the last Reset.
func (c *cmdCounter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

// Reset sets every count to zero.
func (c *cmdCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.n)
}

// String lists the counts by command code, e.g. "CreatePrimary=1 Load=1".
func (c *cmdCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	codes := slices.Sorted(maps.Keys(c.n))
	s := make([]string, len(codes))
	for i, cc := range codes {
		name, ok := ccNames[cc]
		if !ok {
			name = fmt.Sprintf("0x%03x", uint32(cc))
		}
		s[i] = fmt.Sprintf("%s=%d", name, c.n[cc])
	}
	return strings.Join(s, " ")
}

// ccNames names the commands keyward sends (go-tpm has no String method
// for TPMCC).
var ccNames = map[tpm2.TPMCC]string{
	tpm2.TPMCCCreatePrimary:    "CreatePrimary",
	tpm2.TPMCCCreate:           "Create",
	tpm2.TPMCCLoad:             "Load",
	tpm2.TPMCCUnseal:           "Unseal",
	tpm2.TPMCCFlushContext:     "FlushContext",
	tpm2.TPMCCStartAuthSession: "StartAuthSession",
	tpm2.TPMCCPolicyPCR:        "PolicyPCR",
	tpm2.TPMCCPolicyAuthValue:  "PolicyAuthValue",
	tpm2.TPMCCPCRRead:          "PCR_Read",
	tpm2.TPMCCReadPublic:       "ReadPublic",
	tpm2.TPMCCGetCapability:    "GetCapability",
}
