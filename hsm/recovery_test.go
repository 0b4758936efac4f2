//go:build cgo && linux

package hsm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/testenv"
)

// guard bounds every wait in these tests. It is a failure guard, not a
// measurement: recovery normally takes well under a second.
const guard = 60 * time.Second

// moveAway moves the SoftHSM token directory away, as pulling the device
// out would. The returned function puts it back.
func moveAway(t *testing.T, soft *testenv.SoftHSMToken) (away string, restore func()) {
	t.Helper()
	away = soft.TokenDir + ".away"
	if err := os.Rename(soft.TokenDir, away); err != nil {
		t.Fatal(err)
	}
	return away, func() {
		t.Helper()
		if err := os.RemoveAll(soft.TokenDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(away, soft.TokenDir); err != nil {
			t.Fatal(err)
		}
	}
}

// waitHealthy calls Healthy every 20 ms until it succeeds, and logs how
// many calls that took and how long the last one (which ran the
// successful recovery attempt) took.
func waitHealthy(t *testing.T, tok *hsm.Token) {
	t.Helper()
	back := time.Now()
	deadline := back.Add(guard)
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		err := tok.Healthy(ctx)
		last := time.Since(start)
		cancel()
		if err == nil {
			t.Logf("healthy %v after the token came back, after %d Healthy calls; the last took %v",
				time.Since(back).Round(time.Millisecond), n, last.Round(10*time.Microsecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token did not recover within %v: Healthy() = %v", guard, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roundTrip wraps and unwraps a fresh key.
func roundTrip(t *testing.T, tok *hsm.Token) {
	t.Helper()
	key := newKey()
	w, err := tok.Wrap(context.Background(), key)
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	got, err := tok.Unwrap(context.Background(), w)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap(Wrap(k)) = %x, %v, want k", got, err)
	}
}

// wantUnavailable checks that err reports a lost token, not a damaged blob.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, hsm.ErrUnavailable) || errors.Is(err, hsm.ErrIntegrity) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s = %v, want %v (and not an integrity failure or a timeout)", what, err, hsm.ErrUnavailable)
	}
}

// The SoftHSM token directory disappears while Tokens are open, then
// comes back: SoftHSM only reads it at C_Initialize, so only a
// re-initialisation of the module brings it back.
func TestTokenRemoved(t *testing.T) {
	soft := testenv.SoftHSM(t)
	tok, _ := initToken(t, config(t, soft, keyLabel))
	// A second Token on the same module and token: the re-initialisation
	// that brings the first back must bring it back too.
	other, _ := initToken(t, config(t, soft, keyLabel+"-2"))
	ctx := context.Background()
	key, key2 := newKey(), newKey()
	w, err := tok.Wrap(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := other.Wrap(ctx, key2)
	if err != nil {
		t.Fatal(err)
	}
	id := tok.KeyID()

	_, restore := moveAway(t, soft)
	start := time.Now()
	err = tok.Healthy(ctx)
	took := time.Since(start)
	wantUnavailable(t, "Healthy() with the token gone", err)
	t.Logf("Healthy() with the token gone = %v (in %v)", err, took.Round(10*time.Microsecond))
	if st := tok.Status(); st.State != hsm.StateLost || st.Err == nil || st.Since.IsZero() {
		t.Errorf("Status() = %+v, want lost with a cause", st)
	}
	uctx, cancel := context.WithTimeout(ctx, guard)
	defer cancel()
	got, err := tok.Unwrap(uctx, w)
	if got != nil {
		t.Errorf("Unwrap() with the token gone returned a key")
	}
	wantUnavailable(t, "Unwrap() with the token gone", err)
	_, err = tok.Wrap(uctx, newKey())
	wantUnavailable(t, "Wrap() with the token gone", err)
	_, err = other.Unwrap(uctx, w2)
	wantUnavailable(t, "Unwrap() on the second Token with the token gone", err)

	restore()
	waitHealthy(t, tok)

	if got := tok.KeyID(); got != id {
		t.Errorf("KeyID() after recovery = %q, want %q", got, id)
	}
	if st := tok.Status(); st.State != hsm.StateHealthy || st.Err != nil {
		t.Errorf("Status() after recovery = %+v, want healthy", st)
	}
	got, err = tok.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap() after recovery = %x, %v, want the key", got, err)
	}
	// The second Token was re-attached by the same re-initialisation.
	if st := other.Status(); st.State != hsm.StateHealthy {
		t.Errorf("second Token Status() after recovery = %+v, want healthy", st)
	}
	got, err = other.Unwrap(ctx, w2)
	if err != nil || !bytes.Equal(got, key2) {
		t.Errorf("Unwrap() on the second Token after recovery = %x, %v, want its key", got, err)
	}
	roundTrip(t, tok)
	roundTrip(t, other)
}

// A token that comes back changed is refused, with ErrKeyChanged, before
// anything is wrapped or unwrapped with it; once the original returns,
// the Token recovers.
func TestTokenReplaced(t *testing.T) {
	tool := testenv.Require(t, "pkcs11-tool")
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, soft *testenv.SoftHSMToken, away, ckaID string)
	}{
		{
			// A new token initialised in its place, with the same label
			// and PIN, and a key with the same label and id: its serial
			// number gives it away before any login.
			name: "new token",
			replace: func(t *testing.T, soft *testenv.SoftHSMToken, away, ckaID string) {
				if err := os.Mkdir(soft.TokenDir, 0o700); err != nil {
					t.Fatal(err)
				}
				run(t, "softhsm2-util", "--init-token", "--free", "--label", soft.Label,
					"--pin", string(soft.PIN), "--so-pin", "123456789012")
				keygen(t, tool, soft, ckaID)
			},
		},
		{
			// The same token (same serial number, label and PIN) with
			// its key replaced by another under the same label and id:
			// only the canary tells them apart.
			name: "same token, new key",
			replace: func(t *testing.T, soft *testenv.SoftHSMToken, away, ckaID string) {
				if err := os.CopyFS(soft.TokenDir, os.DirFS(away)); err != nil {
					t.Fatal(err)
				}
				run(t, tool, "--module", soft.ModulePath, "--token-label", soft.Label, "--login", "--pin", string(soft.PIN),
					"--delete-object", "--type", "secrkey", "--label", keyLabel)
				keygen(t, tool, soft, ckaID)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			soft := testenv.SoftHSM(t)
			tok, _ := initToken(t, config(t, soft, keyLabel))
			ctx := context.Background()
			key := newKey()
			w, err := tok.Wrap(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			id := tok.KeyID()
			ckaID := id[strings.LastIndex(id, "/")+1:]

			away, restore := moveAway(t, soft)
			wantUnavailable(t, "Healthy() with the token gone", tok.Healthy(ctx))
			tc.replace(t, soft, away, ckaID)

			// Healthy drives recovery attempts until one sees the new
			// token and refuses it.
			deadline := time.Now().Add(guard)
			for {
				err = tok.Healthy(ctx)
				if errors.Is(err, hsm.ErrKeyChanged) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Healthy() with another token in place = %v, want %v", err, hsm.ErrKeyChanged)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("Healthy() with another token in place = %v", err)
			wantUnavailable(t, "Healthy() with another token in place", err)
			if st := tok.Status(); st.State != hsm.StateLost || !errors.Is(st.Err, hsm.ErrKeyChanged) {
				t.Errorf("Status() = %+v, want lost with %v", st, hsm.ErrKeyChanged)
			}
			got, err := tok.Unwrap(ctx, w)
			if got != nil {
				t.Fatalf("Unwrap() with another token in place returned a key")
			}
			wantUnavailable(t, "Unwrap() with another token in place", err)
			_, err = tok.Wrap(ctx, newKey())
			wantUnavailable(t, "Wrap() with another token in place", err)

			restore()
			waitHealthy(t, tok)
			if tok.KeyID() != id {
				t.Errorf("KeyID() = %q, want %q", tok.KeyID(), id)
			}
			got, err = tok.Unwrap(ctx, w)
			if err != nil || !bytes.Equal(got, key) {
				t.Errorf("Unwrap() with the original back = %x, %v, want the key", got, err)
			}
			roundTrip(t, tok)
		})
	}
}

// run runs a command and fails the test if it fails.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, args[0], err, out)
	}
}

// keygen makes a sensitive, non-extractable AES-256 key labelled keyLabel
// with CKA_ID ckaID (hex) on soft's token, in another process.
func keygen(t *testing.T, tool string, soft *testenv.SoftHSMToken, ckaID string) {
	t.Helper()
	run(t, tool, "--module", soft.ModulePath, "--token-label", soft.Label, "--login", "--pin", string(soft.PIN),
		"--keygen", "--key-type", "AES:32", "--label", keyLabel, "--id", ckaID, "--sensitive")
}

// Faults of a network HSM, injected by the shim while 16 goroutines wrap
// and unwrap: no wrong key ever comes back, errors say the token is
// unavailable (or that a session died), Healthy reports the fault within
// its deadline, and once the fault ends everything works again without
// reopening the Token.
func TestFaults(t *testing.T) {
	const (
		workers         = 16
		healthyDeadline = 300 * time.Millisecond
	)
	for _, tc := range []struct{ name, mode string }{
		{"device removed", testenv.FaultDeviceRemoved},
		{"session handle invalid", testenv.FaultSessionInvalid},
		{"device error", testenv.FaultDeviceError},
		{"hang", testenv.FaultHang(1500 * time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			soft := testenv.SoftHSM(t)
			f := testenv.FaultModule(t, soft)
			u, err := hsm.ParseURI(f.URI(keyLabel))
			if err != nil {
				t.Fatal(err)
			}
			tok, _ := initToken(t, hsm.Config{URI: u, PIN: soft.PIN})

			var (
				ok, failed, wrong atomic.Int64
				unexpected        = make(chan error, workers)
				stop              = make(chan struct{})
				wg                sync.WaitGroup
			)
			check := func(what string, err error) {
				failed.Add(1)
				if errors.Is(err, hsm.ErrUnavailable) || errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)) ||
					errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_CLOSED)) {
					time.Sleep(2 * time.Millisecond)
					return
				}
				select {
				case unexpected <- fmt.Errorf("%s = %w", what, err):
				default:
				}
			}
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), guard)
						key := newKey()
						w, err := tok.Wrap(ctx, key)
						if err != nil {
							cancel()
							check("Wrap()", err)
							continue
						}
						got, err := tok.Unwrap(ctx, w)
						cancel()
						switch {
						case err != nil:
							check("Unwrap()", err)
						case !bytes.Equal(got, key):
							wrong.Add(1)
						default:
							ok.Add(1)
						}
					}
				}()
			}
			waitFor(t, "round trips before the fault", func() bool { return ok.Load() >= 100 })

			f.Set(tc.mode)
			begin := time.Now()
			var slowest time.Duration
			for {
				ctx, cancel := context.WithTimeout(context.Background(), healthyDeadline)
				start := time.Now()
				err := tok.Healthy(ctx)
				took := time.Since(start)
				cancel()
				slowest = max(slowest, took)
				if took > healthyDeadline+5*time.Second {
					t.Fatalf("Healthy() took %v with a %v deadline", took, healthyDeadline)
				}
				if errors.Is(err, hsm.ErrUnavailable) {
					t.Logf("Healthy() after %v of fault = %v", time.Since(begin).Round(time.Millisecond), err)
					break
				}
				if time.Since(begin) > guard {
					t.Fatalf("Healthy() during the fault = %v, want %v", err, hsm.ErrUnavailable)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st := tok.Status(); st.State != hsm.StateLost {
				t.Errorf("Status() during the fault = %+v, want lost", st)
			}
			failedBefore := failed.Load()
			waitFor(t, "operations failing during the fault", func() bool { return failed.Load() >= failedBefore+workers })

			f.Set(testenv.FaultPass)
			waitHealthy(t, tok)
			t.Logf("slowest Healthy during the fault: %v; %d round trips, %d failed operations",
				slowest.Round(time.Millisecond), ok.Load(), failed.Load())
			okBefore := ok.Load()
			waitFor(t, "round trips after the fault", func() bool { return ok.Load() >= okBefore+100 })
			close(stop)
			wg.Wait()
			close(unexpected)
			for err := range unexpected {
				t.Errorf("unexpected error during the fault: %v", err)
			}
			if n := wrong.Load(); n != 0 {
				t.Fatalf("%d Unwrap calls returned a key other than the one wrapped", n)
			}

			// Without the load: every operation succeeds again.
			var burst sync.WaitGroup
			errs := make(chan error, workers)
			for range workers {
				burst.Add(1)
				go func() {
					defer burst.Done()
					for range 20 {
						key := newKey()
						w, err := tok.Wrap(context.Background(), key)
						if err != nil {
							errs <- fmt.Errorf("Wrap() after recovery = %w", err)
							return
						}
						got, err := tok.Unwrap(context.Background(), w)
						if err != nil || !bytes.Equal(got, key) {
							errs <- fmt.Errorf("Unwrap() after recovery = %x, %v, want the key", got, err)
							return
						}
					}
				}()
			}
			burst.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// waitFor polls cond until it holds, failing the test after guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// While the module hangs, no method outlives its context, and Healthy
// keeps one check in flight however often it is called.
func TestHang(t *testing.T) {
	soft := testenv.SoftHSM(t)
	f := testenv.FaultModule(t, soft)
	u, err := hsm.ParseURI(f.URI(keyLabel))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := initToken(t, hsm.Config{URI: u, PIN: soft.PIN})
	key := newKey()
	w, err := tok.Wrap(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}

	f.Set(testenv.FaultHang(3 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	got, err := tok.Unwrap(ctx, w)
	cancel()
	if got != nil || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Unwrap() while the module hangs = %x, %v, want %v and %v", got, err, hsm.ErrUnavailable, context.DeadlineExceeded)
	}

	// The abandoned Unwrap is still in its first call (for 3 s); a check
	// makes one call and hangs in it.
	probes := f.Count("")
	var calls int
	for deadline := time.Now().Add(guard); ; calls++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := tok.Healthy(ctx)
		cancel()
		if err == nil {
			t.Fatal("Healthy() while the module hangs = nil")
		}
		if errors.Is(err, hsm.ErrUnavailable) {
			t.Logf("Healthy() call %d while the module hangs = %v", calls+1, err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Healthy() while the module hangs = %v, want %v", err, hsm.ErrUnavailable)
		}
	}
	if n := f.Count("") - probes; n != 1 {
		t.Errorf("%d Healthy calls made %d module calls, want one check in flight", calls+1, n)
	}
	// Lost: operations fail at once, without reaching the module (the
	// recovery attempt one of them starts waits for the hung calls).
	before := f.Count("C_DecryptInit")
	for range 3 {
		_, err = tok.Unwrap(context.Background(), w)
		wantUnavailable(t, "Unwrap() on the lost token", err)
	}
	if n := f.Count("C_DecryptInit") - before; n != 0 {
		t.Errorf("Unwrap() on the lost token made %d C_DecryptInit calls, want 0", n)
	}

	f.Set(testenv.FaultPass)
	waitHealthy(t, tok)
	got, err = tok.Unwrap(context.Background(), w)
	if err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap() after the hang = %x, %v, want the key", got, err)
	}
}

// After the token comes back with another PIN, the Token makes one login
// attempt, becomes failed and never tries again: a loop could lock the
// PIN.
func TestRecoveryWrongPIN(t *testing.T) {
	tool := testenv.Require(t, "pkcs11-tool")
	soft := testenv.SoftHSM(t)
	f := testenv.FaultModule(t, soft)
	u, err := hsm.ParseURI(f.URI(keyLabel))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := initToken(t, hsm.Config{URI: u, PIN: soft.PIN})
	newPIN := "13572468"
	run(t, tool, "--module", soft.ModulePath, "--token-label", soft.Label, "--login", "--pin", string(soft.PIN),
		"--change-pin", "--new-pin", newPIN)

	f.Set(testenv.FaultDeviceRemoved)
	wantUnavailable(t, "Healthy() with the device gone", tok.Healthy(context.Background()))
	f.Set(testenv.FaultPass)
	logins := f.Count("C_Login")
	var err2 error
	waitFor(t, "the Token to fail", func() bool {
		err2 = tok.Healthy(context.Background())
		return tok.Status().State == hsm.StateFailed
	})
	if !errors.Is(err2, hsm.ErrBadPIN) || errors.Is(err2, hsm.ErrUnavailable) {
		t.Errorf("Healthy() after the PIN changed = %v, want %v and not %v", err2, hsm.ErrBadPIN, hsm.ErrUnavailable)
	}
	if st := tok.Status(); !errors.Is(st.Err, hsm.ErrBadPIN) {
		t.Errorf("Status() = %+v, want failed with %v", st, hsm.ErrBadPIN)
	}
	if n := f.Count("C_Login") - logins; n != 1 {
		t.Errorf("%d login attempts after the token came back, want 1", n)
	}
	logins, inits := f.Count("C_Login"), f.Count("C_Initialize")
	for range 5 {
		if err := tok.Healthy(context.Background()); !errors.Is(err, hsm.ErrBadPIN) {
			t.Errorf("Healthy() on the failed Token = %v, want %v", err, hsm.ErrBadPIN)
		}
		if _, err := tok.Wrap(context.Background(), newKey()); !errors.Is(err, hsm.ErrBadPIN) {
			t.Errorf("Wrap() on the failed Token = %v, want %v", err, hsm.ErrBadPIN)
		}
	}
	if n, m := f.Count("C_Login")-logins, f.Count("C_Initialize")-inits; n != 0 || m != 0 {
		t.Errorf("the failed Token made %d logins and %d C_Initialize calls, want none", n, m)
	}
	for _, pin := range []string{string(soft.PIN), newPIN} {
		if strings.Contains(err2.Error(), pin) {
			t.Errorf("error %q contains a PIN", err2)
		}
	}
}

// Close works on a lost Token, and the module can be opened again once
// the token is back.
func TestCloseLost(t *testing.T) {
	soft := testenv.SoftHSM(t)
	cfg := config(t, soft, keyLabel)
	tok, _, err := hsm.Init(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tok.Wrap(context.Background(), newKey())
	if err != nil {
		t.Fatal(err)
	}
	_, restore := moveAway(t, soft)
	wantUnavailable(t, "Healthy() with the token gone", tok.Healthy(context.Background()))
	if err := tok.Close(); err != nil {
		t.Errorf("Close() on a lost Token = %v", err)
	}
	if st := tok.Status(); st.State != hsm.StateClosed {
		t.Errorf("Status() after Close = %+v, want closed", st)
	}
	if _, err := tok.Unwrap(context.Background(), w); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Unwrap() after Close = %v, want %v", err, hsm.ErrClosed)
	}
	restore()
	again, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("Open() after the token came back = %v", err)
	}
	defer again.Close()
	if _, err := again.Unwrap(context.Background(), w); err != nil {
		t.Errorf("Unwrap() with a new Token = %v", err)
	}
}

func BenchmarkHealthy(b *testing.B) {
	soft := testenv.SoftHSM(b)
	tok, _ := initToken(b, config(b, soft, keyLabel))
	ctx := context.Background()
	for b.Loop() {
		if err := tok.Healthy(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
