package watchers

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreMetrics are the tether_store_* metrics every watcher exports. Each
// carries the constant label source=<watcher>, so that several watchers
// can register the same names on one registry.
type StoreMetrics struct {
	// Events counts store events applied, by kind (put or delete).
	Events *prometheus.CounterVec
	// Invalid is the number of invalid keys in the last published state.
	Invalid prometheus.Gauge
	// InvalidTotal counts documents that failed to parse.
	InvalidTotal prometheus.Counter
	// Stale is 1 while the watcher cannot confirm its state is current.
	Stale prometheus.Gauge
	// LastSync is the Unix time of the last confirmation, in seconds.
	LastSync prometheus.Gauge
	// Resyncs counts full reads after a lost watch, by reason.
	Resyncs *prometheus.CounterVec
}

// NewStoreMetrics returns the metrics of the watcher named source, with
// every resync reason it uses created at zero, so that rate() works from
// the first scrape.
func NewStoreMetrics(source string, resyncReasons ...string) *StoreMetrics {
	labels := prometheus.Labels{"source": source}
	m := &StoreMetrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "tether_store_events_total",
			Help:        "Store events applied from watches, by kind (put or delete).",
			ConstLabels: labels,
		}, []string{"kind"}),
		Invalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tether_store_invalid_documents",
			Help:        "Keys whose document failed to parse in the last published state.",
			ConstLabels: labels,
		}),
		InvalidTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "tether_store_invalid_documents_total",
			Help:        "Documents that failed to parse, counted once per stored version.",
			ConstLabels: labels,
		}),
		Stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tether_store_stale",
			Help:        "1 while the watcher cannot confirm that its state is current, else 0.",
			ConstLabels: labels,
		}),
		LastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tether_store_last_sync_timestamp_seconds",
			Help:        "Unix time when the watcher last confirmed its state was current.",
			ConstLabels: labels,
		}),
		Resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "tether_store_resyncs_total",
			Help:        "Full reads of the store after a lost watch or query, by reason.",
			ConstLabels: labels,
		}, []string{"reason"}),
	}
	for _, kind := range []string{"put", "delete"} {
		m.Events.WithLabelValues(kind)
	}
	for _, reason := range resyncReasons {
		m.Resyncs.WithLabelValues(reason)
	}
	return m
}

// Collectors returns every metric, for Register.
func (m *StoreMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Events, m.Invalid, m.InvalidTotal, m.Stale, m.LastSync, m.Resyncs}
}

// Register registers collectors on r, all or none. A nil r registers
// nothing. name says whose metrics they are, for the error.
func Register(r prometheus.Registerer, name string, collectors ...prometheus.Collector) error {
	if r == nil {
		return nil
	}
	for i, c := range collectors {
		if err := r.Register(c); err != nil {
			for _, done := range collectors[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register %s metrics: %w", name, err)
		}
	}
	return nil
}
