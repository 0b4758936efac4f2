package tpm_test

import (
	"crypto/sha256"
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
