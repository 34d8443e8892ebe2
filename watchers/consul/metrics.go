package consul

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Consul HTTP API endpoints the watcher queries, the values of the endpoint
// label of tether_consul_requests_total.
const (
	endpointKV       = "/v1/kv"
	endpointCatalog  = "/v1/catalog/services"
	endpointHealth   = "/v1/health/service"
	sourceLabelValue = "consul"
)

// Resync reasons, the values of the reason label of
// tether_store_resyncs_total. A blocking query resyncs when it starts over
// from index 0 after a failed request, or when Consul returned a lower index
// than the one it waited on (a server restart or a snapshot restore).
const (
	reasonError      = "error"
	reasonIndexReset = "index_reset"
)

// metrics are the watcher's Prometheus metrics. The tether_store_* metrics
// share their names and help with the etcd watcher and carry the constant
// label source="consul", so that both watchers can register on one
// registry.
type metrics struct {
	events        *prometheus.CounterVec
	invalid       prometheus.Gauge
	invalidTotal  prometheus.Counter
	stale         prometheus.Gauge
	lastSync      prometheus.Gauge
	resyncs       *prometheus.CounterVec
	requests      *prometheus.CounterVec
	requestErrors *prometheus.CounterVec
	healthWatches prometheus.Gauge
}

func newMetrics() *metrics {
	labels := prometheus.Labels{"source": sourceLabelValue}
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
		// NOTE: the help text must equal the etcd watcher's, or a registry
		// holding both rejects the second; its list of reasons is etcd's.
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "tether_store_resyncs_total",
			Help:        "Full lists after a lost watch, by reason (compacted, silent, error, closed).",
			ConstLabels: labels,
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_consul_requests_total",
			Help: "HTTP requests sent to the Consul agent, by API endpoint.",
		}, []string{"endpoint"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_consul_request_errors_total",
			Help: "HTTP requests to the Consul agent that failed, by API endpoint.",
		}, []string{"endpoint"}),
		healthWatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_consul_health_watches",
			Help: "Services whose health the watcher follows with a blocking query.",
		}),
	}
	m.initLabels()
	return m
}

// initLabels creates every label value up front, so that rate() starts
// from a zero before the first increment.
func (m *metrics) initLabels() {
	for _, kind := range []string{"put", "delete"} {
		m.events.WithLabelValues(kind)
	}
	for _, reason := range []string{reasonError, reasonIndexReset} {
		m.resyncs.WithLabelValues(reason)
	}
	for _, endpoint := range []string{endpointKV, endpointCatalog, endpointHealth} {
		m.requests.WithLabelValues(endpoint)
		m.requestErrors.WithLabelValues(endpoint)
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	collectors := []prometheus.Collector{
		m.events, m.invalid, m.invalidTotal, m.stale, m.lastSync, m.resyncs,
		m.requests, m.requestErrors, m.healthWatches,
	}
	for i, c := range collectors {
		if err := r.Register(c); err != nil {
			for _, done := range collectors[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register consul watcher metrics: %w", err)
		}
	}
	return nil
}
