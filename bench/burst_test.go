package bench

import (
	"context"
	"testing"
	"time"
)

// Burst shape: burstWrites puts in a row, spread round robin over the
// endpoints of burstServices services, svc-0000 among them. The clients
// dial svc-0000, and the last write goes to svc-0000, so the agent's final
// push changes endpoints that every client subscribes to.
const (
	burstWrites   = 1000
	burstServices = 10
	burstClients  = 10
)

func BenchmarkBurst(b *testing.B) {
	b.ReportAllocs()
	p := startPropagation(b, referenceServices, burstClients)
	weights := make(map[[2]int]uint32)
	var converge []time.Duration
	var writing time.Duration
	for b.Loop() {
		start := time.Now()
		d := p.burst(b, weights)
		writing += time.Since(start) - d
		converge = append(converge, d)
	}
	nacks := p.tether.nacks(b)
	if nacks != 0 {
		b.Errorf("clients sent %v NACKs during the bursts, want 0", nacks)
	}
	b.ReportMetric(percentileMs(converge, 50), "converge-p50-ms")
	b.ReportMetric(percentileMs(converge, 100), "converge-max-ms")
	b.ReportMetric(nacks, "nacks")
	b.ReportMetric(float64(writing.Milliseconds())/float64(len(converge)), "write-ms/burst")
	b.Logf("bursts=%d of %d writes, %d clients: last write to all clients ACKed p50=%.2fms max=%.2fms, nacks=%v",
		len(converge), burstWrites, burstClients, percentileMs(converge, 50), percentileMs(converge, 100), nacks)
}

// burst writes burstWrites endpoint changes and returns the time from just
// before the last put to the moment every client ACKed the endpoints of
// the agent's final push. weights holds the current weight by service and
// endpoint; each write moves one weight on, so every write changes the
// mesh.
func (p *propagationEnv) burst(tb testing.TB, weights map[[2]int]uint32) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	var start time.Time
	var lastRev int64
	for i := range burstWrites {
		s := (i + 1) % burstServices
		e := (i / burstServices) % endpointsPerService
		k := [2]int{s, e}
		weights[k] = weights[k]%100 + 1
		doc := p.mesh.endpointDoc(s, e, weights[k])
		start = time.Now()
		resp, err := p.cli.Put(ctx, endpointKey(s, e), doc)
		if err != nil {
			tb.Fatalf("burst write %d to %s: %v", i, endpointKey(s, e), err)
		}
		lastRev = resp.Header.Revision
	}

	// Current is set after the cache applied the push, so once it names
	// the last revision the EDS version of the final push is in place.
	if !poll(waitTimeout, func() bool {
		st, _ := p.tether.agent.Current()
		return st != nil && st.Revision >= lastRev
	}) {
		tb.Fatalf("agent did not push revision %d within %s", lastRev, waitTimeout)
	}
	final := p.tether.edsVersion(tb)
	at, ok := p.tether.acks.expect(edsType, final, p.clients).await(waitTimeout)
	if !ok {
		tb.Fatalf("%d of %d clients ACKed endpoints version %d within %s",
			p.tether.acks.reached(edsType, final), p.clients, final, waitTimeout)
	}
	return at.Sub(start)
}
