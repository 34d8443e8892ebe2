package xds

import (
	"context"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

type deltaClient struct {
	t  *testing.T
	st grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	rx chan *discovery.DeltaDiscoveryResponse
}

func openDelta(t *testing.T, c discovery.AggregatedDiscoveryServiceClient) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dc := &deltaClient{t: t, st: st, rx: make(chan *discovery.DeltaDiscoveryResponse, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			dc.rx <- resp
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return dc
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	req.Node = &corev3.Node{Id: "delta-node"}
	if err := c.st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaClient) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.rx:
		return r
	case <-time.After(waitTimeout):
		c.t.Fatalf("no delta response within %s", waitTimeout)
		return nil
	}
}

func (c *deltaClient) ack(resp *discovery.DeltaDiscoveryResponse) {
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce})
}

func deltaNames(resp *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.Resources {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func TestDeltaWildcardAddsAndRemoves(t *testing.T) {
	srv, client := startServer(t)
	cache := srv.Cache()
	cache.Apply(upsert(resourcev3.ClusterType, cluster(t, "a", time.Second), cluster(t, "b", time.Second)))

	c := openDelta(t, client)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	first := c.recv()
	if got := deltaNames(first); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first response = %v, want [a b]", got)
	}
	c.ack(first)

	cache.Apply(Changes{
		Upserts: map[string][]*Resource{resourcev3.ClusterType: {cluster(t, "c", time.Second)}},
		Removes: map[string][]string{resourcev3.ClusterType: {"a"}},
	})
	second := c.recv()
	if got := deltaNames(second); !slices.Equal(got, []string{"c"}) {
		t.Errorf("second response resources = %v, want [c]", got)
	}
	if !slices.Equal(second.RemovedResources, []string{"a"}) {
		t.Errorf("second response removed = %v, want [a]", second.RemovedResources)
	}
}

func TestDeltaInitialVersionsSkipKnownResources(t *testing.T) {
	srv, client := startServer(t)
	a, b := assignment(t, "a", 1), assignment(t, "b", 2)
	srv.Cache().Apply(upsert(resourcev3.EndpointType, a, b))

	// A reconnecting client that already holds a at its current version
	// receives only b.
	c := openDelta(t, client)
	c.send(&discovery.DeltaDiscoveryRequest{
		TypeUrl:                 resourcev3.EndpointType,
		ResourceNamesSubscribe:  []string{"a", "b", "missing"},
		InitialResourceVersions: map[string]string{"a": a.Version},
	})
	resp := c.recv()
	if got := deltaNames(resp); !slices.Equal(got, []string{"b"}) {
		t.Errorf("resources = %v, want [b]", got)
	}
	if !slices.Equal(resp.RemovedResources, []string{"missing"}) {
		t.Errorf("removed = %v, want [missing]: a subscribed name that does not exist", resp.RemovedResources)
	}
}

func TestDeltaUnsubscribeThenResubscribe(t *testing.T) {
	srv, client := startServer(t)
	srv.Cache().Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 1)))

	c := openDelta(t, client)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	c.ack(c.recv())
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: []string{"a"}})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	if got := deltaNames(c.recv()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("after resubscribing: %v, want [a] again", got)
	}
}

func TestDeltaNackKeepsAcceptedVersion(t *testing.T) {
	srv, client := startServer(t)
	cache := srv.Cache()
	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 1)))

	c := openDelta(t, client)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	c.ack(c.recv())

	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 2)))
	bad := c.recv()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: bad.Nonce,
		ErrorDetail: statusOf("bad endpoint")})
	select {
	case r := <-c.rx:
		t.Fatalf("rejected version resent: %v", deltaNames(r))
	case <-time.After(500 * time.Millisecond):
	}
	ts := srv.Status()[0].Types[0]
	if ts.Nacks != 1 || ts.LastError != "bad endpoint" {
		t.Errorf("status nacks=%d last_error=%q, want 1 and the client's message", ts.Nacks, ts.LastError)
	}

	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 3)))
	if got := deltaNames(c.recv()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("fixed version not delivered: %v", got)
	}
}
