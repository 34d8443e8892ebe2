// Package etcd implements watchers.Watcher for etcd v3.
//
// The watcher lists every prefix it follows at one store revision, publishes
// the resulting mesh.State, then watches each prefix from the next revision
// and publishes a new State after every watch response that changed a key.
// When a watch is compacted, closed, fails or stays silent for longer than
// Config.SilenceTimeout, it lists again at a fresh revision, deletes the
// keys that vanished meanwhile, and starts new watches.
//
// # Revisions across several prefixes
//
// With NamingPrefixes set, the watcher follows several disjoint prefixes.
// The first request of a list fixes the revision R (its header revision),
// and every further page and prefix is read with WithRev(R), so the listed
// snapshot is consistent across prefixes. Each prefix then gets its own
// watch from R+1. The watches share one gRPC stream, since they share one
// context, and so a single progress request refreshes all of them.
//
// Responses from different watches arrive in no fixed order, so a State
// may already contain events above the revision it names. State.Revision
// is therefore a lower bound: for each watch, the watcher keeps the
// revision up to which it has received every event, from the ModRevision
// of its events and the header of its progress notifications. The
// revision of a State is the minimum of those values over all watches.
// With one prefix it is the revision of the last event applied.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
)

// Watcher follows mesh configuration in etcd. Health is safe for concurrent
// use. Run may be called only once at a time.
type Watcher struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	running atomic.Bool

	// mu guards health.
	mu     sync.Mutex
	health watchers.Health
}

var _ watchers.Watcher = (*Watcher)(nil)

// New validates cfg, fills in its defaults and registers the watcher's
// metrics on cfg.Registerer.
func New(cfg Config) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := newMetrics()
	if err := m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	return &Watcher{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "watchers/etcd"),
		metrics: m,
	}, nil
}

// Run lists and watches etcd, calling publish with every new State, until
// ctx is done. It returns nil when ctx is done, and an error when it is
// already running or when the caller closed the etcd client. Store
// failures are retried with backoff.
func (w *Watcher) Run(ctx context.Context, publish func(*mesh.State)) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("etcd watcher: Run is already running")
	}
	defer w.running.Store(false)

	w.log.Info("etcd watcher starting",
		"prefix", w.cfg.Prefix, "naming_prefixes", w.cfg.NamingPrefixes)
	defer w.log.Info("etcd watcher stopped")
	return newRunner(w, publish).run(ctx)
}

// Health returns the watcher's current health. It is safe for concurrent
// use.
func (w *Watcher) Health() watchers.Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.health
}

// markSynced records that a complete list, which always follows the first
// publish, confirmed the state current at now.
func (w *Watcher) markSynced(now time.Time) {
	w.mu.Lock()
	w.health.Synced = true
	w.health.Stale = false
	w.health.LastSync = now
	w.mu.Unlock()

	w.metrics.Stale.Set(0)
	w.metrics.LastSync.Set(float64(now.UnixNano()) / 1e9)
}

// markHeard records an event or a progress notification at now. It does
// not clear Stale, which only a complete list does.
func (w *Watcher) markHeard(now time.Time) {
	w.mu.Lock()
	w.health.LastSync = now
	w.mu.Unlock()

	w.metrics.LastSync.Set(float64(now.UnixNano()) / 1e9)
}

// markStale records that the state can no longer be confirmed current,
// and why.
func (w *Watcher) markStale(err error) {
	w.mu.Lock()
	w.health.Stale = true
	if err != nil {
		w.health.LastError = err.Error()
	}
	w.mu.Unlock()

	w.metrics.Stale.Set(1)
}

// errClientClosed is returned by Run when the caller closed the etcd
// client, which no retry can fix.
var errClientClosed = errors.New("etcd watcher: etcd client closed")

// stopped reports whether Run must return, and with which error.
func (w *Watcher) stopped(ctx context.Context) (bool, error) {
	if ctx.Err() != nil {
		return true, nil
	}
	if err := w.cfg.Client.Ctx().Err(); err != nil {
		return true, fmt.Errorf("%w: %w", errClientClosed, err)
	}
	return false, nil
}
