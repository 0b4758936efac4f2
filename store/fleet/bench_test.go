package fleet

import (
	"crypto/hpke"
	"fmt"
	"testing"
)

// BenchmarkSealFleet seals 20 secrets for each of 1,000 hosts — 20,000
// bundles, each encrypted to its host and signed with Ed25519 — and
// reports the seconds per fleet run; run it with -cpu 1 for one core.
// Its baseline, in the same run, is BenchmarkSealFloor: the HPKE seal
// alone, what no bundle format can avoid.
func BenchmarkSealFleet(b *testing.B) {
	const hosts, secrets = 1000, 20
	recipients := make([]*Recipient, hosts)
	for i := range recipients {
		recipients[i] = newKey(b, byte(i)).Recipient(fmt.Sprintf("h%d", i), "pkcs11:k")
	}
	p := newProvisioner(b, KeyEd25519)
	value := make([]byte, 64)
	b.ResetTimer()
	for b.Loop() {
		for s := range secrets {
			c := Contents{Name: fmt.Sprintf("exchange/key-%02d", s)}
			for _, r := range recipients {
				bd, err := Seal(r, p, c, value)
				if err != nil {
					b.Fatal(err)
				}
				_ = bd.Marshal()
			}
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/1000-hosts-x-20")
	b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N*hosts*secrets), "µs/bundle")
}

// BenchmarkSealFloor is one bare HPKE seal of a 64-byte value to an
// import key: the floor of BenchmarkSealFleet's per-bundle cost.
func BenchmarkSealFloor(b *testing.B) {
	pk, err := kem.NewPublicKey(newKey(b, 1).PublicKey())
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 64)
	for b.Loop() {
		if _, err := hpke.Seal(pk, kdf, aead, []byte(bundleInfo), value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen checks and opens one bundle, as a host does on import.
func BenchmarkOpen(b *testing.B) {
	k := newKey(b, 1)
	p := newProvisioner(b, KeyEd25519)
	bd, err := Seal(k.Recipient("h", "pkcs11:k"), p, Contents{Name: "a"}, make([]byte, 64))
	if err != nil {
		b.Fatal(err)
	}
	trusted := []*ProvisionerKey{p.Key()}
	for b.Loop() {
		if _, err := k.Open(bd, trusted); err != nil {
			b.Fatal(err)
		}
	}
}
