package etcd

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Resync reasons, the values of the reason label of
// tether_store_resyncs_total.
const (
	reasonCompacted = "compacted"
	reasonSilent    = "silent"
	reasonError     = "error"
	reasonClosed    = "closed"
)

// metrics are the watcher's Prometheus metrics. Every metric carries the
// constant label source="etcd", so that other watchers can register the
// same names on the same registry.
type metrics struct {
	events       *prometheus.CounterVec
	invalid      prometheus.Gauge
	invalidTotal prometheus.Counter
	stale        prometheus.Gauge
	lastSync     prometheus.Gauge
	resyncs      *prometheus.CounterVec
}

func newMetrics() *metrics {
	labels := prometheus.Labels{"source": "etcd"}
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "tether_store_events_total",
			Help:        "Store events applied from watches, by kind (put or delete).",
			ConstLabels: labels,
		}, []string{"kind"}),
		invalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tether_store_invalid_documents",
			Help:        "Keys whose document failed to parse in the last published state.",
			ConstLabels: labels,
		}),
		invalidTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "tether_store_invalid_documents_total",
			Help:        "Documents that failed to parse, counted once per stored version.",
			ConstLabels: labels,
		}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tether_store_stale",
			Help:        "1 while the watcher cannot confirm that its state is current, else 0.",
			ConstLabels: labels,
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tether_store_last_sync_timestamp_seconds",
			Help:        "Unix time when the watcher last confirmed its state was current.",
			ConstLabels: labels,
		}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "tether_store_resyncs_total",
			Help:        "Full lists after a lost watch, by reason (compacted, silent, error, closed).",
			ConstLabels: labels,
		}, []string{"reason"}),
	}

	// Create every label value up front so that rate() starts from a zero
	// before the first increment.
	for _, kind := range []string{"put", "delete"} {
		m.events.WithLabelValues(kind)
	}
	for _, reason := range []string{reasonCompacted, reasonSilent, reasonError, reasonClosed} {
		m.resyncs.WithLabelValues(reason)
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	collectors := []prometheus.Collector{
		m.events, m.invalid, m.invalidTotal, m.stale, m.lastSync, m.resyncs,
	}
	for i, c := range collectors {
		if err := r.Register(c); err != nil {
			for _, done := range collectors[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register etcd watcher metrics: %w", err)
		}
	}
	return nil
}
