package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/xds"
)

// snapshotEnv is the baseline: go-control-plane v0.14.0's state-of-the-world
// snapshot cache and server, fed the resources Tether's translator
// builds from the same mesh. There is no store: a change goes from the
// in-memory mesh builder straight to SetSnapshot.
type snapshotEnv struct {
	mesh       refMesh
	builder    *mesh.Builder
	translator *xds.Translator
	cache      cachev3.SnapshotCache
	addr       string
	nodes      []string
	acks       *ackTracker
	// sent is the marshalled size of every response sent, in bytes.
	sent    atomic.Int64
	version uint64
	// decoded caches the message of each resource; see message.
	decoded map[*xds.Resource]types.Resource
}

// startSnapshotEnv serves m from a snapshot cache on a loopback port until
// tb ends. The cache is built with ads=false: with ads=true, v0.14.0 never
// responds to a request that names fewer resources than the snapshot holds,
// and gRPC clients name only what they use.
func startSnapshotEnv(tb testing.TB, m refMesh) *snapshotEnv {
	tb.Helper()
	b, err := m.builder()
	if err != nil {
		tb.Fatal(err)
	}
	e := &snapshotEnv{
		mesh:       m,
		builder:    b,
		translator: xds.NewTranslator(xds.TranslatorOptions{Logger: discardLogger()}),
		cache:      cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil),
		acks:       newAckTracker(),
	}
	if _, err := e.translator.Update(b.State()); err != nil {
		tb.Fatalf("translate reference mesh: %v", err)
	}
	e.serve(tb)
	return e
}

func (e *snapshotEnv) serve(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, adsServer{sotw: sotwv3.NewServer(ctx, e.cache, e)})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		tb.Fatalf("listen for the baseline xds server: %v", err)
	}
	e.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	tb.Cleanup(func() {
		g.Stop()
		cancel()
		<-done
	})
}

// adsServer serves ADS with go-control-plane's state-of-the-world server.
// It does what pkg/server/v3's ADS handler does, without that package,
// which would pull the go-control-plane/ratelimit module into go.mod.
type adsServer struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	sotw sotwv3.Server
}

func (s adsServer) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.sotw.StreamHandler(stream, resourcev3.AnyType)
}

// OnStreamOpen implements sotwv3.Callbacks.
func (e *snapshotEnv) OnStreamOpen(context.Context, int64, string) error { return nil }

// OnStreamClosed implements sotwv3.Callbacks.
func (e *snapshotEnv) OnStreamClosed(int64, *corev3.Node) {}

// OnStreamRequest records ACKs and NACKs. A request that carries a response
// nonce refers to an earlier response: with error_detail it is a NACK,
// without it an ACK of version_info.
func (e *snapshotEnv) OnStreamRequest(stream int64, req *discovery.DiscoveryRequest) error {
	if req.GetResponseNonce() == "" {
		return nil
	}
	if req.GetErrorDetail() != nil {
		e.acks.nack()
		return nil
	}
	e.acks.ack(stream, req.GetTypeUrl(), req.GetVersionInfo(), time.Now())
	return nil
}

// OnStreamResponse counts the marshalled size of each response.
func (e *snapshotEnv) OnStreamResponse(_ context.Context, _ int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	e.sent.Add(int64(proto.Size(resp)))
}

// snapshot builds a snapshot of every resource the translator holds, under
// the next version. One version covers every type, the usual way to feed a
// snapshot cache.
func (e *snapshotEnv) snapshot(tb testing.TB) *cachev3.Snapshot {
	tb.Helper()
	e.version++
	byType := make(map[resourcev3.Type][]types.Resource)
	for typeURL, byName := range e.translator.Resources() {
		for _, r := range byName {
			byType[typeURL] = append(byType[typeURL], e.message(tb, r))
		}
	}
	snap, err := cachev3.NewSnapshot(strconv.FormatUint(e.version, 10), byType)
	if err != nil {
		tb.Fatalf("build snapshot: %v", err)
	}
	return snap
}

// setAll hands snap to every node.
func (e *snapshotEnv) setAll(tb testing.TB, snap *cachev3.Snapshot) {
	tb.Helper()
	for _, node := range e.nodes {
		if err := e.cache.SetSnapshot(context.Background(), node, snap); err != nil {
			tb.Fatalf("set snapshot for %s: %v", node, err)
		}
	}
}

// connect sets the first snapshot and dials n clients to xds:///target.
func (e *snapshotEnv) connect(tb testing.TB, target string, n int) {
	tb.Helper()
	for i := range n {
		e.nodes = append(e.nodes, fmt.Sprintf("gcp-%03d", i))
	}
	e.setAll(tb, e.snapshot(tb))
	dialClients(tb, e.addr, target, "gcp", n)
}

// change sets the weight of one endpoint, rebuilds and sets the snapshot
// for every node, and returns the time from the first SetSnapshot to the
// last client's ACK of the new endpoints, and the time the translation and
// snapshot build took before it. It then waits until every client ACKed
// the other types too, so that one change does not overlap the next.
func (e *snapshotEnv) change(tb testing.TB, s, ep int, weight uint32) (total, build time.Duration) {
	tb.Helper()
	buildStart := time.Now()
	key := endpointKey(s, ep)
	if err := e.builder.Put(key, []byte(e.mesh.endpointDoc(s, ep, weight))); err != nil {
		tb.Fatalf("baseline mesh %s: %v", key, err)
	}
	if _, err := e.translator.Update(e.builder.State()); err != nil {
		tb.Fatalf("translate baseline change: %v", err)
	}
	snap := e.snapshot(tb)
	build = time.Since(buildStart)
	wait := e.acks.expect(edsType, e.version, len(e.nodes))

	start := time.Now()
	e.setAll(tb, snap)
	at, ok := wait.await(waitTimeout)
	if !ok {
		tb.Fatalf("baseline: %d of %d clients ACKed endpoints version %d within %s",
			e.acks.reached(edsType, e.version), len(e.nodes), e.version, waitTimeout)
	}
	e.awaitAllTypes(tb)
	return at.Sub(start), build
}

// awaitAllTypes waits until every client ACKed the current version of
// each type a gRPC client subscribes to.
func (e *snapshotEnv) awaitAllTypes(tb testing.TB) {
	tb.Helper()
	for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, edsType} {
		w := e.acks.expect(typeURL, e.version, len(e.nodes))
		if _, ok := w.await(waitTimeout); !ok {
			tb.Fatalf("baseline: %d of %d clients ACKed %s version %d within %s",
				e.acks.reached(typeURL, e.version), len(e.nodes), typeURL, e.version, waitTimeout)
		}
	}
}

// message returns r decoded, from a cache keyed by the resource, so that
// a snapshot build decodes only the resources that changed, as a control
// plane holding messages would not decode at all.
func (e *snapshotEnv) message(tb testing.TB, r *xds.Resource) types.Resource {
	tb.Helper()
	if m, ok := e.decoded[r]; ok {
		return m
	}
	m, err := r.Decode()
	if err != nil {
		tb.Fatal(err)
	}
	if e.decoded == nil {
		e.decoded = map[*xds.Resource]types.Resource{}
	}
	e.decoded[r] = m
	return m
}
