package etcd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
)

// logRepeatInterval is the minimum time between two log lines on the same
// topic, such as the same invalid key or the same kind of store error.
const logRepeatInterval = 30 * time.Second

// runner is the state of one call to Watcher.Run. Only the goroutine of
// Run uses it, except where a method's doc states otherwise.
type runner struct {
	w        *Watcher
	client   *clientv3.Client
	prefixes []string
	publish  func(*mesh.State)

	mirror  *mirror
	limiter *watchers.LogLimiter
	backoff watchers.Backoff

	// through[i] is the revision up to which watch i has delivered every
	// event. The published State.Revision is their minimum.
	through []int64
}

func newRunner(w *Watcher, publish func(*mesh.State)) *runner {
	cfg := w.cfg
	return &runner{
		w:        w,
		client:   cfg.Client,
		prefixes: cfg.allPrefixes(),
		publish:  publish,
		mirror:   newMirror(cfg.Prefix, cfg.NamingPrefixes),
		limiter:  watchers.NewLogLimiter(logRepeatInterval),
		backoff:  watchers.Backoff{Min: cfg.BackoffMin, Max: cfg.BackoffMax},
	}
}

// run alternates between a full list and a watch until ctx is done.
func (r *runner) run(ctx context.Context) error {
	// Without a leader the member may serve an outdated view forever, so
	// every request and watch is rejected instead.
	ctx = clientv3.WithRequireLeader(ctx)
	// The client shares one watch stream among all contexts with the same
	// metadata. The extra entry keeps the watcher's watches on a stream of
	// their own, so that etcd sends a progress notification as soon as
	// these watches, not the caller's, have caught up.
	ctx = metadata.AppendToOutgoingContext(ctx, "tether-watcher", "etcd")
	first := true
	for {
		rev, err := r.sync(ctx, first)
		if stop, stopErr := r.w.stopped(ctx); stop {
			return stopErr
		}
		if err != nil {
			r.w.markStale(err)
			r.logWarn("list", "list failed, retrying", "error", err)
			if !r.sleep(ctx) {
				return nil
			}
			continue
		}
		first = false

		reason, err := r.watch(ctx, rev)
		if stop, stopErr := r.w.stopped(ctx); stop {
			return stopErr
		}
		// Until the next list completes, the state may miss changes.
		r.w.metrics.Resyncs.WithLabelValues(reason).Inc()
		r.w.markStale(err)
		r.logWarn("resync:"+reason, "etcd watch lost, marking state stale and listing again",
			"reason", reason, "revision", r.revision(), "error", err)
		if reason != reasonCompacted && !r.sleep(ctx) {
			return nil
		}
	}
}

// sync lists every prefix at one revision, applies the listing to the
// mirror and publishes the State when it is the first one or something
// changed. It returns the listed revision.
func (r *runner) sync(ctx context.Context, first bool) (int64, error) {
	entries, rev, err := r.list(ctx)
	if err != nil {
		return 0, err
	}
	changed := r.applyList(entries)

	r.through = make([]int64, len(r.prefixes))
	for i := range r.through {
		r.through[i] = rev
	}
	r.mirror.builder.SetRevision(rev)
	// Health turns synced before the first publish, so that a consumer
	// woken by it already reads Synced as true.
	r.w.markSynced(time.Now())
	if first || changed {
		r.publishState()
	}
	r.w.log.Info("listed etcd", "revision", rev, "keys", len(entries), "changed", changed)
	return rev, nil
}

// list reads every prefix at one revision, page by page.
func (r *runner) list(ctx context.Context) ([]entry, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.w.cfg.ListTimeout)
	defer cancel()

	var entries []entry
	var rev int64
	for _, prefix := range r.prefixes {
		got, listRev, err := r.listPrefix(ctx, prefix, rev)
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", prefix, err)
		}
		entries = append(entries, got...)
		rev = listRev
	}
	return entries, rev, nil
}

// listPrefix reads every key under prefix at revision rev, or at the
// current revision when rev is 0, and returns the revision it read at.
func (r *runner) listPrefix(ctx context.Context, prefix string, rev int64) ([]entry, int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	var entries []entry
	from := prefix
	for {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithLimit(r.w.cfg.ListPageSize),
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.client.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}

		for _, kv := range resp.Kvs {
			entries = append(entries, entry{key: string(kv.Key), value: kv.Value, modRev: kv.ModRevision})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return entries, rev, nil
		}
		// The smallest key after the last one returned.
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// applyList makes the mirror hold exactly the listed entries. It reports
// whether any key changed.
func (r *runner) applyList(entries []entry) bool {
	listed := make(map[string]struct{}, len(entries))
	var stale []entry
	for _, e := range entries {
		listed[e.key] = struct{}{}
		if !r.mirror.current(e) {
			stale = append(stale, e)
		}
	}
	changed := len(stale) > 0
	parsed := r.mirror.parseAll(stale)
	for i, e := range stale {
		r.applyParsed(e, parsed[i])
	}

	for _, key := range r.mirror.vanished(listed) {
		r.w.log.Debug("key vanished while not watched", "key", key)
		r.mirror.delete(key)
		changed = true
	}
	return changed
}

// applyPut applies one key and counts and logs it when invalid. The log
// names the key, the fields at fault and the parse error, which quotes
// the offending field values but never the whole document.
func (r *runner) applyPut(e entry) { r.applyParsed(e, nil) }

// applyParsed is applyPut for a value parseAll may have parsed already.
func (r *runner) applyParsed(e entry, parsed *mesh.Parsed) {
	err := r.mirror.put(e, parsed)
	if err == nil {
		return
	}
	r.w.metrics.InvalidTotal.Inc()
	r.logWarn("invalid:"+e.key, "invalid document, keeping the last good value",
		"key", e.key, "mod_revision", e.modRev, "fields", invalidFields(err), "error", err)
}

// publishState hands the mirror's current State to the publish callback.
func (r *runner) publishState() {
	state := r.mirror.builder.State()
	r.w.metrics.Invalid.Set(float64(len(state.Invalid)))
	r.publish(state)
	r.w.log.Debug("published state", "revision", state.Revision,
		"services", len(state.Services), "endpoints", state.EndpointCount(), "invalid", len(state.Invalid))
}

// sleep waits for the next backoff delay. It returns false when ctx ended
// first.
func (r *runner) sleep(ctx context.Context) bool {
	t := time.NewTimer(r.backoff.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// logWarn logs at warn level unless a line on topic was logged within
// logRepeatInterval.
func (r *runner) logWarn(topic, msg string, args ...any) {
	ok, suppressed := r.limiter.Allow(topic, time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_repeats", suppressed)
	}
	r.w.log.Warn(msg, args...)
}

// invalidFields returns the sorted, distinct field paths of an invalid
// document error, with "" for the document as a whole.
func invalidFields(err error) []string {
	fields := make(map[string]struct{})
	var list mesh.FieldErrors
	var one *mesh.FieldError
	switch {
	case errors.As(err, &list):
		for _, fe := range list {
			fields[fe.Field] = struct{}{}
		}
	case errors.As(err, &one):
		fields[one.Field] = struct{}{}
	}
	return slices.Sorted(maps.Keys(fields))
}
