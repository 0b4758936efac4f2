package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/fleet"
	"github.com/keyward/keyward/store/storetest"
	"github.com/keyward/keyward/tpm"
)

// BenchmarkLoad1000 measures what an agent does at start: list a store of
// 1,000 secrets on SoftHSM and decrypt every one (one unwrap in the token
// each). It reports milliseconds per 1,000 secrets.
func BenchmarkLoad1000(b *testing.B) {
	backend, _ := storetest.SoftHSMBackend(b)
	s := newStore(b, backend)
	ctx := context.Background()
	value := make([]byte, 64)
	for i := range 1000 {
		if _, err := s.Put(ctx, fmt.Sprintf("exchange/key-%04d", i), value, store.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		envs, damaged, err := s.List()
		if err != nil || len(damaged) > 0 || len(envs) != 1000 {
			b.Fatalf("List() = %d envelopes, %v, %v", len(envs), damaged, err)
		}
		for _, e := range envs {
			sec, err := s.OpenEnvelope(ctx, e)
			if err != nil {
				b.Fatal(err)
			}
			sec.Destroy()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-secrets")
}

// BenchmarkPut measures sealing and durably writing one 64-byte secret.
func BenchmarkPut(b *testing.B) {
	backend, _ := storetest.SoftHSMBackend(b)
	s := newStore(b, backend)
	ctx := context.Background()
	value := make([]byte, 64)
	for b.Loop() {
		if _, err := s.Put(ctx, "bench/put", value, store.PutOptions{NewVersion: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad100TPM measures an agent's start with 100 secrets sealed by
// a TPM (a private swtpm): list and unseal each, reusing one storage key
// and opening one salted session per unseal.
func BenchmarkLoad100TPM(b *testing.B) {
	sw := testenv.SwTPM(b)
	tr, err := tpm.OpenDevice(sw.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	d, err := tpm.Open(tpm.Config{TPM: tr})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	s := storetest.NewStore(b, d)
	ctx := context.Background()
	for i := range 100 {
		if _, err := s.Put(ctx, fmt.Sprintf("exchange/key-%03d", i), make([]byte, 64), store.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		envs, _, err := s.List()
		if err != nil || len(envs) != 100 {
			b.Fatalf("List() = %d, %v", len(envs), err)
		}
		for _, e := range envs {
			sec, err := s.OpenEnvelope(ctx, e)
			if err != nil {
				b.Fatal(err)
			}
			sec.Destroy()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/100-secrets")
}

// BenchmarkImportInbox1000 imports an inbox of 1,000 bundles (distinct
// secrets, Ed25519-signed) into a store on SoftHSM: one transaction, one
// wrap in the token per bundle. It reports milliseconds per 1,000
// bundles; its baseline, in the same run, is BenchmarkPut1000: the same
// 1,000 values put one by one (the backend and disk work without the
// bundles).
func BenchmarkImportInbox1000(b *testing.B) {
	backend, _ := storetest.SoftHSMBackend(b)
	p := provisioner(b, fleet.KeyEd25519)
	opts := store.ImportOptions{Provisioners: []*fleet.ProvisionerKey{p.Key()}}
	ctx := context.Background()
	value := make([]byte, 64)
	for b.Loop() {
		b.StopTimer()
		s := newStore(b, backend)
		to := enrolled(b, s)
		inbox := filepath.Join(b.TempDir(), "inbox")
		if err := os.Mkdir(inbox, 0o700); err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			bd := sealTo(b, to, p, fleet.Contents{Name: fmt.Sprintf("exchange/key-%04d", i)}, string(value))
			if err := os.WriteFile(filepath.Join(inbox, fmt.Sprintf("%04d.kwb", i)), bd.Marshal(), 0o600); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		res, err := s.ImportInbox(ctx, inbox, opts)
		if err != nil || len(res) != 1000 || res[999].Imported == nil {
			b.Fatalf("ImportInbox() = %d results, %v", len(res), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-bundles")
}

// BenchmarkPut1000 puts 1,000 64-byte secrets into a store on SoftHSM:
// the baseline of BenchmarkImportInbox1000.
func BenchmarkPut1000(b *testing.B) {
	backend, _ := storetest.SoftHSMBackend(b)
	ctx := context.Background()
	value := make([]byte, 64)
	for b.Loop() {
		b.StopTimer()
		s := newStore(b, backend)
		b.StartTimer()
		for i := range 1000 {
			if _, err := s.Put(ctx, fmt.Sprintf("exchange/key-%04d", i), value, store.PutOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-secrets")
}
