//go:build cgo

package testenv_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/internal/trust"
)

func TestFaultModule(t *testing.T) {
	soft := testenv.SoftHSM(t)
	f := testenv.FaultModule(t, soft)
	if err := trust.Check("PKCS #11 module", f.ModulePath, trust.Public); err != nil {
		t.Errorf("trust.Check(%s) = %v", f.ModulePath, err)
	}
	p := pkcs11.New(f.ModulePath)
	if p == nil {
		t.Fatalf("pkcs11.New(%s) = nil", f.ModulePath)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatalf("C_Initialize through the shim = %v", err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		if info, err := p.GetTokenInfo(s); err == nil && info.Label == soft.Label {
			slot, found = s, true
		}
	}
	if !found {
		t.Fatalf("token %q is not visible through the shim", soft.Label)
	}
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	tokenInfo := func() error { _, err := p.GetTokenInfo(slot); return err }
	sessionInfo := func() error { _, err := p.GetSessionInfo(s); return err }
	random := func() error { _, err := p.GenerateRandom(s, 8); return err }

	for _, tc := range []struct {
		mode                   string
		token, session, crypto uint // 0: passes
	}{
		{mode: testenv.FaultPass},
		{mode: testenv.FaultDeviceRemoved, token: pkcs11.CKR_DEVICE_REMOVED, session: pkcs11.CKR_DEVICE_REMOVED, crypto: pkcs11.CKR_DEVICE_REMOVED},
		{mode: testenv.FaultSessionInvalid, session: pkcs11.CKR_SESSION_HANDLE_INVALID, crypto: pkcs11.CKR_SESSION_HANDLE_INVALID},
		{mode: testenv.FaultDeviceError, crypto: pkcs11.CKR_DEVICE_ERROR},
		{mode: "fail 0xe0 crypto", crypto: pkcs11.CKR_TOKEN_NOT_PRESENT},
		{mode: testenv.FaultHang(time.Millisecond)},
		{mode: "not a mode"},
		{mode: testenv.FaultPass},
	} {
		f.Set(tc.mode)
		for _, c := range []struct {
			name string
			call func() error
			want uint
		}{
			{"C_GetTokenInfo", tokenInfo, tc.token},
			{"C_GetSessionInfo", sessionInfo, tc.session},
			{"C_GenerateRandom", random, tc.crypto},
		} {
			err := c.call()
			switch {
			case c.want == 0 && err != nil:
				t.Errorf("mode %q: %s = %v, want success", tc.mode, c.name, err)
			case c.want != 0 && !errors.Is(err, pkcs11.Error(c.want)):
				t.Errorf("mode %q: %s = %v, want %v", tc.mode, c.name, err, pkcs11.Error(c.want))
			}
		}
	}
	// One call of each per mode, and the two C_GetTokenInfo calls that
	// found the token.
	if got, want := f.Count("C_GetTokenInfo"), uint64(8+len(slots)); got != want {
		t.Errorf("Count(C_GetTokenInfo) = %d, want %d", got, want)
	}
	if got := f.Count("C_GenerateRandom"); got != 8 {
		t.Errorf("Count(C_GenerateRandom) = %d, want 8", got)
	}
	if got := f.Count("C_Initialize"); got != 1 {
		t.Errorf("Count(C_Initialize) = %d, want 1", got)
	}
	if all, some := f.Count(""), f.Count("C_GetTokenInfo")+f.Count("C_GenerateRandom"); all <= some {
		t.Errorf("Count(\"\") = %d, want more than %d", all, some)
	}

	// C_Initialize is refused while the device is gone; C_Finalize always
	// passes, so the module can be initialised again afterwards.
	f.Set(testenv.FaultDeviceRemoved)
	if err := p.Finalize(); err != nil {
		t.Errorf("C_Finalize while the device is gone = %v", err)
	}
	if err := p.Initialize(); !errors.Is(err, pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)) {
		t.Errorf("C_Initialize while the device is gone = %v, want CKR_DEVICE_REMOVED", err)
	}
	f.Set(testenv.FaultPass)
	if err := p.Initialize(); err != nil {
		t.Errorf("C_Initialize after the device came back = %v", err)
	}
	if _, err := os.Stat(f.ControlPath); err != nil {
		t.Errorf("control file: %v", err)
	}
}
