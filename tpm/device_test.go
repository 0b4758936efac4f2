package tpm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

// The tests in this file run against the in-process simulator, a fresh
// TPM (new seeds) for each test. None calls t.Parallel: the simulator is a
// process-wide singleton.

var _ store.Backend = (*tpm.Device)(nil)

func TestStoreConformanceSimulator(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	storetest.Run(t, d)
}

func TestStoreConformanceSimulatorPIN(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t), PIN: []byte("4711"), PCRs: sel(t, "0,7,16")})
	storetest.Run(t, d)
}

// sel parses a selection or fails the test.
func sel(t testing.TB, s string) tpm.Selection {
	t.Helper()
	v, err := tpm.ParseSelection(s)
	if err != nil {
		t.Fatalf("ParseSelection(%q) = %v", s, err)
	}
	return v
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestSealUnseal(t *testing.T) {
	sim := openSim(t)
	for _, tc := range []struct {
		name string
		pcrs string
		pin  string
		size int
	}{
		{"default/1", "", "", 1},
		{"default/32", "", "", 32},
		{"default/128", "", "", 128},
		{"three", "0,2,7", "", 32},
		{"all24", "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23", "", 32},
		{"pin", "7", "correct horse", 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tpm.Config{TPM: sim}
			if tc.pcrs != "" {
				cfg.PCRs = sel(t, tc.pcrs)
			}
			if tc.pin != "" {
				cfg.PIN = []byte(tc.pin)
			}
			d := openDevice(t, cfg)
			data := randomBytes(tc.size)
			blob, err := d.Seal(t.Context(), data)
			if err != nil {
				t.Fatalf("Seal(%d bytes) = %v", tc.size, err)
			}
			if tc.size >= 8 && bytes.Contains(blob, data) {
				t.Errorf("Seal() output contains the data")
			}
			if tc.pin != "" && bytes.Contains(blob, []byte(tc.pin)) {
				t.Errorf("Seal() output contains the PIN")
			}
			b, err := tpm.ParseBlob(blob)
			if err != nil {
				t.Fatalf("ParseBlob(Seal()) = %v", err)
			}
			if want := d.PCRSelection(); b.PCRs != want {
				t.Errorf("ParseBlob(Seal()).PCRs = %v, want %v", b.PCRs, want)
			}
			got, err := d.Unseal(t.Context(), blob)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Unseal(Seal(data)) = %x, %v; want %x", got, err, data)
			}
			if changed, err := d.Check(t.Context(), blob); err != nil || len(changed) != 0 {
				t.Errorf("Check() = %v, %v; want [], nil", changed, err)
			}
		})
	}
}

func TestSealSize(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	for _, n := range []int{0, tpm.MaxSealSize + 1, 4096} {
		if blob, err := d.Seal(t.Context(), make([]byte, n)); err == nil {
			t.Errorf("Seal(%d bytes) = %d-byte blob, nil; want an error", n, len(blob))
		}
	}
	// Unwrap refuses a blob holding anything but a data key.
	blob, err := d.Seal(t.Context(), []byte("sixteen byte pin"))
	if err != nil {
		t.Fatalf("Seal(16 bytes) = %v", err)
	}
	if k, err := d.Unwrap(context.Background(), blob); err == nil {
		t.Errorf("Unwrap(16-byte blob) = %x, nil; want an error", k)
	}
}

// TestPolicyDigest checks the software policy digest against a trial
// policy session on the TPM.
func TestPolicyDigest(t *testing.T) {
	sim := openSim(t)
	extend(t, sim, 16, "make PCR 16 non-zero")
	d := openDevice(t, tpm.Config{TPM: sim})
	for _, s := range []string{"7", "0,2,7", "16", "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23"} {
		for _, pin := range []bool{false, true} {
			selection := sel(t, s)
			vals, err := d.PCRs(t.Context(), selection)
			if err != nil {
				t.Fatalf("PCRs(%v) = %v", selection, err)
			}
			var values [][]byte
			for _, p := range selection.PCRs() {
				values = append(values, vals[p])
			}
			got := tpm.PolicyDigest(selection, values, pin)

			sess, closeSess, err := tpm2.PolicySession(sim, tpm2.TPMAlgSHA256, 16, tpm2.Trial())
			if err != nil {
				t.Fatalf("PolicySession(Trial) = %v", err)
			}
			pcrs := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
				Hash: tpm2.TPMAlgSHA256, PCRSelect: bitmap(selection),
			}}}
			if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrs}).Execute(sim); err != nil {
				t.Fatalf("PolicyPCR = %v", err)
			}
			if pin {
				if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(sim); err != nil {
					t.Fatalf("PolicyAuthValue = %v", err)
				}
			}
			want, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(sim)
			if err != nil {
				t.Fatalf("PolicyGetDigest = %v", err)
			}
			closeSess()
			if !bytes.Equal(got, want.PolicyDigest.Buffer) {
				t.Errorf("PolicyDigest(%s, pin=%v) = %x, want %x (trial session)", s, pin, got, want.PolicyDigest.Buffer)
			}
		}
	}
}

// bitmap returns the 3-byte PCR bitmap of s.
func bitmap(s tpm.Selection) []byte {
	b := make([]byte, 3)
	for _, p := range s.PCRs() {
		b[p/8] |= 1 << (p % 8)
	}
	return b
}

func TestPCRChange(t *testing.T) {
	sim := openSim(t)
	d := openDevice(t, tpm.Config{TPM: sim})
	ctx := context.Background()
	key := randomBytes(32)
	w, err := d.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	wide := openDevice(t, tpm.Config{TPM: sim, PCRs: sel(t, "0,7,16")})
	w2, err := wide.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}

	extend(t, sim, 7, "a new Secure Boot db")

	got, err := d.Unwrap(ctx, w)
	if got != nil {
		t.Errorf("Unwrap() after extending PCR 7 returned %d bytes", len(got))
	}
	if !errors.Is(err, tpm.ErrPolicy) || !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("Unwrap() after extending PCR 7 = %v, want ErrPolicy and TPM_RC_POLICY_FAIL", err)
	}
	var pe *tpm.PolicyError
	if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Changed, []int{7}) {
		t.Errorf("Unwrap() = %#v, want a *PolicyError with Changed [7]", err)
	}
	for _, want := range []string{"PCR 7 ", "keyward reseal", "break-glass"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Unwrap() error %q does not contain %q", err, want)
		}
	}
	if changed, err := d.Check(t.Context(), w); err != nil || !reflect.DeepEqual(changed, []int{7}) {
		t.Errorf("Check() = %v, %v; want [7], nil", changed, err)
	}

	_, err = wide.Unwrap(ctx, w2)
	if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Changed, []int{7}) {
		t.Errorf("Unwrap(sealed to 0,7,16) = %v, want a *PolicyError with Changed [7]", err)
	}
	extend(t, sim, 16, "debug")
	_, err = wide.Unwrap(ctx, w2)
	if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Changed, []int{7, 16}) {
		t.Errorf("Unwrap(sealed to 0,7,16) = %v, want a *PolicyError with Changed [7 16]", err)
	}
	if !strings.Contains(err.Error(), "PCRs 7, 16 ") {
		t.Errorf("Unwrap() error %q does not name PCRs 7 and 16", err)
	}

	// Sealing again binds the new values.
	w3, err := d.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if got, err := d.Unwrap(ctx, w3); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap(Wrap() after the change) = %v", err)
	}
}

// TestReseal shows the order of steps for a planned change of PCR 7: move
// the blob to a selection the change leaves alone before it, and back to
// PCR 7 after it. Resealing after the change is too late.
func TestReseal(t *testing.T) {
	sim := openSim(t)
	d := openDevice(t, tpm.Config{TPM: sim})
	secret := []byte("binance/mm-prod data key")
	blob, err := d.Seal(t.Context(), secret)
	if err != nil {
		t.Fatalf("Seal() = %v", err)
	}

	// 1. Before the update: re-seal to PCRs the update does not touch.
	interim, err := d.Reseal(t.Context(), blob, sel(t, "0"))
	if err != nil {
		t.Fatalf("Reseal(blob, 0) before the update = %v", err)
	}
	if b, _ := tpm.ParseBlob(interim); b == nil || b.PCRs.String() != "sha256:0" {
		t.Errorf("Reseal(blob, 0) did not seal to PCR 0")
	}
	// The same-selection reseal also works before the update.
	if _, err := d.Reseal(t.Context(), blob, tpm.Selection{}); err != nil {
		t.Errorf("Reseal(blob, zero) = %v", err)
	}

	// 2. The update changes PCR 7.
	extend(t, sim, 7, "dbx update")

	// Resealing the original blob now is too late.
	if _, err := d.Reseal(t.Context(), blob, sel(t, "0")); !errors.Is(err, tpm.ErrPolicy) {
		t.Errorf("Reseal(blob) after the update = %v, want ErrPolicy", err)
	}
	// The interim blob still unseals.
	if got, err := d.Unseal(t.Context(), interim); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal(interim) after the update = %q, %v; want the secret", got, err)
	}

	// 3. After the update: re-seal to PCR 7, binding its new value.
	final, err := d.Reseal(t.Context(), interim, sel(t, "7"))
	if err != nil {
		t.Fatalf("Reseal(interim, 7) after the update = %v", err)
	}
	if got, err := d.Unseal(t.Context(), final); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("Unseal(final) = %q, %v; want the secret", got, err)
	}
	extend(t, sim, 7, "unplanned change")
	if _, err := d.Unseal(t.Context(), final); !errors.Is(err, tpm.ErrPolicy) {
		t.Errorf("Unseal(final) after another change = %v, want ErrPolicy", err)
	}
}

func TestAnotherTPM(t *testing.T) {
	sim := openSim(t)
	d, err := tpm.Open(tpm.Config{TPM: sim})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ctx := context.Background()
	key := randomBytes(32)
	w, err := d.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	first := d.KeyID()
	d.Close()
	sim.Close()

	// A fresh simulator is manufactured with new seeds: another TPM.
	other := openDevice(t, tpm.Config{TPM: openSim(t)})
	if other.KeyID() == first {
		t.Fatalf("two simulators have the same KeyID %s", first)
	}
	got, err := other.Unwrap(ctx, w)
	if got != nil || !errors.Is(err, tpm.ErrNotThisTPM) {
		t.Fatalf("Unwrap() on another TPM = %x, %v; want ErrNotThisTPM", got, err)
	}
	var ie interface{ IntegrityFailure() bool }
	if !errors.As(err, &ie) || !ie.IntegrityFailure() {
		t.Errorf("Unwrap() on another TPM = %v; want an integrity failure for the store", err)
	}
	for _, want := range []string{first, other.KeyID(), "break-glass"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Unwrap() error %q does not contain %q", err, want)
		}
	}
	if _, err := other.Check(t.Context(), w); !errors.Is(err, tpm.ErrNotThisTPM) {
		t.Errorf("Check() on another TPM = %v, want ErrNotThisTPM", err)
	}
}

func TestPIN(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	pin := []byte("2468-secret")
	cfgPIN := bytes.Clone(pin)
	d := openDevice(t, tpm.Config{TPM: sim, PIN: cfgPIN})
	clear(cfgPIN) // Open copied it
	key := randomBytes(32)
	w, err := d.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if bytes.Contains(w, pin) {
		t.Errorf("Wrap() output contains the PIN")
	}
	if got, err := d.Unwrap(ctx, w); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap() with the right PIN = %v", err)
	}

	wrong := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("1357-guess")})
	got, err := wrong.Unwrap(ctx, w)
	if got != nil || !errors.Is(err, tpm.ErrBadPIN) {
		t.Fatalf("Unwrap() with a wrong PIN = %x, %v; want nil, ErrBadPIN", got, err)
	}
	if !errors.Is(err, tpm2.TPMRCAuthFail) {
		t.Errorf("Unwrap() with a wrong PIN = %v; want TPM_RC_AUTH_FAIL inside", err)
	}
	for _, p := range [][]byte{pin, []byte("1357-guess")} {
		if strings.Contains(err.Error(), string(p)) {
			t.Errorf("Unwrap() error contains a PIN: %q", err)
		}
	}
	if !strings.Contains(err.Error(), "lockout") {
		t.Errorf("Unwrap() error %q does not warn about lockout", err)
	}

	wrong.Close() // the simulator holds 3 objects: 2 SRKs and a sealed object
	none := openDevice(t, tpm.Config{TPM: sim})
	if got, err := none.Unwrap(ctx, w); got != nil || !errors.Is(err, tpm.ErrBadPIN) {
		t.Errorf("Unwrap() of a PIN blob without a PIN = %x, %v; want ErrBadPIN", got, err)
	}
	// A blob sealed without a PIN unseals on a Device with one.
	w0, err := none.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if got, err := d.Unwrap(ctx, w0); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap(no-PIN blob) with a PIN = %v", err)
	}
	// The PIN is not enough: the PCR policy still applies.
	extend(t, sim, 7, "x")
	if _, err := d.Unwrap(ctx, w); !errors.Is(err, tpm.ErrPolicy) {
		t.Errorf("Unwrap() with the right PIN after a PCR change = %v, want ErrPolicy", err)
	}
}

func TestPINLockout(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("right")})
	w, err := d.Wrap(ctx, randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	wrong := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("wrong")})
	// The simulator allows 3 failures.
	var last error
	for range 10 {
		if _, last = wrong.Unwrap(ctx, w); !errors.Is(last, tpm.ErrBadPIN) {
			break
		}
	}
	if !errors.Is(last, tpm.ErrLockout) || !errors.Is(last, tpm2.TPMRCLockout) {
		t.Fatalf("Unwrap() after repeated wrong PINs = %v, want ErrLockout", last)
	}
	for _, want := range []string{"tpm2_dictionarylockout", "about"} {
		if !strings.Contains(last.Error(), want) {
			t.Errorf("Unwrap() error %q does not contain %q", last, want)
		}
	}
	if _, err := d.Unwrap(ctx, w); !errors.Is(err, tpm.ErrLockout) {
		t.Errorf("Unwrap() with the right PIN in lockout = %v, want ErrLockout", err)
	}
	// Objects without a PIN are not subject to lockout.
	wrong.Close() // the simulator holds 3 objects: 2 SRKs and a sealed object
	none := openDevice(t, tpm.Config{TPM: sim})
	w0, err := none.Wrap(ctx, randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if _, err := none.Unwrap(ctx, w0); err != nil {
		t.Errorf("Unwrap(no-PIN blob) in lockout = %v", err)
	}
}

func TestConfig(t *testing.T) {
	sim := openSim(t)
	for _, tc := range []struct {
		name string
		cfg  tpm.Config
		want string
	}{
		{"no TPM", tpm.Config{}, "Config.TPM is required"},
		{"long PIN", tpm.Config{TPM: sim, PIN: bytes.Repeat([]byte{'1'}, 33)}, "longer than 32"},
		{"zero-terminated PIN", tpm.Config{TPM: sim, PIN: []byte("1234\x00")}, "zero byte"},
		{"transient SRK handle", tpm.Config{TPM: sim, PersistentSRK: 0x80000000}, "not a persistent handle"},
		{"missing SRK", tpm.Config{TPM: sim, PersistentSRK: 0x81000001}, "tpm2_getcap handles-persistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tpm.Open(tc.cfg)
			if err == nil {
				d.Close()
				t.Fatalf("Open() = nil error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open() = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("Open() error contains the PIN")
			}
		})
	}
}

func TestPersistentSRK(t *testing.T) {
	sim := openSim(t)
	created := openDevice(t, tpm.Config{TPM: sim})
	key := randomBytes(32)
	w, err := created.Wrap(context.Background(), key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}

	// Persist the standard ECC SRK at 0x81000001, as tpm2_evictcontrol does.
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(sim)
	if err != nil {
		t.Fatalf("CreatePrimary() = %v", err)
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     &tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: 0x81000001,
	}.Execute(sim)
	tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(sim)
	if err != nil {
		t.Fatalf("EvictControl() = %v", err)
	}

	p := openDevice(t, tpm.Config{TPM: sim, PersistentSRK: 0x81000001})
	if p.KeyID() != created.KeyID() {
		t.Errorf("KeyID() with the persisted SRK = %s, want %s (same template, same key)", p.KeyID(), created.KeyID())
	}
	if got, err := p.Unwrap(context.Background(), w); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap() under the persisted SRK = %v", err)
	}
	if err := p.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy() = %v", err)
	}

	// A persistent handle that is not a storage key is refused.
	sealed, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true, SignEncrypt: true, SensitiveDataOrigin: true},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgHMAC, Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256})},
			}),
		}),
	}.Execute(sim)
	if err != nil {
		t.Fatalf("CreatePrimary(HMAC key) = %v", err)
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     &tpm2.NamedHandle{Handle: sealed.ObjectHandle, Name: sealed.Name},
		PersistentHandle: 0x81000002,
	}.Execute(sim)
	tpm2.FlushContext{FlushHandle: sealed.ObjectHandle}.Execute(sim)
	if err != nil {
		t.Fatalf("EvictControl() = %v", err)
	}
	if d, err := tpm.Open(tpm.Config{TPM: sim, PersistentSRK: 0x81000002}); err == nil || !strings.Contains(err.Error(), "not a storage key") {
		if d != nil {
			d.Close()
		}
		t.Errorf("Open(PersistentSRK: HMAC key) = %v, want \"not a storage key\"", err)
	}
}

// TestTamper flips every bit position class in every byte of a blob:
// each must fail, with an error the store sees as an integrity failure,
// and never return the data.
func TestTamper(t *testing.T) {
	sim := openSim(t)
	for _, pin := range []string{"", "pin"} {
		t.Run("pin="+pin, func(t *testing.T) {
			d := openDevice(t, tpm.Config{TPM: sim, PCRs: sel(t, "7,16"), PIN: []byte(pin)})
			key := randomBytes(32)
			w, err := d.Wrap(context.Background(), key)
			if err != nil {
				t.Fatalf("Wrap() = %v", err)
			}
			regions := blobRegions(t, w)
			kinds := map[string]map[string]int{}
			for i := range w {
				for _, mask := range []byte{0x01, 0x80} {
					bad := bytes.Clone(w)
					bad[i] ^= mask
					got, err := d.Unwrap(context.Background(), bad)
					region := regions[i]
					if err == nil || got != nil {
						t.Fatalf("Unwrap(byte %d (%s) ^ %#x) = %x, %v; want nil and an error", i, region, mask, got, err)
					}
					if bytes.Contains([]byte(err.Error()), key[:4]) {
						t.Errorf("Unwrap(byte %d) error mentions key bytes", i)
					}
					var ie interface{ IntegrityFailure() bool }
					if !errors.As(err, &ie) || !ie.IntegrityFailure() {
						t.Errorf("Unwrap(byte %d (%s) ^ %#x) = %v; want an integrity failure", i, region, mask, err)
					}
					if kinds[region] == nil {
						kinds[region] = map[string]int{}
					}
					kinds[region][errKind(err)]++
				}
			}
			for _, r := range []string{"version", "selection", "values", "srk name", "public", "private"} {
				if len(kinds[r]) == 0 {
					t.Errorf("no byte of region %q was tampered with", r)
				}
				t.Logf("%-10s %v", r, kinds[r])
			}
			// Truncation and extension.
			for _, b := range [][]byte{w[:len(w)-1], w[:len(w)/2], append(bytes.Clone(w), 0)} {
				var pe *tpm.ParseError
				if _, err := d.Unwrap(context.Background(), b); !errors.As(err, &pe) {
					t.Errorf("Unwrap(%d of %d bytes) = %v, want a *ParseError", len(b), len(w), err)
				}
			}
			if got, err := d.Unwrap(context.Background(), w); err != nil || !bytes.Equal(got, key) {
				t.Errorf("Unwrap(original) after tampering = %v", err)
			}
		})
	}
}

// errKind names the kind of a tamper error.
func errKind(err error) string {
	var pe *tpm.ParseError
	switch {
	case errors.As(err, &pe):
		return "parse"
	case errors.Is(err, tpm.ErrNotThisTPM):
		return "not-this-tpm"
	case errors.Is(err, tpm.ErrIntegrity):
		if errors.Is(err, tpm2.TPMRCIntegrity) {
			return "integrity(TPM_RC_INTEGRITY)"
		}
		var rc tpm2.TPMRC
		var f1 tpm2.TPMFmt1Error
		if errors.As(err, &rc) || errors.As(err, &f1) {
			return "integrity(TPM)"
		}
		return "integrity(keyward)"
	default:
		return "other: " + err.Error()
	}
}

// blobRegions names the region of each byte of a blob.
func blobRegions(t *testing.T, w []byte) []string {
	t.Helper()
	b, err := tpm.ParseBlob(w)
	if err != nil {
		t.Fatalf("ParseBlob() = %v", err)
	}
	var r []string
	add := func(name string, n int) {
		for range n {
			r = append(r, name)
		}
	}
	add("version", 1)
	add("selection", 6)
	add("values", 32*len(b.Values))
	add("srk name", 2+len(b.SRKName))
	add("public", 2+len(b.Public))
	add("private", 2+len(b.Private))
	if len(r) != len(w) {
		t.Fatalf("regions cover %d bytes of %d", len(r), len(w))
	}
	return r
}

func TestNotATPMBlob(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	hsmLike := append([]byte{0x01}, randomBytes(60)...)
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"hsm", hsmLike},
		{"nil", nil},
		{"empty", []byte{}},
		{"version 2", append([]byte{0x02}, randomBytes(300)...)},
		{"random", randomBytes(315)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.Unwrap(context.Background(), tc.blob)
			var pe *tpm.ParseError
			if got != nil || !errors.As(err, &pe) || !pe.Foreign {
				t.Fatalf("Unwrap(%s) = %x, %v; want a foreign *ParseError", tc.name, got, err)
			}
			if !strings.Contains(err.Error(), "not a TPM-sealed blob") {
				t.Errorf("Unwrap(%s) = %q, want \"not a TPM-sealed blob\"", tc.name, err)
			}
			if _, err := d.Check(t.Context(), tc.blob); !errors.As(err, &pe) {
				t.Errorf("Check(%s) = %v, want a *ParseError", tc.name, err)
			}
			if _, err := d.Reseal(t.Context(), tc.blob, tpm.Selection{}); !errors.As(err, &pe) {
				t.Errorf("Reseal(%s) = %v, want a *ParseError", tc.name, err)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Go(func() {
			key := bytes.Repeat([]byte{byte(g)}, 32)
			for range 25 {
				w, err := d.Wrap(ctx, key)
				if err != nil {
					errs <- err
					return
				}
				got, err := d.Unwrap(ctx, w)
				if err != nil || !bytes.Equal(got, key) {
					errs <- errors.Join(err, errors.New("round trip mismatch"))
					return
				}
				if err := d.Healthy(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Wrap/Unwrap: %v", err)
	}
}

func TestClose(t *testing.T) {
	sim := openSim(t)
	d, err := tpm.Open(tpm.Config{TPM: sim, PIN: []byte("1234")})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ctx := context.Background()
	w, err := d.Wrap(ctx, randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !d.PINCleared() {
		t.Errorf("Close() left the PIN in memory")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if _, err := d.Wrap(ctx, randomBytes(32)); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Wrap() after Close = %v, want ErrClosed", err)
	}
	if _, err := d.Unwrap(ctx, w); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Unwrap() after Close = %v, want ErrClosed", err)
	}
	if err := d.Healthy(ctx); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Healthy() after Close = %v, want ErrClosed", err)
	}
	// Close flushed the SRK: the TPM holds no transient object.
	if n := transientObjects(t, sim); n != 0 {
		t.Errorf("after Close the TPM holds %d transient objects, want 0", n)
	}
}

// transientObjects counts the transient objects loaded in the TPM.
func transientObjects(t testing.TB, tp transport.TPM) int {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: 0x80000000, PropertyCount: 64}.Execute(tp)
	if err != nil {
		t.Fatalf("GetCapability(handles) = %v", err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatalf("Handles() = %v", err)
	}
	return len(h.Handle)
}

// sessions counts the loaded and saved sessions in the TPM.
func sessions(t testing.TB, tp transport.TPM) int {
	t.Helper()
	n := 0
	for _, first := range []uint32{0x02000000, 0x03000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(tp)
		if err != nil {
			t.Fatalf("GetCapability(handles) = %v", err)
		}
		h, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatalf("Handles() = %v", err)
		}
		n += len(h.Handle)
	}
	return n
}

// TestNoLeaks checks that every path, failing ones included, flushes its
// sessions and objects: only the SRK stays loaded.
func TestNoLeaks(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("1234")})
	wrong := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("9999")})
	w, err := d.Wrap(ctx, randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	d.Unwrap(ctx, w)
	wrong.Unwrap(ctx, w) // TPM_RC_AUTH_FAIL
	bad := bytes.Clone(w)
	bad[len(bad)-1] ^= 1
	d.Unwrap(ctx, bad) // TPM_RC_INTEGRITY at Load
	extend(t, sim, 7, "x")
	d.Unwrap(ctx, w) // TPM_RC_POLICY_FAIL
	d.Reseal(t.Context(), w, tpm.Selection{})
	d.Healthy(ctx)
	if n := transientObjects(t, sim); n != 2 {
		t.Errorf("the TPM holds %d transient objects, want 2 (the SRKs of two Devices)", n)
	}
	if n := sessions(t, sim); n != 0 {
		t.Errorf("the TPM holds %d sessions, want 0", n)
	}
}

func TestContext(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Wrap(ctx, randomBytes(32)); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap(cancelled context) = %v, want context.Canceled", err)
	}
	if err := d.Healthy(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Healthy(cancelled context) = %v, want context.Canceled", err)
	}
}

// flakyTPM answers the first n commands with TPM_RC_RETRY without passing
// them on, as a busy TPM may.
type flakyTPM struct {
	transport.TPM
	n int
}

func (f *flakyTPM) Send(cmd []byte) ([]byte, error) {
	if f.n > 0 {
		f.n--
		return []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x22}, nil // TPM_RC_RETRY
	}
	return f.TPM.Send(cmd)
}

func TestRetry(t *testing.T) {
	f := &flakyTPM{TPM: openSim(t), n: 2}
	d := openDevice(t, tpm.Config{TPM: f})
	f.n = 3
	w, err := d.Wrap(context.Background(), randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() after TPM_RC_RETRY = %v", err)
	}
	f.n = 3
	if _, err := d.Unwrap(context.Background(), w); err != nil {
		t.Errorf("Unwrap() after TPM_RC_RETRY = %v", err)
	}
}

func TestPCRs(t *testing.T) {
	sim := openSim(t)
	d := openDevice(t, tpm.Config{TPM: sim})
	all := sel(t, "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23")
	before, err := d.PCRs(t.Context(), all)
	if err != nil || len(before) != 24 {
		t.Fatalf("PCRs(all) = %d values, %v; want 24", len(before), err)
	}
	extend(t, sim, 23, "x")
	after, err := d.PCRs(t.Context(), tpm.Selection{})
	if err != nil || len(after) != 1 || after[7] == nil {
		t.Fatalf("PCRs(zero) = %v, %v; want PCR 7 only", after, err)
	}
	after, _ = d.PCRs(t.Context(), all)
	for p := range 24 {
		if changed := !bytes.Equal(before[p], after[p]); changed != (p == 23) {
			t.Errorf("PCR %d changed = %v after extending PCR 23", p, changed)
		}
	}
}

func TestOpenDevice(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, path := range []string{filepath.Join(dir, "tpmrm0"), file, dir} {
		tp, err := tpm.OpenDevice(path)
		if err == nil {
			tp.Close()
		}
		if !errors.Is(err, tpm.ErrNoDevice) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenDevice(%q) = %v, want ErrNoDevice naming the path", path, err)
		}
	}
	if _, err := os.Stat(tpm.DefaultDevicePath); errors.Is(err, os.ErrNotExist) {
		_, err := tpm.OpenDevice("")
		if !errors.Is(err, tpm.ErrNoDevice) || !strings.Contains(err.Error(), "ls /dev/tpm") {
			t.Errorf("OpenDevice(\"\") without a TPM = %v, want ErrNoDevice with a hint", err)
		}
	}
}
