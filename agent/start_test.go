package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
	"github.com/keyward/keyward/store/storetest"
)

// tpmStore makes a store of n secrets on the tpm backend of a private
// swtpm, reached through a command counter, and returns its
// configuration and the counter.
func tpmStore(t testing.TB, n int) (config.Config, *testenv.TPMCounter) {
	t.Helper()
	counter := testenv.SwTPM(t).Counter(t)
	cfg := config.Default()
	cfg.Backend = config.BackendTPM
	cfg.TPM.Device = counter.Socket
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	ctx := context.Background()
	b, _, err := backend.Open(ctx, cfg, backend.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: storetest.TestHost})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := st.Put(ctx, fmt.Sprintf("venue/key-%04d", i), []byte("value"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, counter
}

// start does what the agent does at start with its store: open the
// backend and decrypt every secret into the cache.
func start(t testing.TB, cfg config.Config) int {
	t.Helper()
	ctx := context.Background()
	b, _, err := backend.Open(ctx, cfg, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: storetest.TestHost})
	if err != nil {
		t.Fatal(err)
	}
	cache, skipped, err := agent.LoadCache(ctx, st, nil)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("LoadCache() = %v, %v", skipped, err)
	}
	defer cache.Destroy()
	return cache.Len()
}

// TestStartTPMCommands: with the TPM store key, starting costs the same
// number of TPM commands whatever the number of secrets: on a real TPM
// each costs about 13 ms, so a per-secret cost made 600 secrets miss
// systemd's start timeout.
func TestStartTPMCommands(t *testing.T) {
	counts := map[int]int{}
	for _, n := range []int{1, 10, 100} {
		cfg, counter := tpmStore(t, n)
		before := counter.Commands()
		if got := start(t, cfg); got != n {
			t.Fatalf("start with %d secrets loaded %d", n, got)
		}
		counts[n] = counter.Commands() - before
	}
	if counts[1] != counts[10] || counts[10] != counts[100] || counts[1] == 0 {
		t.Errorf("TPM commands per start for 1, 10 and 100 secrets = %d, %d, %d; want one fixed number", counts[1], counts[10], counts[100])
	}
	t.Logf("TPM commands per start: %d", counts[1])
}

// BenchmarkStartTPM: the agent's start (open the backend, decrypt every
// secret) on swtpm, by number of secrets. tpm-cmds/op is the cost that
// matters on a real TPM.
func BenchmarkStartTPM(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			cfg, counter := tpmStore(b, n)
			before := counter.Commands()
			for b.Loop() {
				start(b, cfg)
			}
			b.ReportMetric(float64(counter.Commands()-before)/float64(b.N), "tpm-cmds/op")
		})
	}
}
