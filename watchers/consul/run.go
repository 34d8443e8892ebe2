package consul

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
)

// logRepeatInterval is the minimum time between two log lines on the same
// topic, such as the same failing query or the same invalid key.
const logRepeatInterval = 30 * time.Second

// consulServiceName is the service every Consul server registers for
// itself. It is not a mesh workload, so the watcher does not follow it.
const consulServiceName = "consul"

// runner is the state of one call to Watcher.Run. Only the goroutine of
// Run uses its fields; query goroutines only send on results.
type runner struct {
	w       *Watcher
	publish func(*mesh.State)
	builder *mesh.Builder
	limiter *watchers.LogLimiter

	// results carries every query's results. Query goroutines send and
	// Run's goroutine receives. The channel is never closed.
	results chan result
	// group tracks every query goroutine.
	group sync.WaitGroup

	kvQuery      *query
	catalogQuery *query
	// kv maps each KV key under the services prefix to its last value.
	kv map[string][]byte
	// watches maps a service name to its health watch.
	watches map[string]*healthWatch
	// badNames is the catalog's service names that are not valid mesh
	// names.
	badNames map[string]struct{}

	// indexes is the index each query waits on; the State's revision is
	// their maximum.
	indexes map[*query]uint64
	// failing maps each query whose last request failed to its error.
	failing   map[*query]error
	published bool
}

// healthWatch is the health query of one service and what it last
// applied.
type healthWatch struct {
	service string
	query   *query
	cancel  context.CancelFunc
	// instances is the service's endpoints in the builder.
	instances map[string]*mesh.Endpoint
	// invalid maps the names of invalid instances to their errors.
	invalid map[string]error
}

func newRunner(w *Watcher, publish func(*mesh.State)) *runner {
	return &runner{
		w:        w,
		publish:  publish,
		builder:  mesh.NewBuilder(w.cfg.Prefix),
		limiter:  watchers.NewLogLimiter(logRepeatInterval),
		results:  make(chan result),
		kv:       make(map[string][]byte),
		watches:  make(map[string]*healthWatch),
		badNames: make(map[string]struct{}),
		indexes:  make(map[*query]uint64),
		failing:  make(map[*query]error),
	}
}

// run starts the KV and catalog queries and applies every result until ctx
// is done. It returns after every query goroutine has ended.
func (r *runner) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer r.group.Wait()
	defer cancel()

	r.kvQuery = r.newKVQuery()
	r.catalogQuery = r.newCatalogQuery()
	r.start(ctx, r.kvQuery)
	r.start(ctx, r.catalogQuery)

	for {
		select {
		case <-ctx.Done():
			return
		case res := <-r.results:
			r.handle(ctx, res)
		}
	}
}

// start runs q on a goroutine of its own until ctx is done.
func (r *runner) start(ctx context.Context, q *query) {
	r.group.Go(func() { r.follow(ctx, q) })
}

func (r *runner) newKVQuery() *query {
	kv := r.w.client.KV()
	// The whole prefix is listed, not only services/, so that a key the
	// watcher does not read is reported rather than ignored.
	prefix := r.w.cfg.Prefix
	return &query{
		name:     "kv/" + prefix,
		endpoint: endpointKV,
		fetch: func(q *api.QueryOptions) (any, *api.QueryMeta, error) {
			pairs, meta, err := kv.List(prefix, q)
			return pairs, meta, err
		},
	}
}

func (r *runner) newCatalogQuery() *query {
	catalog := r.w.client.Catalog()
	return &query{
		name:     "catalog/services",
		endpoint: endpointCatalog,
		fetch: func(q *api.QueryOptions) (any, *api.QueryMeta, error) {
			services, meta, err := catalog.Services(q)
			return services, meta, err
		},
	}
}

func (r *runner) newHealthQuery(service string) *query {
	health := r.w.client.Health()
	includeWarning := r.w.cfg.IncludeWarning
	return &query{
		name:     "health/service/" + service,
		endpoint: endpointHealth,
		fetch: func(q *api.QueryOptions) (any, *api.QueryMeta, error) {
			// Without IncludeWarning, Consul drops every instance with a
			// check that is not passing; with it, convertEntries filters.
			entries, meta, err := health.Service(service, "", !includeWarning, q)
			if err != nil {
				return nil, nil, err
			}
			return convertEntries(service, entries, includeWarning), meta, nil
		},
	}
}

// handle applies one result and publishes a State when one is due.
func (r *runner) handle(ctx context.Context, res result) {
	if res.q.stopped {
		return
	}
	if res.err != nil {
		r.recordFailure(res)
		return
	}
	r.recordSuccess(res)

	changed := false
	if res.data != nil {
		changed = r.apply(ctx, res)
		res.q.synced = true
	}
	r.maybePublish(changed)
}

// apply hands a response body to the function for its query.
func (r *runner) apply(ctx context.Context, res result) bool {
	switch data := res.data.(type) {
	case api.KVPairs:
		return r.applyKV(data)
	case map[string][]string:
		return r.applyCatalog(ctx, data)
	case healthResult:
		for _, hw := range r.watches {
			if hw.query == res.q {
				return r.applyHealth(hw, data)
			}
		}
	}
	return false
}

// maybePublish publishes the State for the first time once every query
// has applied a response, and after that whenever something changed.
func (r *runner) maybePublish(changed bool) {
	if r.published {
		if changed {
			r.publishState()
		}
		return
	}
	if !r.allSynced() {
		return
	}
	r.published = true
	r.w.markSynced(time.Now())
	r.publishState()
	r.w.log.Info("consul state synced", "revision", r.revision(),
		"services", len(r.kv), "watched_services", len(r.watches))
}

// allSynced reports whether every query has applied a response.
//
// NOTE: a service whose health query keeps failing holds back the first
// State. Consul filters by ACL instead of rejecting, so a missing
// permission shows as an empty service, not as a failure.
func (r *runner) allSynced() bool {
	if !r.kvQuery.synced || !r.catalogQuery.synced {
		return false
	}
	for _, hw := range r.watches {
		if !hw.query.synced {
			return false
		}
	}
	return true
}

// publishState hands the builder's current State to the publish callback.
func (r *runner) publishState() {
	r.builder.SetRevision(int64(min(r.revision(), uint64(1<<63-1))))
	state := r.builder.State()
	r.w.metrics.Invalid.Set(float64(len(state.Invalid)))
	r.publish(state)
	r.w.log.Debug("published state", "revision", state.Revision,
		"services", len(state.Services), "endpoints", state.EndpointCount(), "invalid", len(state.Invalid))
}

// revision returns the highest index any query waits on.
func (r *runner) revision() uint64 {
	var rev uint64
	for _, index := range r.indexes {
		rev = max(rev, index)
	}
	return rev
}

// recordFailure marks the state stale until res.q succeeds again, and logs
// the error, rate-limited per query by logWarn.
func (r *runner) recordFailure(res result) {
	r.failing[res.q] = res.err
	delete(r.indexes, res.q)
	r.w.setStale(true, res.err)
	r.logWarn("request:"+res.q.name, "consul request failed, marking state stale and retrying",
		"query", res.q.name, "error", res.err)
}

// recordSuccess clears the query's failure and stores its index.
func (r *runner) recordSuccess(res result) {
	r.indexes[res.q] = res.index
	r.w.markHeard(time.Now())
	if res.reset {
		r.logWarn("reset:"+res.q.name, "consul index went backwards, starting the query over",
			"query", res.q.name, "index", res.index)
	}
	if _, ok := r.failing[res.q]; !ok {
		return
	}
	delete(r.failing, res.q)
	r.w.log.Info("consul request succeeded again", "query", res.q.name, "index", res.index)
	if len(r.failing) == 0 {
		r.w.setStale(false, nil)
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

// sortedNames returns the keys of m in order, for deterministic logs and
// iteration.
func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
