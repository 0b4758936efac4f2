package tpm_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

// The tests in this file run against a private swtpm process each, end to
// end over its Unix socket, as keyward talks to a TPM socket in
// production. swtpm has no resource manager: a leaked handle shows.

// openSwTPM starts swtpm and opens it through OpenDevice.
func openSwTPM(t testing.TB) (*testenv.SwTPMProcess, transport.TPMCloser) {
	t.Helper()
	s := testenv.SwTPM(t)
	tp, err := tpm.OpenDevice(s.Socket)
	if err != nil {
		t.Fatalf("OpenDevice(%s) = %v", s.Socket, err)
	}
	t.Cleanup(func() { tp.Close() })
	return s, tp
}

func TestStoreConformanceSwTPM(t *testing.T) {
	_, tp := openSwTPM(t)
	d := openDevice(t, tpm.Config{TPM: tp})
	storetest.Run(t, d)
	if n := transientObjects(t, tp); n != 1 {
		t.Errorf("swtpm holds %d transient objects, want 1 (the SRK)", n)
	}
	if n := sessions(t, tp); n != 0 {
		t.Errorf("swtpm holds %d sessions, want 0", n)
	}
}

func TestStoreKeyConformanceSwTPM(t *testing.T) {
	_, tp := openSwTPM(t)
	d := openDevice(t, tpm.Config{TPM: tp})
	k, _ := newStoreKey(t, d)
	storetest.Run(t, k)
	if n := transientObjects(t, tp); n != 1 {
		t.Errorf("swtpm holds %d transient objects, want 1 (the SRK)", n)
	}
	if n := sessions(t, tp); n != 0 {
		t.Errorf("swtpm holds %d sessions, want 0", n)
	}
}

// TestSwTPMReboot seals, power-cycles the TPM, and unseals: PCR 7 starts
// from the same value after every reset on swtpm (no firmware measures
// anything into it), so the policy still holds. The running Device
// notices that its SRK was flushed by the reset and creates it again,
// with the same Name; a Device opened after the reboot works too.
func TestSwTPMReboot(t *testing.T) {
	s, tp := openSwTPM(t)
	d := openDevice(t, tpm.Config{TPM: tp})
	ctx := context.Background()
	key := randomBytes(32)
	w, err := d.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	before, err := d.PCRs(t.Context(), tpm.Selection{})
	if err != nil {
		t.Fatalf("PCRs() = %v", err)
	}
	extend(t, tp, 7, "changed before the reboot")
	if _, err := d.Unwrap(ctx, w); err == nil {
		t.Fatalf("Unwrap() after extending PCR 7 = nil error, want ErrPolicy")
	}

	s.Reboot(t)

	after, err := d.PCRs(t.Context(), tpm.Selection{})
	if err != nil {
		t.Fatalf("PCRs() after Reboot = %v", err)
	}
	if !bytes.Equal(after[7], before[7]) {
		t.Fatalf("PCR 7 after Reboot = %x, want %x as after the previous start", after[7], before[7])
	}
	if got, err := d.Unwrap(ctx, w); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap() after Reboot with the running Device = %v", err)
	}
	if err := d.Healthy(ctx); err != nil {
		t.Errorf("Healthy() after Reboot = %v", err)
	}

	fresh := openDevice(t, tpm.Config{TPM: tp})
	if fresh.KeyID() != d.KeyID() {
		t.Errorf("KeyID() after Reboot = %s, want %s", fresh.KeyID(), d.KeyID())
	}
	if got, err := fresh.Unwrap(ctx, w); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap() after Reboot with a new Device = %v", err)
	}
	if n := transientObjects(t, tp); n != 2 {
		t.Errorf("swtpm holds %d transient objects, want 2 (the SRKs of two Devices)", n)
	}
	if n := sessions(t, tp); n != 0 {
		t.Errorf("swtpm holds %d sessions, want 0", n)
	}
}
