package xds

import (
	"context"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// waitTimeout bounds every wait for a response in these tests.
const waitTimeout = 5 * time.Second

func startServer(t *testing.T) (*Server, discovery.AggregatedDiscoveryServiceClient) {
	t.Helper()
	srv := NewServer(NewCache(), Options{})
	g := grpc.NewServer()
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-done
	})
	return srv, discovery.NewAggregatedDiscoveryServiceClient(conn)
}

func cluster(t *testing.T, name string, timeout time.Duration) *Resource {
	t.Helper()
	r, err := NewResource(name, &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(timeout),
	}, "/tether/services/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func assignment(t *testing.T, name string, port uint32) *Resource {
	t.Helper()
	r, err := NewResource(name, &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality: &corev3.Locality{},
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
					}}},
				}},
			}},
		}},
	}, "/tether/services/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func upsert(typeURL string, rs ...*Resource) Changes {
	return Changes{Upserts: map[string][]*Resource{typeURL: rs}}
}

type sotwClient struct {
	t  *testing.T
	st grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	rx chan *discovery.DiscoveryResponse
}

func openSotW(t *testing.T, c discovery.AggregatedDiscoveryServiceClient) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := &sotwClient{t: t, st: st, rx: make(chan *discovery.DiscoveryResponse, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			sc.rx <- resp
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return sc
}

func (c *sotwClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	if req.Node == nil {
		req.Node = &corev3.Node{Id: "test-node"}
	}
	if err := c.st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sotwClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.rx:
		return r
	case <-time.After(waitTimeout):
		c.t.Fatalf("no response within %s", waitTimeout)
		return nil
	}
}

// expectQuiet fails if a response arrives within d. It is the one negative
// check these tests need, so it waits a bounded window.
func (c *sotwClient) expectQuiet(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.rx:
		c.t.Fatalf("unexpected response: type %s version %s with %d resources", r.TypeUrl, r.VersionInfo, len(r.Resources))
	case <-time.After(d):
	}
}

func (c *sotwClient) ack(resp *discovery.DiscoveryResponse, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo,
		ResponseNonce: resp.Nonce, ResourceNames: names})
}

func (c *sotwClient) nack(resp *discovery.DiscoveryResponse, lastGood string, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: resp.TypeUrl, VersionInfo: lastGood,
		ResponseNonce: resp.Nonce, ResourceNames: names,
		ErrorDetail: statusOf("rejected by test client")})
}

func statusOf(msg string) *status.Status { return &status.Status{Code: 3, Message: msg} }

func namesOf(t *testing.T, resp *discovery.DiscoveryResponse) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range resp.Resources {
		switch resp.TypeUrl {
		case resourcev3.ClusterType:
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				t.Fatal(err)
			}
			out[c.Name] = c.ConnectTimeout.AsDuration().String()
		case resourcev3.EndpointType:
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				t.Fatal(err)
			}
			port := cla.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().GetPortValue()
			out[cla.ClusterName] = time.Duration(port).String()
		case resourcev3.ListenerType:
			var l listenerv3.Listener
			if err := a.UnmarshalTo(&l); err != nil {
				t.Fatal(err)
			}
			out[l.Name] = ""
		}
	}
	return out
}

func TestServerWaitsForFirstState(t *testing.T) {
	srv, client := startServer(t)
	c := openSotW(t, client)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})

	srv.Cache().Apply(upsert(resourcev3.ClusterType, cluster(t, "a", time.Second)))
	resp := c.recv()
	got := namesOf(t, resp)
	if len(got) != 1 || got["a"] != "1s" {
		t.Fatalf("first response holds %v, want cluster a only", got)
	}
}

func TestServerSendsOnlyChangedEndpoints(t *testing.T) {
	srv, client := startServer(t)
	cache := srv.Cache()
	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 1), assignment(t, "b", 2)))

	c := openSotW(t, client)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a", "b"}})
	first := c.recv()
	if got := namesOf(t, first); len(got) != 2 {
		t.Fatalf("first response holds %v, want a and b", got)
	}
	c.ack(first, "a", "b")

	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 3)))
	second := c.recv()
	got := namesOf(t, second)
	if len(got) != 1 || got["a"] != "3ns" {
		t.Fatalf("second response holds %v, want only a with port 3", got)
	}
}

func TestServerDoesNotResendNackedVersion(t *testing.T) {
	srv, client := startServer(t)
	cache := srv.Cache()
	cache.Apply(upsert(resourcev3.ClusterType, cluster(t, "a", time.Second), cluster(t, "b", time.Second)))

	c := openSotW(t, client)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	first := c.recv()
	c.ack(first)

	// Version 2 of b is rejected by the client.
	cache.Apply(upsert(resourcev3.ClusterType, cluster(t, "b", 2*time.Second)))
	bad := c.recv()
	if got := namesOf(t, bad); got["b"] != "2s" {
		t.Fatalf("response holds %v, want b with 2s", got)
	}
	c.nack(bad, first.VersionInfo)
	c.expectQuiet(500 * time.Millisecond)

	// A change to a sends the full set again: b must be the accepted 1s
	// version, not the rejected one.
	cache.Apply(upsert(resourcev3.ClusterType, cluster(t, "a", 3*time.Second)))
	next := c.recv()
	got := namesOf(t, next)
	if got["a"] != "3s" {
		t.Errorf("cluster a = %q, want the new 3s version", got["a"])
	}
	if got["b"] != "1s" {
		t.Errorf("cluster b = %q, want the last accepted 1s version", got["b"])
	}
	c.ack(next)

	status := srv.Status()
	if len(status) != 1 || len(status[0].Types) != 1 {
		t.Fatalf("status = %+v, want one stream with one type", status)
	}
	ts := status[0].Types[0]
	if ts.Nacks != 1 {
		t.Errorf("nacks = %d, want 1", ts.Nacks)
	}
	if ts.LastError != "rejected by test client" {
		t.Errorf("last error = %q", ts.LastError)
	}
	if len(ts.ErrorKeys) != 1 || ts.ErrorKeys[0] != "/tether/services/b" {
		t.Errorf("error keys = %v, want [/tether/services/b]", ts.ErrorKeys)
	}
	if ts.Responses != 3 {
		t.Errorf("responses = %d, want 3: one per version, none resent", ts.Responses)
	}

	// A fixed version of b is delivered.
	cache.Apply(upsert(resourcev3.ClusterType, cluster(t, "b", 4*time.Second)))
	if got := namesOf(t, c.recv()); got["b"] != "4s" {
		t.Fatalf("cluster b = %q, want the fixed 4s version", got["b"])
	}
}

func TestServerNackedEndpointsStayQuiet(t *testing.T) {
	srv, client := startServer(t)
	cache := srv.Cache()
	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "a", 1), assignment(t, "b", 2)))

	c := openSotW(t, client)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a", "b"}})
	// This client rejects every response.
	c.nack(c.recv(), "", "a", "b")
	cache.Apply(upsert(resourcev3.EndpointType, assignment(t, "b", 5)))
	resp := c.recv()
	if got := namesOf(t, resp); len(got) != 1 || got["b"] != "5ns" {
		t.Fatalf("response holds %v, want only the new b", got)
	}
	c.nack(resp, "", "a", "b")
	c.expectQuiet(500 * time.Millisecond)
}

func TestServerWildcardSkipsNamedOnly(t *testing.T) {
	srv, client := startServer(t)
	api, err := NewResource("reviews", &listenerv3.Listener{Name: "reviews"})
	if err != nil {
		t.Fatal(err)
	}
	api.NamedOnly = true
	outbound, err := NewResource("outbound_9080", &listenerv3.Listener{Name: "outbound_9080"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Cache().Apply(upsert(resourcev3.ListenerType, api, outbound))

	envoy := openSotW(t, client)
	envoy.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	if got := namesOf(t, envoy.recv()); len(got) != 1 || got["outbound_9080"] != "" {
		t.Errorf("wildcard listeners = %v, want only outbound_9080", got)
	}
	grpcClient := openSotW(t, client)
	grpcClient.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResourceNames: []string{"reviews"}})
	if got := namesOf(t, grpcClient.recv()); len(got) != 1 {
		t.Errorf("named listeners = %v, want only reviews", got)
	}
}

func TestServerAnswersFirstRequestWithForeignNonce(t *testing.T) {
	srv, client := startServer(t)
	srv.Cache().Apply(upsert(resourcev3.ClusterType, cluster(t, "a", time.Second)))

	// A client that reconnects from another server carries that server's
	// nonce and version in its first request.
	c := openSotW(t, client)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "other-7", ResponseNonce: "other-42"})
	if got := namesOf(t, c.recv()); len(got) != 1 || got["a"] != "1s" {
		t.Fatalf("first response holds %v, want cluster a", got)
	}
}
