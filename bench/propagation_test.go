package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// referenceServices is the size of the reference mesh in services.
const referenceServices = 1000

// propagationEnv runs one propagation measurement: a mesh in etcd, the
// agent, and clients that dial svc-0000, whose endpoint ep-00 changes.
type propagationEnv struct {
	mesh    refMesh
	cli     *clientv3.Client
	tether  *tetherEnv
	clients int
	// weight is the current weight of the endpoint that changes; it flips
	// between 1 and 2.
	weight uint32
}

// startPropagation writes a mesh of the given size to a fresh etcd, runs
// the agent on it and connects clients to svc-0000.
func startPropagation(tb testing.TB, services, clients int) *propagationEnv {
	tb.Helper()
	_, cli := startEtcd(tb)
	m := refMesh{services: services, real: startBackends(tb, endpointsPerService)}
	if _, err := m.write(context.Background(), cli); err != nil {
		tb.Fatal(err)
	}

	acks := newAckTracker()
	te := startAgent(tb, cli, acks)
	te.waitReady(tb)
	dialClients(tb, te.agent.XDSAddr(), serviceName(0), "tether", clients)

	// Every client must hold the current endpoints before the first change.
	w := acks.expect(edsType, te.edsVersion(tb), clients)
	if _, ok := w.await(waitTimeout); !ok {
		tb.Fatalf("%d of %d clients ACKed the first endpoints", acks.reached(edsType, te.edsVersion(tb)), clients)
	}
	if n := te.agent.Server().StreamCount(); n != clients {
		tb.Fatalf("agent has %d xds streams, want one per client (%d)", n, clients)
	}
	return &propagationEnv{mesh: m, cli: cli, tether: te, clients: clients, weight: 1}
}

// nextWeight flips the weight of the changing endpoint.
func (p *propagationEnv) nextWeight() uint32 {
	p.weight = 3 - p.weight
	return p.weight
}

// change writes one endpoint change and returns the time from just before
// the Put to the last client's ACK of the endpoints that carry it, and the
// time the Put itself took.
func (p *propagationEnv) change(tb testing.TB) (total, put, sent time.Duration) {
	tb.Helper()
	// A single put changes one endpoint set, so the agent pushes once and
	// the EDS type version grows by exactly one.
	target := p.tether.edsVersion(tb) + 1
	wait := p.tether.acks.expect(edsType, target, p.clients)
	doc := p.mesh.endpointDoc(0, 0, p.nextWeight())

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	start := time.Now()
	if _, err := p.cli.Put(ctx, endpointKey(0, 0), doc); err != nil {
		tb.Fatalf("put %s: %v", endpointKey(0, 0), err)
	}
	put = time.Since(start)
	at, ok := wait.await(waitTimeout)
	if !ok {
		tb.Fatalf("%d of %d clients ACKed endpoints version %d within %s",
			p.tether.acks.reached(edsType, target), p.clients, target, waitTimeout)
	}
	return at.Sub(start), put, p.lastSent(start)
}

// lastSent returns the time from start to the latest EDS response sent on
// any stream, from the server's per-stream status.
func (p *propagationEnv) lastSent(start time.Time) time.Duration {
	var latest time.Time
	for _, st := range p.tether.agent.Server().Status() {
		for _, ts := range st.Types {
			if ts.TypeURL == edsType && ts.LastSent.After(latest) {
				latest = ts.LastSent
			}
		}
	}
	return latest.Sub(start)
}

// propagationResult is the outcome of one side of a propagation run.
type propagationResult struct {
	latencies []time.Duration
	// setup holds the part of each latency spent before the change left
	// for the clients: the etcd Put for Tether. For the baseline it holds
	// the translation and snapshot build, which its latency leaves out.
	setup []time.Duration
	// sent holds, for Tether, the time from the Put to the last EDS
	// response sent (from the server's per-stream status), which leaves
	// out the clients' own processing.
	sent []time.Duration
	// bytesPerClient is the bytes sent per change and client.
	bytesPerClient float64
}

// runBaseline measures the snapshot cache over the same mesh with the
// same number of clients and changes.
func runBaseline(tb testing.TB, m refMesh, clients, changes int) propagationResult {
	tb.Helper()
	e := startSnapshotEnv(tb, m)
	e.connect(tb, serviceName(0), clients)
	before := e.sent.Load()
	var res propagationResult
	weight := uint32(1)
	for range changes {
		weight = 3 - weight
		total, build := e.change(tb, 0, 0, weight)
		res.latencies = append(res.latencies, total)
		res.setup = append(res.setup, build)
	}
	res.bytesPerClient = float64(e.sent.Load()-before) / float64(changes*clients)
	if n := e.acks.nackCount(); n != 0 {
		tb.Errorf("baseline clients sent %d NACKs", n)
	}
	return res
}

func BenchmarkPropagation(b *testing.B) {
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			benchmarkPropagation(b, referenceServices, clients)
		})
	}
}

// benchmarkPropagation measures Tether, then the baseline with the same
// number of changes.
//
// NOTE: the grpc-go clients run in this process and share its CPUs with
// the agent and etcd, so with many clients the latency includes their own
// decoding and balancer updates; sent-p50-ms and sent-p99-ms leave those
// out.
func benchmarkPropagation(b *testing.B, services, clients int) {
	b.ReportAllocs()
	p := startPropagation(b, services, clients)
	bytesBefore := p.tether.sentBytes(b)

	var tether propagationResult
	for b.Loop() {
		total, put, sent := p.change(b)
		tether.latencies = append(tether.latencies, total)
		tether.setup = append(tether.setup, put)
		tether.sent = append(tether.sent, sent)
	}
	changes := len(tether.latencies)
	tether.bytesPerClient = (p.tether.sentBytes(b) - bytesBefore) / float64(changes*clients)
	if n := p.tether.nacks(b); n != 0 {
		b.Errorf("tether clients sent %v NACKs", n)
	}
	rss := rssMiB(b)

	base := runBaseline(b, p.mesh, clients, changes)
	reportPropagation(b, tether, base)
	b.ReportMetric(rss, "rss-MiB")
	b.Logf("process RSS with tether, etcd and %d clients (after GC): %.1f MiB", clients, rss)
}

// reportPropagation reports both sides as benchmark metrics and prints
// them side by side.
func reportPropagation(b *testing.B, tether, base propagationResult) {
	tp50, tp99 := percentileMs(tether.latencies, 50), percentileMs(tether.latencies, 99)
	bp50, bp99 := percentileMs(base.latencies, 50), percentileMs(base.latencies, 99)
	b.ReportMetric(tp50, "p50-ms")
	b.ReportMetric(tp99, "p99-ms")
	b.ReportMetric(tether.bytesPerClient, "B/change/client")
	b.ReportMetric(bp50, "snapcache-p50-ms")
	b.ReportMetric(bp99, "snapcache-p99-ms")
	b.ReportMetric(base.bytesPerClient, "snapcache-B/change/client")
	b.ReportMetric(percentileMs(tether.setup, 50), "put-p50-ms")
	b.ReportMetric(percentileMs(tether.sent, 50), "sent-p50-ms")
	b.ReportMetric(percentileMs(tether.sent, 99), "sent-p99-ms")
	b.ReportMetric(percentileMs(base.setup, 50), "snapcache-build-p50-ms")
	b.Logf("changes=%d  tether p50=%.2fms p99=%.2fms bytes=%.0f (etcd put p50=%.2fms, last response sent p50=%.2fms p99=%.2fms)  "+
		"snapshot-cache p50=%.2fms p99=%.2fms bytes=%.0f (translate and snapshot build, not in its latency, p50=%.2fms)",
		len(tether.latencies), tp50, tp99, tether.bytesPerClient, percentileMs(tether.setup, 50),
		percentileMs(tether.sent, 50), percentileMs(tether.sent, 99),
		bp50, bp99, base.bytesPerClient, percentileMs(base.setup, 50))
}

// TestHarnessSmall runs the propagation harness on a small mesh, for both
// Tether and the baseline, so that CI exercises the code the benchmarks
// use.
func TestHarnessSmall(t *testing.T) {
	const services, clients, changes = 10, 2, 5
	p := startPropagation(t, services, clients)
	bytesBefore := p.tether.sentBytes(t)
	for range changes {
		if d, _, _ := p.change(t); d <= 0 {
			t.Errorf("propagation took %v, want a positive duration", d)
		}
	}
	if sent := p.tether.sentBytes(t) - bytesBefore; sent <= 0 {
		t.Errorf("tether sent %v bytes for %d changes, want more than 0", sent, changes)
	}
	if n := p.tether.nacks(t); n != 0 {
		t.Errorf("tether clients sent %v NACKs, want 0", n)
	}

	base := runBaseline(t, p.mesh, clients, changes)
	if len(base.latencies) != changes {
		t.Errorf("baseline measured %d changes, want %d", len(base.latencies), changes)
	}
	if base.bytesPerClient <= 0 {
		t.Errorf("baseline sent %v bytes per change and client, want more than 0", base.bytesPerClient)
	}
}
