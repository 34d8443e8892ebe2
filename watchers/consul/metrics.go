package consul

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-mesh/tether/watchers"
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

// metrics are the watcher's Prometheus metrics: the tether_store_* ones
// every watcher shares, with the label source="consul", and Consul's own.
type metrics struct {
	*watchers.StoreMetrics
	requests      *prometheus.CounterVec
	requestErrors *prometheus.CounterVec
	healthWatches prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		StoreMetrics: watchers.NewStoreMetrics(sourceLabelValue, reasonError, reasonIndexReset),
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
	// Every endpoint starts at zero, so that rate() works from the first
	// scrape.
	for _, endpoint := range []string{endpointKV, endpointCatalog, endpointHealth} {
		m.requests.WithLabelValues(endpoint)
		m.requestErrors.WithLabelValues(endpoint)
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	collectors := append(m.Collectors(), m.requests, m.requestErrors, m.healthWatches)
	return watchers.Register(r, "consul watcher", collectors...)
}
