package consul

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"

	"github.com/tether-mesh/tether/watchers"
)

// fetchFunc sends one request of a blocking query with q and returns its
// result, already converted for the runner, and Consul's query metadata.
type fetchFunc func(q *api.QueryOptions) (any, *api.QueryMeta, error)

// query is one blocking query. Its goroutine reads only the fields set at
// creation. stopped and synced belong to the goroutine of Run.
type query struct {
	// name identifies the query in logs and topics, such as
	// health/service/web.
	name     string
	endpoint string
	fetch    fetchFunc

	// stopped is set when the runner no longer wants the query's results.
	stopped bool
	// synced is set when the first successful response was applied.
	synced bool
}

// result is the outcome of one request, sent by a query's goroutine to
// Run's goroutine.
type result struct {
	q *query
	// index is the index the query waits on next. It is 0 after an error.
	index uint64
	// data is the converted response body. It is nil when the request
	// failed or the index did not move, so there is nothing to apply.
	data any
	// reset is true when the index went backwards.
	reset bool
	err   error
}

// nextIndex returns the index to wait on after a response at got to a
// request that waited on prev, whether the response must be applied, and
// whether the index went backwards. The rules follow Consul's guidance for
// blocking queries: an index below 1 is clamped to 1, an index that did not
// move means nothing changed, and an index that went backwards starts the
// query over. A request with prev 0 did not block, so its response is
// always applied.
func nextIndex(prev, got uint64) (next uint64, apply, reset bool) {
	next = max(got, 1)
	switch {
	case prev == 0:
		return next, true, false
	case next < prev:
		return next, true, true
	case next == prev:
		return next, false, false
	default:
		return next, true, false
	}
}

// follow runs q until ctx is done, sending every result to the runner. It
// is the body of the query's goroutine.
func (r *runner) follow(ctx context.Context, q *query) {
	cfg := r.w.cfg
	limiter := rate.NewLimiter(cfg.QueryRate, cfg.QueryBurst)
	retry := watchers.Backoff{Min: cfg.BackoffMin, Max: cfg.BackoffMax}
	var index uint64
	for {
		if limiter.Wait(ctx) != nil {
			return
		}
		data, meta, err := r.request(ctx, q, index)
		if ctx.Err() != nil {
			return
		}

		if err != nil {
			r.w.metrics.requestErrors.WithLabelValues(q.endpoint).Inc()
			if index != 0 {
				r.w.metrics.Resyncs.WithLabelValues(reasonError).Inc()
			}
			// Start over from index 0: after a server restart the old
			// index may never be reached again, and a request waiting
			// on it would block for the whole wait time.
			index = 0
			if !r.send(ctx, result{q: q, err: redact(err, r.w.token)}) || !sleep(ctx, retry.Next()) {
				return
			}
			continue
		}
		retry.Reset()

		next, apply, reset := nextIndex(index, meta.LastIndex)
		if reset {
			r.w.metrics.Resyncs.WithLabelValues(reasonIndexReset).Inc()
		}
		res := result{q: q, index: next, reset: reset}
		if apply {
			res.data = data
		}
		index = next
		if !r.send(ctx, res) {
			return
		}
	}
}

// request sends one request of q, blocking on index when it is not 0.
func (r *runner) request(ctx context.Context, q *query, index uint64) (any, *api.QueryMeta, error) {
	cfg := r.w.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.requestTimeout())
	defer cancel()

	opts := &api.QueryOptions{
		WaitIndex:  index,
		WaitTime:   cfg.WaitTime,
		AllowStale: !cfg.RequireConsistent,
	}
	r.w.metrics.requests.WithLabelValues(q.endpoint).Inc()
	return q.fetch(opts.WithContext(ctx))
}

// send hands res to Run's goroutine. It returns false when ctx ended first.
func (r *runner) send(ctx context.Context, res result) bool {
	select {
	case r.results <- res:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits for d. It returns false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
