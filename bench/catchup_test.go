package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/tether-mesh/tether/mesh"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
)

// Catch-up shape: catchUpRevisions single-key puts, spread over
// catchUpKeys endpoint keys of svc-0001, written by catchUpWriters
// goroutines on top of the reference mesh.
const (
	catchUpRevisions = 100_000
	catchUpKeys      = 5
	catchUpWriters   = 16
)

// BenchmarkCatchUp measures how long the etcd watcher takes to publish
// the converged state after a gap of catchUpRevisions revisions that was
// compacted away, so that it must list the prefix again. Each iteration
// starts a new watcher at the compacted store and stops at its first
// publish. The baseline, measured once before the compaction, is a plain
// clientv3 watch from the revision before the gap that drains every event
// of the backlog.
//
// NOTE: no connection is actually lost. A watcher that resumes after a
// disconnect and gets ErrCompacted takes the same list path, but already
// holds the old documents, and it also waits for gRPC to reconnect.
func BenchmarkCatchUp(b *testing.B) {
	b.ReportAllocs()
	_, cli := startEtcd(b)
	m := refMesh{services: referenceServices}
	before, err := m.write(context.Background(), cli)
	if err != nil {
		b.Fatal(err)
	}

	writeStart := time.Now()
	last, err := writeGap(context.Background(), cli, m)
	if err != nil {
		b.Fatal(err)
	}
	writing := time.Since(writeStart)

	replay := replayBacklog(b, cli, before+1, last)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := cli.Compact(ctx, last, clientv3.WithCompactPhysical()); err != nil {
		b.Fatalf("compact at %d: %v", last, err)
	}

	var samples []time.Duration
	for b.Loop() {
		samples = append(samples, relist(b, cli, last))
	}
	b.ReportMetric(percentileMs(samples, 50), "relist-p50-ms")
	b.ReportMetric(percentileMs(samples, 100), "relist-max-ms")
	b.ReportMetric(float64(replay.Milliseconds()), "replay-ms")
	b.ReportMetric(float64(catchUpRevisions)/replay.Seconds(), "replay-events/s")
	b.Logf("gap of %d revisions written in %s (%.0f puts/s); tether re-list p50=%.1fms max=%.1fms  "+
		"clientv3 watch replay of the backlog %.0fms (%.0f events/s)",
		catchUpRevisions, writing.Round(time.Millisecond), float64(catchUpRevisions)/writing.Seconds(),
		percentileMs(samples, 50), percentileMs(samples, 100),
		float64(replay.Microseconds())/1000, float64(catchUpRevisions)/replay.Seconds())
}

// writeGap writes catchUpRevisions puts, each its own revision, and
// returns the revision of the last one.
func writeGap(ctx context.Context, cli *clientv3.Client, m refMesh) (int64, error) {
	g, gctx := errgroup.WithContext(ctx)
	for w := range catchUpWriters {
		g.Go(func() error {
			for i := w; i < catchUpRevisions; i += catchUpWriters {
				e := i % catchUpKeys
				doc := m.endpointDoc(1, e, uint32(1+i%100))
				if _, err := cli.Put(gctx, endpointKey(1, e), doc); err != nil {
					return fmt.Errorf("gap write %d: %w", i, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	resp, err := cli.Get(ctx, endpointKey(1, 0))
	if err != nil {
		return 0, fmt.Errorf("read revision after the gap: %w", err)
	}
	return resp.Header.Revision, nil
}

// replayBacklog watches the prefix from revision from and returns the time
// until every event up to revision last arrived.
func replayBacklog(b *testing.B, cli *clientv3.Client, from, last int64) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	events := 0
	for resp := range cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			b.Fatalf("replay watch from %d: %v", from, err)
		}
		events += len(resp.Events)
		if n := len(resp.Events); n > 0 && resp.Events[n-1].Kv.ModRevision >= last {
			elapsed := time.Since(start)
			if events < catchUpRevisions {
				b.Fatalf("replay reached revision %d after %d events, want %d", last, events, catchUpRevisions)
			}
			return elapsed
		}
	}
	b.Fatalf("replay watch from %d ended before revision %d: %v", from, last, ctx.Err())
	return 0
}

// relist starts a new etcd watcher and returns the time from Run to its
// first published state, which must reflect revision last.
func relist(b *testing.B, cli *clientv3.Client, last int64) time.Duration {
	b.Helper()
	w, err := etcdwatch.New(etcdwatch.Config{Client: cli, Prefix: prefix, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	published := make(chan *mesh.State, 1)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- w.Run(ctx, func(st *mesh.State) {
			select {
			case published <- st:
			default:
			}
		})
	}()

	var elapsed time.Duration
	select {
	case st := <-published:
		elapsed = time.Since(start)
		if st.Revision < last {
			b.Errorf("first state after the gap has revision %d, want %d or later", st.Revision, last)
		}
	case <-time.After(waitTimeout):
		b.Errorf("watcher published no state within %s", waitTimeout)
	}
	cancel()
	if err := <-done; err != nil {
		b.Errorf("watcher Run: %v", err)
	}
	return elapsed
}
