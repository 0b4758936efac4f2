package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"

	kwagent "github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// BenchmarkSign measures, in one run: the floor (a bare Unix-socket round
// trip with frames the sizes of a Binance order's sign request and
// answer); client.Sign of that order with an HMAC key at 1 and 64
// connections; with an Ed25519 key (Binance) and an ECDSA P-256 key
// (Coinbase's ES256 JWT) at 1 connection; and an Ed25519 signature by
// OpenSSH's ssh-agent through golang.org/x/crypto/ssh/agent, the nearest
// existing agent. It reports p50 and p99 latency, requests per second,
// and the ratios to the floor and of ssh-agent to HMAC sign.
func BenchmarkSign(b *testing.B) {
	order := []byte("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=60000&newClientOrderId=kw-1")
	sock, stop := signBenchAgent(b)
	defer stop()
	binance := client.SignRequest{Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Body: order}
	coinbase := client.SignRequest{Method: "POST", Host: "api.coinbase.com", Path: "/api/v3/brokerage/orders",
		Body: []byte(`{"client_order_id":"kw-1","product_id":"BTC-USD","side":"BUY"}`)}

	// The floor's frames: a sign request and an answer of the HMAC case's
	// sizes.
	c0, err := client.Dial(context.Background(), sock)
	if err != nil {
		b.Fatal(err)
	}
	s0, err := c0.Sign(context.Background(), "binance/hmac", binance)
	if err != nil {
		b.Fatal(err)
	}
	c0.Close()
	req := wire.Marshal(1, &wire.Sign{Name: "binance/hmac", Method: "POST", Host: "api.binance.com", Path: "/api/v3/order", Body: order})
	resp := wire.Marshal(1, &wire.Signed{Version: 1, Exchange: "binance", APIKey: s0.APIKey, Headers: []wire.Field{{Name: "X-MBX-APIKEY", Value: s0.APIKey}}, Body: s0.Body})
	echo := echoServer(b, len(req), len(resp))
	signConn := func(name string, r client.SignRequest) func() func() error {
		return func() func() error {
			c, err := client.Dial(context.Background(), sock)
			if err != nil {
				b.Fatal(err)
			}
			return func() error {
				_, err := c.Sign(context.Background(), name, r)
				return err
			}
		}
	}
	report := func(b *testing.B, got, floor stats) {
		b.ReportMetric(float64(got.p50.Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(got.p99.Nanoseconds()), "p99-ns")
		b.ReportMetric(got.rps, "req/s")
		b.ReportMetric(float64(floor.p50.Nanoseconds()), "floor-p50-ns")
		b.ReportMetric(floor.rps, "floor-req/s")
		b.ReportMetric(float64(got.p50)/float64(floor.p50), "p50/floor")
		b.ReportMetric(got.rps/floor.rps, "rps/floor")
	}

	var hmac1 stats
	for _, conns := range []int{1, 64} {
		b.Run(fmt.Sprintf("hmac/conns=%d", conns), func(b *testing.B) {
			floor := measure(b, conns, echoConn(b, echo, req, len(resp)))
			got := measure(b, conns, signConn("binance/hmac", binance))
			report(b, got, floor)
			if conns == 1 {
				hmac1 = got
			}
		})
	}
	b.Run("ed25519/conns=1", func(b *testing.B) {
		floor := measure(b, 1, echoConn(b, echo, req, len(resp)))
		report(b, measure(b, 1, signConn("binance/ed25519", binance)), floor)
	})
	b.Run("es256/conns=1", func(b *testing.B) {
		floor := measure(b, 1, echoConn(b, echo, req, len(resp)))
		report(b, measure(b, 1, signConn("coinbase/ecdsa", coinbase)), floor)
	})
	b.Run("ssh-agent-ed25519/conns=1", func(b *testing.B) {
		ssh := measure(b, 1, sshAgentConn(b))
		b.ReportMetric(float64(ssh.p50.Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(ssh.p99.Nanoseconds()), "p99-ns")
		b.ReportMetric(ssh.rps, "req/s")
		if hmac1.p50 > 0 {
			b.ReportMetric(float64(ssh.p50)/float64(hmac1.p50), "ssh-p50/hmac-sign-p50")
		}
	})
}

// signBenchAgent serves three credentials to this process's uid, with
// the audit trail written to /dev/null.
func signBenchAgent(b *testing.B) (socket string, stop func()) {
	pol, err := policy.Parse([]byte(fmt.Sprintf(`
[[rule]]
name     = "bench"
secrets  = ["binance/*", "coinbase/*"]
users    = ["%d"]
allow    = ["sign"]
requests = ["POST /api/v3/order", "POST /api/v3/brokerage/orders"]
`, os.Getuid())))
	if err != nil {
		b.Fatal(err)
	}
	st := storetest.NewStore(b, storetest.NewMemBackend())
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		name, keyID string
		x           exchange.Exchange
		secret      []byte
	}{
		{"binance/hmac", "bench-hmac", exchange.Binance, []byte(binanceSecret)},
		{"binance/ed25519", "bench-ed25519", exchange.Binance, pkcs8PEM(b, edKey)},
		{"coinbase/ecdsa", "organizations/bench/apiKeys/bench", exchange.Coinbase, pkcs8PEM(b, ecKey)},
	} {
		info, err := kwagent.CheckCredential(string(c.x), c.keyID, c.secret)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Put(context.Background(), c.name, c.secret, store.PutOptions{Credential: info}); err != nil {
			b.Fatal(err)
		}
	}
	return serveBench(b, pol, st, nil)
}

func pkcs8PEM(b *testing.B, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// sshAgentConn starts OpenSSH's ssh-agent with one Ed25519 key and
// returns connections that have it sign 64 bytes.
func sshAgentConn(b *testing.B) func() func() error {
	path, err := exec.LookPath("ssh-agent")
	if err != nil {
		b.Skip("ssh-agent is not installed (Debian: openssh-client): no baseline")
	}
	sock := filepath.Join(b.TempDir(), "ssh-agent.sock")
	cmd := exec.Command(path, "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var c net.Conn
	for range 100 {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		b.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ac := agent.NewClient(c)
	if err := ac.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		b.Fatal(err)
	}
	keys, err := ac.List()
	if err != nil || len(keys) != 1 {
		b.Fatalf("ssh-agent keys: %v, %v", keys, err)
	}
	c.Close()
	data := make([]byte, 64)
	return func() func() error {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		ag := agent.NewClient(conn)
		return func() error {
			_, err := ag.Sign(keys[0], data)
			return err
		}
	}
}
