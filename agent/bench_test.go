package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/metrics"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/storetest"
)

// BenchmarkServe measures, in one run, the floor — a bare Unix-socket
// round trip with frames of the same sizes as a get of a 64-byte secret —
// and client.Get against a running agent (peer verification, policy,
// audit event written to /dev/null), at 1, 8 and 64 concurrent
// connections, against an agent without metrics and one counting into
// Prometheus metrics (package agent/metrics). It reports p50, p99 and
// p99.9 latency, requests per second, the ratios of get to the floor, and
// of get with metrics to get without.
func BenchmarkServe(b *testing.B) {
	value := make([]byte, 64)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	sock, stop := benchAgent(b, string(value), nil)
	defer stop()
	msock, mstop := benchAgent(b, string(value), metrics.New(metrics.Config{}))
	defer mstop()
	req := wire.Marshal(1, &wire.Get{Name: "binance/mm-prod"})
	resp := wire.Marshal(1, &wire.Secret{Name: "binance/mm-prod", Version: 1, Value: value})
	echo := echoServer(b, len(req), len(resp))

	for _, conns := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			floor := measure(b, conns, echoConn(b, echo, req, len(resp)))
			getOn := func(sock string) func() func() error {
				return func() func() error {
					c, err := client.Dial(context.Background(), sock)
					if err != nil {
						b.Fatal(err)
					}
					return func() error {
						s, err := c.Get(context.Background(), "binance/mm-prod")
						if err == nil {
							s.Wipe()
						}
						return err
					}
				}
			}
			get := measure(b, conns, getOn(sock))
			withMetrics := measure(b, conns, getOn(msock))
			b.ReportMetric(float64(get.p50.Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(get.p99.Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(get.p999.Nanoseconds()), "p99.9-ns")
			b.ReportMetric(get.rps, "req/s")
			b.ReportMetric(float64(floor.p50.Nanoseconds()), "floor-p50-ns")
			b.ReportMetric(float64(floor.p99.Nanoseconds()), "floor-p99-ns")
			b.ReportMetric(floor.rps, "floor-req/s")
			b.ReportMetric(float64(get.p50)/float64(floor.p50), "p50/floor")
			b.ReportMetric(get.rps/floor.rps, "rps/floor")
			b.ReportMetric(float64(withMetrics.p50.Nanoseconds()), "metrics-p50-ns")
			b.ReportMetric(float64(withMetrics.p99.Nanoseconds()), "metrics-p99-ns")
			b.ReportMetric(withMetrics.rps, "metrics-req/s")
			b.ReportMetric(float64(withMetrics.p50)/float64(get.p50), "metrics-p50/get")
			b.ReportMetric(float64(withMetrics.p99)/float64(get.p99), "metrics-p99/get")
			b.ReportMetric(withMetrics.rps/get.rps, "metrics-rps/get")
		})
	}
}

type stats struct {
	p50, p99, p999 time.Duration
	rps            float64
}

// measure runs b.N requests spread over conns goroutines, each with its own
// connection made by newConn, and returns latency percentiles and
// throughput.
func measure(b *testing.B, conns int, newConn func() func() error) stats {
	b.Helper()
	per := max(b.N/conns, 1)
	do := make([]func() error, conns)
	for i := range do {
		do[i] = newConn()
	}
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range conns {
		wg.Go(func() {
			l := make([]time.Duration, 0, per)
			for range per {
				t0 := time.Now()
				if err := do[i](); err != nil {
					b.Error(err)
					return
				}
				l = append(l, time.Since(t0))
			}
			lat[i] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(int(p*float64(len(all))), len(all)-1)] }
	return stats{p50: pct(0.50), p99: pct(0.99), p999: pct(0.999), rps: float64(len(all)) / elapsed.Seconds()}
}

// benchAgent serves value as binance/mm-prod to the benchmark's own uid,
// counting into m if it is not nil. The store is on the in-memory
// backend: a get is answered from the cache and never reaches the
// backend, so a hardware backend would not change what is measured, only
// make the benchmark need it.
func benchAgent(b *testing.B, value string, m agent.Metrics) (socket string, stop func()) {
	pol, err := policy.Parse([]byte(selfPolicy))
	if err != nil {
		b.Fatal(err)
	}
	return serveBench(b, pol, storetest.MemStore(b, map[string]string{"binance/mm-prod": value}), m)
}

// serveBench serves what st holds under pol on a new socket, with the
// audit trail written to /dev/null, counting into m if it is not nil.
func serveBench(b *testing.B, pol *policy.Policy, st *store.Store, m agent.Metrics) (socket string, stop func()) {
	cache, _, err := agent.LoadCache(context.Background(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	aw := audit.New(devnull, nil)
	srv, err := agent.New(agent.Config{Policy: pol, Audit: aw, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	srv.SetCache(cache)
	socket = filepath.Join(b.TempDir(), "agent.sock")
	l, err := agent.Listen(agent.ListenConfig{Path: socket, GID: -1})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	return socket, func() {
		srv.Shutdown(context.Background())
		srv.Close()
		aw.Close(time.Second)
		devnull.Close()
	}
}

// echoConn returns connections to the echo server at path that send req
// and read the respLen bytes of its answer: the floor's round trip.
func echoConn(b *testing.B, path string, req []byte, respLen int) func() func() error {
	return func() func() error {
		c, err := net.Dial("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		in := make([]byte, respLen)
		return func() error {
			if _, err := c.Write(req); err != nil {
				return err
			}
			_, err := io.ReadFull(c, in)
			return err
		}
	}
}

// echoServer answers every reqLen bytes it reads with respLen bytes.
func echoServer(b *testing.B, reqLen, respLen int) string {
	path := filepath.Join(b.TempDir(), "echo.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				in, out := make([]byte, reqLen), make([]byte, respLen)
				for {
					if _, err := io.ReadFull(c, in); err != nil {
						return
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return path
}
