package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type agentMetrics struct {
	resets          prometheus.Counter
	emptyHeld       prometheus.Counter
	pushes          prometheus.Counter
	pushSeconds     prometheus.Histogram
	translateErrors prometheus.Counter
}

func newAgentMetrics(reg *prometheus.Registry, a *Agent) *agentMetrics {
	m := &agentMetrics{
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_agent_store_resets_total",
			Help: "Times the store's revision went backwards (a reset or a restore) and the agent waited before serving its state.",
		}),
		emptyHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_agent_empty_states_held_total",
			Help: "Times the store returned a mesh with no services or no endpoints while some were served, and the agent kept the last state.",
		}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_agent_pushes_total",
			Help: "Mesh states translated and applied to the xDS cache.",
		}),
		pushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tether_agent_push_duration_seconds",
			Help:    "Time to translate one mesh state and apply it to the xDS cache, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_agent_translate_errors_total",
			Help: "Pushes in which at least one service could not be translated.",
		}),
	}
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tether_agent_ready",
		Help: "1 when the agent serves a mesh state, 0 before.",
	}, func() float64 {
		if a.readiness().Ready {
			return 1
		}
		return 0
	})
	revision := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tether_agent_state_revision",
		Help: "Store revision (etcd) or index (Consul) of the mesh state last pushed.",
	}, func() float64 {
		st, _ := a.Current()
		if st == nil {
			return 0
		}
		return float64(st.Revision)
	})
	lastPush := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tether_agent_last_push_timestamp_seconds",
		Help: "Unix time of the last push, in seconds; 0 before the first.",
	}, func() float64 {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.lastPush.IsZero() {
			return 0
		}
		return float64(a.lastPush.UnixNano()) / 1e9
	})
	reg.MustRegister(m.resets, m.emptyHeld, m.pushes, m.pushSeconds, m.translateErrors, ready, revision, lastPush,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
