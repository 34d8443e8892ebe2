package bench

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkColdStart measures, with the reference mesh already in etcd,
// the time from agent.New to the first state applied to the xDS cache,
// from which the agent serves clients. Each iteration starts a new agent
// and etcd watcher on the same etcd client.
func BenchmarkColdStart(b *testing.B) {
	b.ReportAllocs()
	_, cli := startEtcd(b)
	m := refMesh{services: referenceServices}
	if _, err := m.write(context.Background(), cli); err != nil {
		b.Fatal(err)
	}

	var samples []time.Duration
	for b.Loop() {
		samples = append(samples, coldStart(b, cli))
	}
	b.ReportMetric(percentileMs(samples, 50), "p50-ms")
	b.ReportMetric(percentileMs(samples, 100), "max-ms")
	b.Logf("starts=%d  cold start to first push applied p50=%.1fms max=%.1fms",
		len(samples), percentileMs(samples, 50), percentileMs(samples, 100))
}

// coldStart runs one agent until its first push and returns the time
// from agent.New to the cache's first applied state. The applied counter
// has no event, so it is polled every 100µs.
func coldStart(b *testing.B, cli *clientv3.Client) time.Duration {
	b.Helper()
	start := time.Now()
	a, _, err := newAgent(cli, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	ready := poll(waitTimeout, func() bool { return a.Cache().Applied() > 0 })
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Errorf("agent.Run: %v", err)
	}
	if !ready {
		b.Fatalf("agent applied no state within %s", waitTimeout)
	}
	return elapsed
}
