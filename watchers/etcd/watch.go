package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchResponse is one response of watch index, or the end of its channel
// when closed is true.
type watchResponse struct {
	index  int
	resp   clientv3.WatchResponse
	closed bool
}

// watch follows every prefix from rev+1 until a watch is lost or ctx is
// done. It returns the resync reason and the error that ended the watch.
func (r *runner) watch(ctx context.Context, rev int64) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Deferred calls run last first: cancel the watches, then wait for the
	// goroutines, which all return once ctx is done.
	defer wg.Wait()
	defer cancel()

	responses := make(chan watchResponse)
	for i, prefix := range r.prefixes {
		// Watch blocks while the client's stream reconnects, so it is
		// called on the forwarding goroutine, where the silence bound
		// below still covers it. WithPrevKV is not requested: a delete
		// needs only the key, and previous values would double the
		// traffic of every put.
		//
		// The watch starts at the listed revision, not the one after it:
		// etcd responds to a progress request only when every watch on the
		// stream starts at or below the current revision (progressIfSync
		// in etcd's mvcc package), so on a quiet store a watch from rev+1
		// would never hear a progress notification and would be taken for
		// dead. The events of rev itself arrive again and are skipped.
		wg.Go(func() {
			ch := r.client.Watch(ctx, prefix,
				clientv3.WithPrefix(),
				clientv3.WithRev(rev),
				clientv3.WithProgressNotify())
			forward(ctx, i, ch, responses)
		})
	}
	wg.Go(func() { r.requestProgress(ctx) })

	silence := time.NewTimer(r.w.cfg.SilenceTimeout)
	defer silence.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-silence.C:
			return reasonSilent, r.errSilent()
		case resp := <-responses:
			if reason, err := r.handle(resp); err != nil {
				return reason, err
			}
			silence.Reset(r.w.cfg.SilenceTimeout)
		}
	}
}

// forward sends the responses of one watch channel to out, then reports
// the channel's end, until ctx is done. It stops on ctx without waiting for
// the channel to close, because the client closes it only once its stream
// goroutine runs again, which can take until etcd is reachable.
func forward(ctx context.Context, index int, ch clientv3.WatchChan, out chan<- watchResponse) {
	for {
		var next watchResponse
		select {
		case resp, ok := <-ch:
			next = watchResponse{index: index, resp: resp, closed: !ok}
		case <-ctx.Done():
			return
		}
		select {
		case out <- next:
		case <-ctx.Done():
			return
		}
		if next.closed {
			return
		}
	}
}

// requestProgress requests a progress notification from etcd every
// ProgressInterval until ctx is done. etcd sends one only once every watch
// on the stream has caught up, and then to every watch of the stream. It
// runs on its own goroutine.
func (r *runner) requestProgress(ctx context.Context) {
	t := time.NewTicker(r.w.cfg.ProgressInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// NOTE: the client finds the stream by the metadata of ctx and
		// opens a new stream when none exists. If the stream has just
		// closed, such as after a compaction, the new stream stays idle
		// until the next Watch with the same metadata reuses it or the
		// client is closed.
		if err := r.client.RequestProgress(ctx); err != nil && ctx.Err() == nil {
			r.w.log.Debug("progress request failed", "error", err)
		}
	}
}

// errSilent reports a watch that heard nothing within SilenceTimeout.
func (r *runner) errSilent() error {
	return fmt.Errorf("etcd watch heard nothing for %v, not even a progress notification",
		r.w.cfg.SilenceTimeout)
}

// handle applies one watch response. It returns a resync reason and an
// error when the watch is lost.
func (r *runner) handle(wr watchResponse) (string, error) {
	prefix := r.prefixes[wr.index]
	if wr.closed {
		return reasonClosed, fmt.Errorf("watch %s: channel closed", prefix)
	}

	resp := wr.resp
	if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
		return reasonCompacted, fmt.Errorf("watch %s: compacted at revision %d: %w",
			prefix, resp.CompactRevision, rpctypes.ErrCompacted)
	}
	if err := resp.Err(); err != nil {
		return reasonError, fmt.Errorf("watch %s: %w", prefix, err)
	}

	r.w.markHeard(time.Now())
	r.backoff.Reset()
	if resp.IsProgressNotify() {
		r.advance(wr.index, resp.Header.Revision)
		return "", nil
	}
	if len(resp.Events) == 0 {
		return "", nil
	}
	if r.applyEvents(wr.index, resp.Events) {
		r.publishState()
	}
	return "", nil
}

// applyEvents applies the events of one watch response in order and
// reports whether any changed the mirror. Events the mirror already
// reflects, those of the listed revision, are skipped.
func (r *runner) applyEvents(index int, events []*clientv3.Event) bool {
	var last int64
	changed := false
	for _, ev := range events {
		key := string(ev.Kv.Key)
		last = max(last, ev.Kv.ModRevision)
		if ev.Type == clientv3.EventTypeDelete {
			if !r.mirror.holds(key) {
				continue
			}
			r.w.metrics.Events.WithLabelValues("delete").Inc()
			r.mirror.delete(key)
			changed = true
			continue
		}
		e := entry{key: key, value: ev.Kv.Value, modRev: ev.Kv.ModRevision}
		if r.mirror.current(e) {
			continue
		}
		r.w.metrics.Events.WithLabelValues("put").Inc()
		r.applyPut(e)
		changed = true
	}
	r.advance(index, last)
	return changed
}

// advance records that watch index has delivered every event up to rev and
// sets the builder's revision to the minimum over all watches.
func (r *runner) advance(index int, rev int64) {
	r.through[index] = max(r.through[index], rev)
	r.mirror.builder.SetRevision(r.revision())
}

// revision returns the revision up to which every watch has delivered
// every event.
func (r *runner) revision() int64 {
	return slices.Min(r.through)
}
