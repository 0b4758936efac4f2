package tpm_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

// The tests in this file run against the in-process simulator, like
// device_test.go; swtpm_test.go runs the conformance suite on swtpm too.

var _ store.Backend = (*tpm.StoreKey)(nil)

// newStoreKey makes a store key with d and closes it at the end of the
// test; it returns the sealed blob too.
func newStoreKey(t testing.TB, d *tpm.Device) (*tpm.StoreKey, []byte) {
	t.Helper()
	k, sealed, err := tpm.NewStoreKey(context.Background(), d)
	if err != nil {
		t.Fatalf("NewStoreKey() = %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k, sealed
}

// openStoreKey opens sealed with d and closes it at the end of the test.
func openStoreKey(t testing.TB, d *tpm.Device, sealed []byte) *tpm.StoreKey {
	t.Helper()
	k, err := tpm.OpenStoreKey(context.Background(), d, sealed)
	if err != nil {
		t.Fatalf("OpenStoreKey() = %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestStoreKeyConformanceSimulator(t *testing.T) {
	k, _ := newStoreKey(t, openDevice(t, tpm.Config{TPM: openSim(t)}))
	storetest.Run(t, k)
}

func TestStoreKeyConformanceSimulatorPIN(t *testing.T) {
	d := openDevice(t, tpm.Config{TPM: openSim(t), PIN: []byte("4711"), PCRs: sel(t, "0,7,16")})
	k, _ := newStoreKey(t, d)
	storetest.Run(t, k)
}

var keyIDPattern = regexp.MustCompile(`^tpm:[0-9a-f]{16}/[0-9a-f]{16}$`)

// TestStoreKeyRoundTrip wraps with a new store key, then unwraps in what
// stands for the next start of the agent: a new Device on the same TPM
// opening the saved blob.
func TestStoreKeyRoundTrip(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim})
	k, sealed := newStoreKey(t, d)
	key := randomBytes(32)
	w, err := k.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if len(w) != tpm.WrappedSize || w[0] != tpm.WrapFormat {
		t.Errorf("Wrap() = %d bytes starting with %#x, want %d starting with %#x", len(w), w[0], tpm.WrappedSize, tpm.WrapFormat)
	}

	id := k.KeyID()
	if !keyIDPattern.MatchString(id) || !strings.HasPrefix(id, d.KeyID()+"/") {
		t.Errorf("KeyID() = %q, want %s/ and 16 hex digits", id, d.KeyID())
	}
	if id == d.KeyID() {
		t.Errorf("StoreKey.KeyID() = Device.KeyID() = %q; the store could not tell the schemes apart", id)
	}

	// The key is in no output: not in the sealed blob, not in a wrap, not
	// in the KeyID.
	sk := k.KeyBytes()
	if len(sk) != tpm.StoreKeySize {
		t.Fatalf("store key is %d bytes, want %d", len(sk), tpm.StoreKeySize)
	}
	for name, out := range map[string][]byte{"sealed blob": sealed, "wrapped key": w, "KeyID": []byte(id)} {
		for i := 0; i+8 <= len(sk); i += 8 {
			if bytes.Contains(out, sk[i:i+8]) || bytes.Contains(out, []byte(hex.EncodeToString(sk[i:i+8]))) {
				t.Errorf("the %s contains bytes %d to %d of the store key", name, i, i+8)
			}
		}
	}
	// The sealed blob is an ordinary sealed blob, to the Device's PCRs.
	if b, err := tpm.ParseBlob(sealed); err != nil || b.PCRs != d.PCRSelection() {
		t.Errorf("ParseBlob(sealed) = %v, %v; want a blob sealed to %v", b, err, d.PCRSelection())
	}
	if changed, err := k.Check(ctx); err != nil || len(changed) != 0 {
		t.Errorf("Check() = %v, %v; want [], nil", changed, err)
	}
	if err := k.Healthy(ctx); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
	k.Close()
	d.Close()

	d2 := openDevice(t, tpm.Config{TPM: sim})
	k2 := openStoreKey(t, d2, sealed)
	if k2.KeyID() != id {
		t.Errorf("KeyID() after reopening = %q, want %q", k2.KeyID(), id)
	}
	got, err := k2.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap() after reopening = %x, %v; want the data key", got, err)
	}
}

// TestStoreKeyNotASealedStoreKey: the sealed store key and the other
// secrets a Device seals cannot be taken for one another.
func TestStoreKeyNotASealedStoreKey(t *testing.T) {
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	_, sealed := newStoreKey(t, d)
	if k, err := d.Unwrap(ctx, sealed); err == nil {
		t.Errorf("Device.Unwrap(sealed store key) = %x, nil; want an error", k)
	}
	dataKey, err := d.Wrap(ctx, randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	hsmPIN, err := d.Seal(ctx, []byte("12345678"))
	if err != nil {
		t.Fatalf("Seal() = %v", err)
	}
	for name, blob := range map[string][]byte{"data key": dataKey, "HSM PIN": hsmPIN} {
		k, err := tpm.OpenStoreKey(ctx, d, blob)
		if err == nil {
			k.Close()
			t.Errorf("OpenStoreKey(sealed %s) = nil error, want one", name)
		} else if !strings.Contains(err.Error(), "not a keyward store key") || strings.Contains(err.Error(), "12345678") {
			t.Errorf("OpenStoreKey(sealed %s) = %v, want \"not a keyward store key\" and no contents", name, err)
		}
	}
	var pe *tpm.ParseError
	if _, err := tpm.OpenStoreKey(ctx, d, []byte("not a blob")); !errors.As(err, &pe) {
		t.Errorf("OpenStoreKey(garbage) = %v, want a *ParseError", err)
	}
}

// TestStoreKeyTamper changes every byte of a wrapped key, truncates and
// extends it, and gives it to another store key: each must fail with an
// integrity failure wrapping ErrIntegrity, and return no key.
func TestStoreKeyTamper(t *testing.T) {
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	k, _ := newStoreKey(t, d)
	key := randomBytes(32)
	w, err := k.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	check := func(what string, blob []byte, from *tpm.StoreKey) {
		t.Helper()
		got, err := from.Unwrap(ctx, blob)
		if got != nil || err == nil {
			t.Fatalf("Unwrap(%s) = %x, %v; want nil and an error", what, got, err)
		}
		var ie interface{ IntegrityFailure() bool }
		if !errors.As(err, &ie) || !ie.IntegrityFailure() || !errors.Is(err, tpm.ErrIntegrity) {
			t.Errorf("Unwrap(%s) = %v; want an integrity failure wrapping ErrIntegrity", what, err)
		}
		if strings.Contains(err.Error(), hex.EncodeToString(key[:4])) {
			t.Errorf("Unwrap(%s) error mentions key bytes", what)
		}
	}
	for i := range w {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(w)
			bad[i] ^= mask
			check(fmt.Sprintf("byte %d ^ %#x", i, mask), bad, k)
		}
	}
	for n := range len(w) {
		check(fmt.Sprintf("first %d bytes", n), w[:n], k)
	}
	check("blob + 1 byte", append(bytes.Clone(w), 0), k)
	check("nil", nil, k)

	other, _ := newStoreKey(t, d)
	if other.KeyID() == k.KeyID() {
		t.Fatalf("two store keys have the same KeyID %s", k.KeyID())
	}
	check("wrapped by another store key", w, other)
	legacy, err := d.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Device.Wrap() = %v", err)
	}
	check("sealed by the Device", legacy, k)

	if got, err := k.Unwrap(ctx, w); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap(original) after tampering = %v", err)
	}
}

// TestStoreKeyPCRChange: after PCR 7 changes the store key no longer
// opens, and the error names PCR 7; on another TPM, it names both.
func TestStoreKeyPCRChange(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim})
	k, sealed := newStoreKey(t, d)

	extend(t, sim, 7, "a new Secure Boot db")

	got, err := tpm.OpenStoreKey(ctx, d, sealed)
	if got != nil {
		t.Errorf("OpenStoreKey() after extending PCR 7 returned a StoreKey")
	}
	var pe *tpm.PolicyError
	if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Changed, []int{7}) || !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("OpenStoreKey() after extending PCR 7 = %v, want a *PolicyError with Changed [7]", err)
	}
	if !strings.Contains(err.Error(), "PCR 7 ") {
		t.Errorf("OpenStoreKey() error %q does not name PCR 7", err)
	}
	// The running StoreKey still knows which PCRs changed.
	if changed, err := k.Check(ctx); err != nil || !reflect.DeepEqual(changed, []int{7}) {
		t.Errorf("Check() = %v, %v; want [7], nil", changed, err)
	}
}

func TestStoreKeyAnotherTPM(t *testing.T) {
	sim := openSim(t)
	d, err := tpm.Open(tpm.Config{TPM: sim})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ctx := context.Background()
	k, sealed, err := tpm.NewStoreKey(ctx, d)
	if err != nil {
		t.Fatalf("NewStoreKey() = %v", err)
	}
	k.Close()
	d.Close()
	sim.Close()

	other := openDevice(t, tpm.Config{TPM: openSim(t)})
	got, err := tpm.OpenStoreKey(ctx, other, sealed)
	var ne *tpm.NotThisTPMError
	if got != nil || !errors.As(err, &ne) || !strings.HasPrefix(k.KeyID(), ne.Sealed+"/") {
		t.Fatalf("OpenStoreKey() on another TPM = %v, want a *NotThisTPMError naming %s", err, k.KeyID())
	}
}

// TestStoreKeyReseal follows TestReseal for a planned change of PCR 7,
// with one blob instead of one per secret: move the store key to a
// selection the change leaves alone before it, back to PCR 7 after it.
// The KeyID and every wrapped key stay as they were.
func TestStoreKeyReseal(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim})
	k, original := newStoreKey(t, d)
	id := k.KeyID()
	key := randomBytes(32)
	w, err := k.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	stale := openStoreKey(t, d, original) // still on the original blob

	// 1. Before the update: re-seal to PCRs the update does not touch.
	interim, err := k.Reseal(ctx, sel(t, "0"))
	if err != nil {
		t.Fatalf("Reseal(0) before the update = %v", err)
	}
	if b, _ := tpm.ParseBlob(interim); b == nil || b.PCRs.String() != "sha256:0" {
		t.Errorf("Reseal(0) did not seal to PCR 0")
	}
	if k.KeyID() != id {
		t.Errorf("KeyID() after Reseal = %q, want %q", k.KeyID(), id)
	}

	// 2. The update changes PCR 7.
	extend(t, sim, 7, "dbx update")

	// Re-sealing the original blob now is too late, and it no longer opens.
	if _, err := stale.Reseal(ctx, sel(t, "0")); !errors.Is(err, tpm.ErrPolicy) {
		t.Errorf("Reseal() of the original blob after the update = %v, want ErrPolicy", err)
	}
	if _, err := tpm.OpenStoreKey(ctx, d, original); !errors.Is(err, tpm.ErrPolicy) {
		t.Errorf("OpenStoreKey(original) after the update = %v, want ErrPolicy", err)
	}
	// The interim blob opens, with the same KeyID, and unwraps.
	ki := openStoreKey(t, d, interim)
	if ki.KeyID() != id {
		t.Errorf("KeyID() of the interim blob = %q, want %q", ki.KeyID(), id)
	}
	if got, err := ki.Unwrap(ctx, w); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap() with the interim blob = %v", err)
	}

	// 3. After the update: re-seal to PCR 7, binding its new value. k's
	// blob is the interim one now.
	final, err := k.Reseal(ctx, sel(t, "7"))
	if err != nil {
		t.Fatalf("Reseal(7) after the update = %v", err)
	}
	if changed, err := k.Check(ctx); err != nil || len(changed) != 0 {
		t.Errorf("Check() after the final Reseal = %v, %v; want [], nil", changed, err)
	}
	kf := openStoreKey(t, d, final)
	if kf.KeyID() != id {
		t.Errorf("KeyID() of the final blob = %q, want %q", kf.KeyID(), id)
	}
	if got, err := kf.Unwrap(ctx, w); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap() with the final blob = %v", err)
	}
	extend(t, sim, 7, "unplanned change")
	if _, err := tpm.OpenStoreKey(ctx, d, final); !errors.Is(err, tpm.ErrPolicy) {
		t.Errorf("OpenStoreKey(final) after another change = %v, want ErrPolicy", err)
	}
	if n := transientObjects(t, sim); n != 1 {
		t.Errorf("the TPM holds %d transient objects, want 1 (the SRK)", n)
	}
	if n := sessions(t, sim); n != 0 {
		t.Errorf("the TPM holds %d sessions, want 0", n)
	}
}

// TestStoreKeyPIN: with a PIN, the store key needs it to open.
func TestStoreKeyPIN(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("2468-secret")})
	_, sealed := newStoreKey(t, d)
	openStoreKey(t, d, sealed)
	for name, pin := range map[string]string{"wrong PIN": "1357-guess", "no PIN": ""} {
		other := openDevice(t, tpm.Config{TPM: sim, PIN: []byte(pin)})
		if k, err := tpm.OpenStoreKey(ctx, other, sealed); k != nil || !errors.Is(err, tpm.ErrBadPIN) {
			t.Errorf("OpenStoreKey() with %s = %v, want ErrBadPIN", name, err)
		}
		other.Close() // the simulator holds 3 transient objects
	}
}

// TestStoreKeyMigrate shows what keyward rewrap does to move a store from
// the per-secret scheme to a store key: with one Device, a data key that
// the Device sealed is unwrapped by it and wrapped by a StoreKey. Both are
// open at once, and the store tells their envelopes apart by KeyID.
func TestStoreKeyMigrate(t *testing.T) {
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	keys := make([][]byte, 5)
	legacy := make([][]byte, len(keys))
	for i := range keys {
		keys[i] = randomBytes(32)
		var err error
		if legacy[i], err = d.Wrap(ctx, keys[i]); err != nil {
			t.Fatalf("Device.Wrap() = %v", err)
		}
	}
	k, _ := newStoreKey(t, d)
	kind := func(id string) string { s, _, _ := strings.Cut(id, ":"); return s }
	if kind(k.KeyID()) != kind(d.KeyID()) || k.KeyID() == d.KeyID() {
		t.Fatalf("KeyIDs %q and %q: want the same kind and different ids", d.KeyID(), k.KeyID())
	}
	for i, w := range legacy {
		dataKey, err := d.Unwrap(ctx, w)
		if err != nil {
			t.Fatalf("Device.Unwrap(%d) = %v", i, err)
		}
		moved, err := k.Wrap(ctx, dataKey)
		clear(dataKey)
		if err != nil {
			t.Fatalf("StoreKey.Wrap(%d) = %v", i, err)
		}
		if got, err := k.Unwrap(ctx, moved); err != nil || !bytes.Equal(got, keys[i]) {
			t.Errorf("StoreKey.Unwrap(moved %d) = %v; want the Device's data key", i, err)
		}
		// Neither backend takes the other's blobs for its own.
		if _, err := k.Unwrap(ctx, w); !errors.Is(err, tpm.ErrIntegrity) {
			t.Errorf("StoreKey.Unwrap(Device blob) = %v, want ErrIntegrity", err)
		}
		if _, err := d.Unwrap(ctx, moved); err == nil {
			t.Errorf("Device.Unwrap(StoreKey blob) = nil error, want one")
		}
	}

	// In a store: an envelope of the per-secret scheme is refused by a
	// StoreKey-backed store as under another key of the same backend,
	// which is how keyward finds the envelopes still to move.
	old := storetest.NewStore(t, d)
	if _, err := old.Put(ctx, "binance/mm-prod", []byte("api secret"), store.PutOptions{}); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	s, err := store.New(store.Config{Dir: old.Dir(), Backend: k, Host: storetest.TestHost})
	if err != nil {
		t.Fatalf("store.New() = %v", err)
	}
	if _, _, err := s.Open(ctx, "binance/mm-prod", 0); !errors.Is(err, store.ErrWrongKey) {
		t.Errorf("Open() of a Device envelope with a StoreKey = %v, want ErrWrongKey", err)
	}
}

// TestStoreKeyStore runs a store on a StoreKey across a restart: the
// KeyID passes the envelope header's rules, and the next process opens
// the secrets with the saved blob.
func TestStoreKeyStore(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim})
	k, sealed := newStoreKey(t, d)
	s := storetest.NewStore(t, k)
	if _, err := s.Put(ctx, "okx/arb", []byte("api secret"), store.PutOptions{}); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	k.Close()
	d.Close()

	k2 := openStoreKey(t, openDevice(t, tpm.Config{TPM: sim}), sealed)
	s2, err := store.New(store.Config{Dir: s.Dir(), Backend: k2, Host: storetest.TestHost})
	if err != nil {
		t.Fatalf("store.New() = %v", err)
	}
	sec, _, err := s2.Open(ctx, "okx/arb", 0)
	if err != nil {
		t.Fatalf("Open() after the restart = %v", err)
	}
	defer sec.Destroy()
	if string(sec.Bytes()) != "api secret" {
		t.Errorf("Open() after the restart = %q, want %q", sec.Bytes(), "api secret")
	}
}

func TestStoreKeyClose(t *testing.T) {
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	k, _, err := tpm.NewStoreKey(ctx, d)
	if err != nil {
		t.Fatalf("NewStoreKey() = %v", err)
	}
	w, err := k.Wrap(ctx, randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	// Wipe cleared and unmapped the locked buffer (reading the old slice
	// now faults).
	if k.KeyBytes() != nil {
		t.Errorf("Close() left the store key in memory")
	}
	if err := k.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if _, err := k.Wrap(ctx, randomBytes(32)); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Wrap() after Close = %v, want ErrClosed", err)
	}
	if _, err := k.Unwrap(ctx, w); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Unwrap() after Close = %v, want ErrClosed", err)
	}
	if _, err := k.Reseal(ctx, tpm.Selection{}); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Reseal() after Close = %v, want ErrClosed", err)
	}
	if _, err := k.Check(ctx); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Check() after Close = %v, want ErrClosed", err)
	}
	if err := k.Healthy(ctx); !errors.Is(err, tpm.ErrClosed) {
		t.Errorf("Healthy() after Close = %v, want ErrClosed", err)
	}
	// The Device stays open.
	if err := d.Healthy(ctx); err != nil {
		t.Errorf("Device.Healthy() after StoreKey.Close = %v", err)
	}
}

// TestStoreKeyCloseWhileUnwrapping: Close may race with Unwrap (go test
// -race); each Unwrap returns the key or ErrClosed.
func TestStoreKeyCloseWhileUnwrapping(t *testing.T) {
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: openSim(t)})
	k, _ := newStoreKey(t, d)
	key := randomBytes(32)
	w, err := k.Wrap(ctx, key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				got, err := k.Unwrap(ctx, w)
				if errors.Is(err, tpm.ErrClosed) {
					return
				}
				if err != nil || !bytes.Equal(got, key) {
					errs <- fmt.Errorf("Unwrap() = %x, %v", got, err)
					return
				}
			}
		})
	}
	k.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStartCommands counts the TPM commands of an agent start: open the
// Device, open the store key, unwrap N data keys. The count must not
// depend on N, and the unwraps must send none; the per-secret scheme sends
// a fixed number per data key.
func TestStartCommands(t *testing.T) {
	sim := openSim(t)
	ctx := context.Background()
	d := openDevice(t, tpm.Config{TPM: sim})
	k, sealed := newStoreKey(t, d)
	wrapped := make([][]byte, 1000)
	for i := range wrapped {
		var err error
		if wrapped[i], err = k.Wrap(ctx, randomBytes(32)); err != nil {
			t.Fatalf("Wrap() = %v", err)
		}
	}
	legacy := make([][]byte, 3)
	for i := range legacy {
		var err error
		if legacy[i], err = d.Wrap(ctx, randomBytes(32)); err != nil {
			t.Fatalf("Device.Wrap() = %v", err)
		}
	}
	k.Close()
	d.Close()

	counts := map[int]int{}
	for _, n := range []int{10, 100, 1000} {
		c := countCommands(sim)
		d := openDevice(t, tpm.Config{TPM: c})
		k := openStoreKey(t, d, sealed)
		opened := c.String()
		before := c.Total()
		for _, w := range wrapped[:n] {
			if _, err := k.Unwrap(ctx, w); err != nil {
				t.Fatalf("Unwrap() = %v", err)
			}
		}
		if got := c.Total() - before; got != 0 {
			t.Errorf("unwrapping %d data keys sent %d TPM commands, want 0", n, got)
		}
		counts[n] = c.Total()
		t.Logf("start with %4d secrets: %d TPM commands (%s)", n, counts[n], opened)
		k.Close()
		d.Close()
	}
	if counts[10] != counts[100] || counts[10] != counts[1000] {
		t.Errorf("TPM commands per start = %v by number of secrets, want the same for all", counts)
	}

	// The per-secret scheme, for comparison: every data key costs an unseal.
	c := countCommands(sim)
	dl := openDevice(t, tpm.Config{TPM: c})
	opened := c.Total()
	perKey := map[int]bool{}
	for _, w := range legacy {
		before := c.Total()
		if _, err := dl.Unwrap(ctx, w); err != nil {
			t.Fatalf("Device.Unwrap() = %v", err)
		}
		perKey[c.Total()-before] = true
	}
	if len(perKey) != 1 || perKey[0] {
		t.Fatalf("TPM commands per Device.Unwrap = %v, want one non-zero count", perKey)
	}
	t.Logf("per-secret scheme: %d TPM commands for %d secrets (%s)", c.Total(), len(legacy), c)
	// A start with a store key costs what opening the Device and one
	// unseal cost.
	for unseal := range perKey {
		if want := opened + unseal; counts[10] != want {
			t.Errorf("TPM commands per start = %d, want %d (open the Device: %d, unseal once: %d)", counts[10], want, opened, unseal)
		}
	}
}
