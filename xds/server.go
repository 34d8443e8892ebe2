package xds

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
)

// Options configures a Server.
type Options struct {
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil skips registration.
	Registerer prometheus.Registerer
	// OnAck, when set, is called on the stream's goroutine for every ACK.
	// It must return quickly. Benchmarks and tests use it.
	OnAck func(AckEvent)
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// AckEvent describes one ACK.
type AckEvent struct {
	StreamID int64
	NodeID   string
	TypeURL  string
	Version  string
	At       time.Time
}

// Server serves the resources of a Cache over ADS and the per-type xDS
// services, state of the world and delta. It is safe for concurrent use.
type Server struct {
	cache   *Cache
	log     *slog.Logger
	metrics *metrics
	onAck   func(AckEvent)
	now     func() time.Time

	nextID atomic.Int64
	mu     sync.Mutex
	// streams are the open streams by id; guarded by mu.
	streams map[int64]*stream
}

// NewServer returns a server for cache.
func NewServer(cache *Cache, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		cache:   cache,
		log:     opts.Logger.With("component", "xds"),
		metrics: newMetrics(opts.Registerer),
		onAck:   opts.OnAck,
		now:     opts.Now,
		streams: make(map[int64]*stream),
	}
}

// Cache returns the cache the server serves.
func (s *Server) Cache() *Cache { return s.cache }

// Register adds ADS and the cluster, endpoint, listener, route and secret
// discovery services to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, adsService{s: s})
	clusterservice.RegisterClusterDiscoveryServiceServer(g, cdsService{s: s})
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, edsService{s: s})
	listenerservice.RegisterListenerDiscoveryServiceServer(g, ldsService{s: s})
	routeservice.RegisterRouteDiscoveryServiceServer(g, rdsService{s: s})
	secretservice.RegisterSecretDiscoveryServiceServer(g, sdsService{s: s})
}

// Status returns the sync state of every open stream, ordered by node id.
func (s *Server) Status() []StreamStatus {
	s.mu.Lock()
	streams := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()

	out := make([]StreamStatus, 0, len(streams))
	for _, st := range streams {
		out = append(out, st.status())
	}
	slices.SortFunc(out, func(a, b StreamStatus) int {
		return cmp.Or(cmp.Compare(a.NodeID, b.NodeID), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// StreamCount returns the number of open streams.
func (s *Server) StreamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

func (s *Server) addStream(st *stream) {
	s.mu.Lock()
	s.streams[st.id] = st
	s.mu.Unlock()
	s.metrics.streams.WithLabelValues(st.kind).Inc()
}

func (s *Server) removeStream(st *stream) {
	s.mu.Lock()
	delete(s.streams, st.id)
	s.mu.Unlock()
	s.metrics.streams.WithLabelValues(st.kind).Dec()
	s.cache.removeWatcher(st.w)
}
