package tpm_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keyward/keyward/tpm"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the seed corpora under testdata/fuzz from the simulator")

func TestParseBlob(t *testing.T) {
	sim := openSim(t)
	d := openDevice(t, tpm.Config{TPM: sim, PCRs: sel(t, "0,7,16")})
	w, err := d.Wrap(context.Background(), randomBytes(32))
	if err != nil {
		t.Fatalf("Wrap() = %v", err)
	}
	b, err := tpm.ParseBlob(w)
	if err != nil {
		t.Fatalf("ParseBlob(Wrap()) = %v", err)
	}
	if b.PCRs.String() != "sha256:0,7,16" || len(b.Values) != 3 || len(b.SRKName) != 34 {
		t.Errorf("ParseBlob() = PCRs %v, %d values, %d-byte SRK name; want sha256:0,7,16, 3, 34", b.PCRs, len(b.Values), len(b.SRKName))
	}
	if got := b.Marshal(); !bytes.Equal(got, w) {
		t.Errorf("Marshal(ParseBlob(b)) != b")
	}
	if len(w) > tpm.MaxBlobSize {
		t.Errorf("blob is %d bytes, more than MaxBlobSize %d", len(w), tpm.MaxBlobSize)
	}
	// Every truncation and any extension is refused.
	for n := range len(w) {
		var pe *tpm.ParseError
		if b, err := tpm.ParseBlob(w[:n]); b != nil || !errors.As(err, &pe) {
			t.Errorf("ParseBlob(first %d bytes) = %v, %v; want nil, *ParseError", n, b, err)
		} else if pe.Offset < 0 || pe.Offset > n {
			t.Errorf("ParseBlob(first %d bytes).Offset = %d", n, pe.Offset)
		}
	}
	var pe *tpm.ParseError
	if _, err := tpm.ParseBlob(append(bytes.Clone(w), 0)); !errors.As(err, &pe) || pe.Offset != len(w) {
		t.Errorf("ParseBlob(blob + 1 byte) = %v, want a *ParseError at %d", err, len(w))
	}
	big := make([]byte, tpm.MaxBlobSize+1)
	copy(big, w[:7])
	if _, err := tpm.ParseBlob(big); !errors.As(err, &pe) || pe.Foreign {
		t.Errorf("ParseBlob(%d bytes) = %v, want a *ParseError", len(big), err)
	}

	// The committed seeds named valid-* stay valid blobs.
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParseBlob", "valid-*"))
	if len(seeds) == 0 {
		t.Errorf("no valid-* seeds in testdata/fuzz/FuzzParseBlob")
	}
	for _, f := range seeds {
		if _, err := tpm.ParseBlob(readSeed(t, f)); err != nil {
			t.Errorf("ParseBlob(%s) = %v", f, err)
		}
	}

	if *writeCorpus {
		writeBlobCorpus(t, sim, w)
	}
}

// writeBlobCorpus writes the seed corpus of FuzzParseBlob and
// FuzzParseSelection: blobs from the simulator and damaged variants.
func writeBlobCorpus(t *testing.T, sim transport.TPM, wide []byte) {
	def := openDevice(t, tpm.Config{TPM: sim})
	w7, err := def.Wrap(context.Background(), randomBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	def.Close()
	pin := openDevice(t, tpm.Config{TPM: sim, PIN: []byte("1234"), PCRs: sel(t, "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23")})
	wAll, err := pin.Seal(t.Context(), randomBytes(tpm.MaxSealSize))
	if err != nil {
		t.Fatal(err)
	}
	hsm := append([]byte{0x01}, bytes.Repeat([]byte{0xa5, 0x3c, 0x96}, 20)...)
	v2 := bytes.Clone(w7)
	v2[0] = 0x02
	blobs := map[string][]byte{
		"valid-pcr7":       w7,
		"valid-pcr0-7-16":  wide,
		"valid-pin-all24":  wAll,
		"hsm-wrapped":      hsm,
		"empty":            {},
		"version-2":        v2,
		"truncated":        w7[:len(w7)-1],
		"trailing-byte":    append(bytes.Clone(w7), 0),
		"header-only":      w7[:7],
		"empty-selection":  {0x01, 0x00, 0x0b, 0x03, 0, 0, 0},
		"public-size-0xff": append(bytes.Clone(w7[:7+32+2+34]), 0xff, 0xff),
	}
	writeSeeds(t, "FuzzParseBlob", blobs, func(b []byte) string { return fmt.Sprintf("[]byte(%q)", b) })
	sels := map[string][]byte{}
	for i, s := range []string{"7", "0,2,7", "sha256:7+11", "sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23",
		"", "sha1:7", "07", "7,7", "0,2+7", "24", "sha256:"} {
		sels[fmt.Sprintf("seed-%02d", i)] = []byte(s)
	}
	writeSeeds(t, "FuzzParseSelection", sels, func(b []byte) string { return fmt.Sprintf("string(%q)", b) })
}

// readSeed returns the []byte value of a "go test fuzz v1" file.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lit, ok := strings.CutPrefix(strings.TrimSpace(string(body)), "go test fuzz v1\n[]byte(")
	if !ok || !strings.HasSuffix(lit, ")") {
		t.Fatalf("%s is not a []byte seed", path)
	}
	v, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(v)
}

// writeSeeds writes one corpus file per entry in Go's "go test fuzz v1"
// format.
func writeSeeds(t *testing.T, target string, seeds map[string][]byte, literal func([]byte) string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		body := "go test fuzz v1\n" + literal(b) + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParseBlob checks that ParseBlob never panics, fails only with a
// *ParseError, and re-encodes exactly whatever it accepts.
func FuzzParseBlob(f *testing.F) {
	f.Add([]byte{0x01, 0x00, 0x0b, 0x03, 0x80, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		blob, err := tpm.ParseBlob(b)
		if err != nil {
			var pe *tpm.ParseError
			if blob != nil || !errors.As(err, &pe) {
				t.Fatalf("ParseBlob() = %v, %v; want nil, *ParseError", blob, err)
			}
			if pe.Offset < 0 || pe.Offset > len(b) {
				t.Fatalf("ParseBlob().Offset = %d for %d bytes", pe.Offset, len(b))
			}
			return
		}
		if got := blob.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("Marshal(ParseBlob(b)) = %x, want %x", got, b)
		}
		if blob.PCRs.IsZero() || len(blob.Values) != blob.PCRs.Len() {
			t.Fatalf("ParseBlob() = %d values for %v", len(blob.Values), blob.PCRs)
		}
		for _, v := range blob.Values {
			if len(v) != 32 {
				t.Fatalf("ParseBlob() value of %d bytes", len(v))
			}
		}
		if len(b) > tpm.MaxBlobSize {
			t.Fatalf("ParseBlob() accepted %d bytes, more than MaxBlobSize", len(b))
		}
	})
}
