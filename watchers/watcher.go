// Package watchers defines the interface every configuration source
// implements. Sources live in subpackages: watchers/etcd and, later,
// watchers/consul and watchers/file.
package watchers

import (
	"context"
	"time"

	"github.com/tether-mesh/tether/mesh"
)

// Watcher follows one configuration store and publishes complete mesh
// states.
type Watcher interface {
	// Run lists the store, calls publish with the first complete state,
	// then calls it again after every change until ctx is done. Run
	// returns nil when ctx is done; it retries store failures itself and
	// returns an error only for a problem a retry cannot fix (bad
	// configuration). publish is called from one goroutine at a time and
	// must not block for long: the agent debounces behind it.
	Run(ctx context.Context, publish func(*mesh.State)) error

	// Health returns the source's current health. It is safe for
	// concurrent use.
	Health() Health
}

// Health is a source's view of its own freshness.
type Health struct {
	// Synced is true once the first complete state was published.
	Synced bool `json:"synced"`
	// Stale is true while the source cannot confirm that its state is
	// current: the store is unreachable or a watch went silent.
	Stale bool `json:"stale"`
	// LastSync is when the source last confirmed its state was current
	// (an event, a progress notification or a completed list).
	LastSync time.Time `json:"last_sync,omitzero"`
	// LastError is the most recent store error, or empty.
	LastError string `json:"last_error,omitempty"`
}
