package adsc

import (
	"context"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/adsc"
)

// deltaView runs Istio's delta ADS client against the agent and keeps what
// the client's handlers receive. adsc hands handlers decoded messages, so
// the view stores them encoded again with deterministic marshalling: the
// result equals the agent's bytes only if the content is identical.
type deltaView struct {
	mu sync.Mutex
	// resources are the resources the client holds; guarded by mu.
	resources resourceSet
	// removed lists, per type URL, the names the server sent in
	// removed_resources, in arrival order; guarded by mu.
	removed map[string][]string
	// errs are failures inside handlers; guarded by mu.
	errs []error
	// named are the listeners subscribed to by name.
	named []string
	// updates has capacity one. Handlers send without blocking after every
	// change, waiters receive. It is never closed.
	updates chan struct{}
}

// startDelta connects a delta client to addr. It subscribes to clusters and
// listeners by wildcard, to namedListeners by name, and, as Envoy does, to
// the endpoints of every EDS cluster and the route configurations of every
// listener it receives. The client stops when the test ends.
func startDelta(t *testing.T, addr string, namedListeners []string) *deltaView {
	t.Helper()
	v := &deltaView{
		resources: newResourceSet(),
		removed:   make(map[string][]string),
		named:     namedListeners,
		updates:   make(chan struct{}, 1),
	}
	cfg := &adsc.DeltaADSConfig{Config: adsc.Config{
		ClientName: "delta",
		IP:         "127.0.0.1",
		Workload:   "delta-1",
	}}
	client := adsc.NewDelta(addr, cfg, v.options(namedListeners)...)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		client.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("delta client did not stop within %s", waitTimeout)
		}
	})

	select {
	case <-client.Synced():
	case <-time.After(waitTimeout):
		t.Fatalf("delta client did not receive its initial watches within %s", waitTimeout)
	}
	return v
}

// options returns the client's watches and handlers. The wildcard watches
// come first: only the first request of a type may turn on the legacy
// wildcard.
func (v *deltaView) options(namedListeners []string) []adsc.Option {
	opts := []adsc.Option{
		adsc.Watch[*clusterv3.Cluster]("*"),
		adsc.Watch[*listenerv3.Listener]("*"),
	}
	for _, name := range namedListeners {
		opts = append(opts, adsc.Watch[*listenerv3.Listener](name))
	}
	return append(opts,
		adsc.Register(v.onCluster),
		adsc.Register(v.onEndpoints),
		adsc.Register(v.onListener),
		adsc.Register(v.onRoute),
	)
}

func (v *deltaView) onCluster(ctx adsc.HandlerContext, name, _ string, c *clusterv3.Cluster, ev adsc.Event) {
	v.record(resourcev3.ClusterType, name, c, ev)
	if ev != adsc.EventAdd {
		return
	}
	if eds := edsName(c); eds != "" {
		ctx.RegisterDependency(resourcev3.EndpointType, eds)
	}
}

func (v *deltaView) onEndpoints(_ adsc.HandlerContext, name, _ string, cla *endpointv3.ClusterLoadAssignment, ev adsc.Event) {
	v.record(resourcev3.EndpointType, name, cla, ev)
}

func (v *deltaView) onListener(ctx adsc.HandlerContext, name, _ string, l *listenerv3.Listener, ev adsc.Event) {
	v.record(resourcev3.ListenerType, name, l, ev)
	if ev != adsc.EventAdd {
		return
	}
	routes, err := routeNames(l)
	if err != nil {
		v.fail(err)
		ctx.Reject(err)
		return
	}
	ctx.RegisterDependency(resourcev3.RouteType, routes...)
}

func (v *deltaView) onRoute(_ adsc.HandlerContext, name, _ string, rc *routev3.RouteConfiguration, ev adsc.Event) {
	v.record(resourcev3.RouteType, name, rc, ev)
}

// record stores an added resource, deterministically marshalled, or
// deletes a removed one, and wakes the waiters.
func (v *deltaView) record(typeURL, name string, m proto.Message, ev adsc.Event) {
	v.mu.Lock()
	if ev == adsc.EventDelete {
		delete(v.resources[typeURL], name)
		v.removed[typeURL] = append(v.removed[typeURL], name)
	} else if b, err := marshal(m); err != nil {
		v.errs = append(v.errs, err)
	} else {
		v.resources[typeURL][name] = b
	}
	v.mu.Unlock()

	select {
	case v.updates <- struct{}{}:
	default:
	}
}

func (v *deltaView) fail(err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err)
	v.mu.Unlock()
}

// snapshot returns a copy of the resources held, the removals seen, and
// any handler failure.
func (v *deltaView) snapshot() (resourceSet, map[string][]string, []error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	removed := make(map[string][]string, len(v.removed))
	for t, names := range v.removed {
		removed[t] = append([]string(nil), names...)
	}
	return v.resources.clone(), removed, append([]error(nil), v.errs...)
}
