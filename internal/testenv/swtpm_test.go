package testenv_test

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

// getRandom is TPM2_GetRandom(8): tag TPM_ST_NO_SESSIONS, size 12,
// TPM_CC_GetRandom, bytesRequested 8.
var getRandom = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}

// pcrRead7 is TPM2_PCR_Read of sha256 PCR 7.
var pcrRead7 = []byte{0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e, 0, 0, 0, 1, 0, 0x0b, 3, 0x80, 0, 0}

// send sends cmd and checks that the TPM answered TPM_RC_SUCCESS.
func send(t *testing.T, s *testenv.SwTPMProcess, cmd []byte) []byte {
	t.Helper()
	rsp, err := s.Send(cmd)
	if err != nil {
		t.Fatalf("Send() = %v", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[6:10]); rc != 0 {
		t.Fatalf("Send() = TPM_RC 0x%x, want success", rc)
	}
	return rsp
}

func TestSwTPM(t *testing.T) {
	var pid int
	t.Run("Run", func(t *testing.T) {
		s := testenv.SwTPM(t)
		pid = s.PID
		for _, p := range []string{s.Socket, s.CtrlSocket} {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode()&fs.ModeSocket == 0 {
				t.Errorf("Stat(%q) = %v, %v; want a socket", p, fi, err)
			}
		}
		if fi, err := os.Stat(s.StateDir); err != nil || !fi.IsDir() {
			t.Errorf("Stat(%q) = %v; want the state directory", s.StateDir, err)
		}
		if rsp := send(t, s, getRandom); len(rsp) != 10+2+8 {
			t.Errorf("GetRandom(8) response is %d bytes, want 20", len(rsp))
		}
		before := send(t, s, pcrRead7)

		// Extend PCR 7 through PCR_Event with a password session, then
		// reboot: PCR 7 is back to its initial value.
		event := []byte{0x80, 0x02, 0, 0, 0, 30, 0, 0, 0x01, 0x3c, 0, 0, 0, 7,
			0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 1, 0, 0,
			0, 1, 'x'}
		send(t, s, event)
		if after := send(t, s, pcrRead7); string(after) == string(before) {
			t.Fatalf("PCR 7 did not change after PCR_Event")
		}
		s.Reboot(t)
		if got := send(t, s, pcrRead7); string(got[10:]) != string(before[10:]) {
			t.Errorf("PCR 7 after Reboot = %x, want %x", got[10:], before[10:])
		}
		send(t, s, getRandom)
	})
	if pid == 0 {
		return
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("swtpm (pid %d) after the test: kill(0) = %v, want ESRCH", pid, err)
	}
}

func TestSwTPMLongName(t *testing.T) {
	t.Run("a_very_long_subtest_name_that_makes_the_temporary_directory_path_longer_than_a_unix_socket_allows", func(t *testing.T) {
		s := testenv.SwTPM(t)
		if len(s.CtrlSocket) >= 108 {
			t.Errorf("CtrlSocket is %d bytes, over the Unix socket limit", len(s.CtrlSocket))
		}
		send(t, s, getRandom)
	})
}
