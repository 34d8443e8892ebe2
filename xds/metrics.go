package xds

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	streams   *prometheus.GaugeVec
	responses *prometheus.CounterVec
	resources *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	acks      *prometheus.CounterVec
	nacks     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_xds_streams",
			Help: "Open xDS streams by kind (ads or a per-type service, sotw or delta).",
		}, []string{"kind"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_xds_responses_total",
			Help: "xDS responses sent, by resource type.",
		}, []string{"type_url"}),
		resources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_xds_resources_sent_total",
			Help: "Resources sent in xDS responses, by resource type.",
		}, []string{"type_url"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_xds_sent_bytes_total",
			Help: "Marshalled size of xDS responses sent, in bytes, by resource type.",
		}, []string{"type_url"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_xds_acks_total",
			Help: "xDS responses clients accepted, by resource type.",
		}, []string{"type_url"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_xds_nacks_total",
			Help: "xDS responses clients rejected, by resource type.",
		}, []string{"type_url"}),
	}
	// Series for every served type exist from the start, so a NACK rate
	// reads 0 rather than no data before the first NACK.
	for _, t := range pushOrder {
		for _, v := range []*prometheus.CounterVec{m.responses, m.resources, m.bytes, m.acks, m.nacks} {
			v.WithLabelValues(t)
		}
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.responses, m.resources, m.bytes, m.acks, m.nacks)
	}
	return m
}
