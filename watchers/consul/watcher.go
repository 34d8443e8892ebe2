// Package consul implements watchers.Watcher for Consul.
//
// Service documents come from the KV store, under <Prefix>services/<name>.
// Endpoints come from the catalog: the watcher follows the list of services
// (/v1/catalog/services) and, for each service in it, the service's healthy
// instances (/v1/health/service/<name>). A health watch starts when its
// service is registered and stops when the service leaves the catalog.
//
// # Blocking queries
//
// Every watch is a Consul blocking query that carries the index of its last
// response. After each response the next index is the response's
// X-Consul-Index, clamped to at least 1, because an index of 0 would make
// the next request return at once. A response at the index the watch
// already had is a timeout with nothing new. A response at a lower index
// (a server restart or a snapshot restore) is applied as a fresh start, and
// the watch goes on from the lower index. After a failed request, the next
// one uses index 0 and so returns at once: a restarted server may never
// reach the old index again. Each watch limits its own requests with a
// token bucket (Config.QueryRate, Config.QueryBurst) and waits with
// exponential backoff and jitter after a failure, so a server that responds
// at once, with index 0 or with errors, cannot drive it into a busy loop.
// Queries are stale reads unless Config.RequireConsistent is set. A stale
// read from a lagging server may carry a lower index, which the watcher
// handles like any other reset.
//
// # Goroutines
//
// Run owns one goroutine per blocking query: one for the KV prefix, one for
// the catalog and one per watched service, plus the goroutine of Run that
// applies their results. A service's goroutine spends its time in the HTTP
// request, which Consul holds for up to Config.WaitTime, or in the rate
// limiter or backoff wait, never in a loop. Each open request also holds
// one connection to the agent, for which net/http runs two goroutines of
// its own.
//
// NOTE: Consul limits concurrent HTTP connections per client IP address
// (limits.http_max_conns_per_client, 200 by default), so a watcher on more
// than about 190 services needs that limit raised on its agent.
//
// # Mapping instances to endpoints
//
// An instance is an endpoint when its aggregated check status is passing,
// or warning with Config.IncludeWarning. Proxies and gateways (a service
// Kind other than typical) are not endpoints. The instance name is the
// Consul service ID, or <service ID>@<node> when the same ID is registered
// on more than one node. The address is the service address, or the node
// address when the service has none; it must be an IP address.
//
// Labels: each service tag becomes a label with an empty value (tag "v2"
// becomes v2=""), and each service meta key and value becomes a label
// as is; a meta key wins over a tag of the same name.
//
// Locality: the region is the first one set of the service's Locality, the
// node's Locality, service meta "region", node meta "region" and the
// node's datacenter. The zone is the first one set of the service's
// Locality, the node's Locality, service meta "zone" and node meta "zone".
// The sub-zone comes from service meta "sub_zone", else node meta
// "sub_zone".
//
// Weight: the service's Weights.Passing (Weights.Warning for an instance in
// warning), clamped to 1 to 128.
//
// An instance that does not make a valid endpoint, a service name that is
// not a valid mesh name, and an invalid KV document are reported in
// State.Invalid under a key: the KV key for documents,
// consul:catalog/<service> for a service name and
// consul:catalog/<service>/<instance> for an instance. The last good
// value of an invalid document or instance stays in the state.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
)

// Watcher follows mesh configuration in Consul. Health is safe for
// concurrent use. Run may be called only once at a time.
type Watcher struct {
	cfg    Config
	log    *slog.Logger
	client *api.Client
	// transport is the client's transport, whose idle connections Run
	// closes before it returns, so that no goroutine of net/http
	// outlives Run.
	transport *http.Transport
	address   string
	// token is the ACL token in effect, from Config or the environment. It
	// is kept only to remove it from error texts.
	token   string
	metrics *metrics
	running atomic.Bool

	// mu guards health.
	mu     sync.Mutex
	health watchers.Health
}

var _ watchers.Watcher = (*Watcher)(nil)

// NewClient returns a Consul API client for the connection fields of cfg,
// with the CONSUL_* environment variables filling the empty ones, as the
// watcher builds its own. The config subcommands use it to write KV.
func NewClient(cfg Config) (*api.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client, _, err := newClient(cfg, cfg.Logger.With("component", "watchers/consul"))
	return client, err
}

// newClient returns the client and the resolved configuration it uses.
func newClient(cfg Config, log *slog.Logger) (*api.Client, *api.Config, error) {
	ac := cfg.apiConfig(log)
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, nil, fmt.Errorf("create consul client for %s: %w", ac.Address, redact(err, ac.Token))
	}
	// NewClient resolved the scheme, and the token from a token file.
	if ac.Scheme != "https" && cfg.TLS != (TLSConfig{}) {
		return nil, nil, fmt.Errorf("consul watcher config: TLS files are set but the address %q uses http: "+
			"use an https:// address or set CONSUL_HTTP_SSL=true", ac.Address)
	}
	return client, ac, nil
}

// New validates cfg, reads the CONSUL_* environment variables for the
// connection fields cfg leaves empty, creates the Consul client and
// registers the watcher's metrics on cfg.Registerer. It does not contact
// Consul.
func New(cfg Config) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("component", "watchers/consul")
	client, ac, err := newClient(cfg, log)
	if err != nil {
		return nil, err
	}

	m := newMetrics()
	if err := m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	return &Watcher{
		cfg:       cfg,
		log:       log,
		client:    client,
		transport: ac.Transport,
		address:   ac.Scheme + "://" + ac.Address,
		token:     ac.Token,
		metrics:   m,
	}, nil
}

// Run follows Consul, calling publish with every new State, until ctx is
// done. The first State is published once the KV prefix, the catalog and
// the health of every service in it have each been read once. Run returns
// nil when ctx is done, and an error only when it is already running.
// Consul failures are retried with backoff.
func (w *Watcher) Run(ctx context.Context, publish func(*mesh.State)) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("consul watcher: Run is already running")
	}
	defer w.running.Store(false)

	w.log.Info("consul watcher starting", "address", w.address, "datacenter", w.cfg.Datacenter,
		"prefix", w.cfg.Prefix, "include_warning", w.cfg.IncludeWarning, "wait_time", w.cfg.WaitTime)
	defer w.log.Info("consul watcher stopped")
	newRunner(w, publish).run(ctx)
	w.transport.CloseIdleConnections()
	return nil
}

// Health returns the watcher's current health. It is safe for concurrent
// use.
func (w *Watcher) Health() watchers.Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.health
}

// markSynced records that the first complete state is about to be
// published, confirmed current at now.
func (w *Watcher) markSynced(now time.Time) {
	w.mu.Lock()
	w.health.Synced = true
	w.mu.Unlock()
	w.markHeard(now)
}

// markHeard records a successful response at now.
func (w *Watcher) markHeard(now time.Time) {
	w.mu.Lock()
	w.health.LastSync = now
	w.mu.Unlock()

	w.metrics.LastSync.Set(float64(now.UnixNano()) / 1e9)
}

// setStale records whether some query is failing, and the latest error.
// err has already passed through redact.
func (w *Watcher) setStale(stale bool, err error) {
	w.mu.Lock()
	w.health.Stale = stale
	if err != nil {
		w.health.LastError = err.Error()
	}
	w.mu.Unlock()

	if stale {
		w.metrics.Stale.Set(1)
	} else {
		w.metrics.Stale.Set(0)
	}
}
