package etcd

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-mesh/tether/watchers"
)

// Resync reasons, the values of the reason label of
// tether_store_resyncs_total.
const (
	reasonCompacted = "compacted"
	reasonSilent    = "silent"
	reasonError     = "error"
	reasonClosed    = "closed"
)

// metrics are the watcher's Prometheus metrics, all shared with other
// watchers under the label source="etcd".
type metrics struct {
	*watchers.StoreMetrics
}

func newMetrics() *metrics {
	return &metrics{watchers.NewStoreMetrics("etcd", reasonCompacted, reasonSilent, reasonError, reasonClosed)}
}

func (m *metrics) register(r prometheus.Registerer) error {
	return watchers.Register(r, "etcd watcher", m.Collectors()...)
}
