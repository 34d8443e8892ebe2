package e2e

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/xds"
)

// nackingClient is a minimal ADS client that can reject a response on
// demand. No real xDS client rejects a valid resource when asked, so this
// one speaks the protocol itself.
type nackingClient struct {
	t  *testing.T
	st grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	rx chan *discovery.DiscoveryResponse
}

func newNackingClient(t *testing.T, addr string) *nackingClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &nackingClient{t: t, st: st, rx: make(chan *discovery.DiscoveryResponse, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			c.rx <- resp
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.Close()
		<-done
	})
	return c
}

func (c *nackingClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	req.Node = &corev3.Node{Id: "nacking-envoy"}
	if err := c.st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *nackingClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.rx:
		return r
	case <-time.After(waitTimeout):
		c.t.Fatalf("no response within %s", waitTimeout)
		return nil
	}
}

// clusterBytes maps each cluster name in resp to its marshalled bytes.
func clusterBytes(t *testing.T, resp *discovery.DiscoveryResponse) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, a := range resp.Resources {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		out[c.Name] = a.Value
	}
	return out
}

func TestNackIsReportedAndNotResent(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := newNackingClient(t, e.agent.XDSAddr())

	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	first := c.recv()
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: first.VersionInfo, ResponseNonce: first.Nonce})

	// A change to ratings produces a cluster this client rejects.
	e.put(mesh.ServiceKey(prefix, "ratings"), "protocol: grpc\nport: 9080\nloadBalancing: least_request\n")
	bad := c.recv()
	c.send(&discovery.DiscoveryRequest{
		TypeUrl: resourcev3.ClusterType, VersionInfo: first.VersionInfo, ResponseNonce: bad.Nonce,
		ErrorDetail: &status.Status{Code: 3, Message: "test proxy rejects least_request"},
	})

	var syncz struct {
		Streams []xds.StreamStatus `json:"streams"`
	}
	var ts xds.TypeStatus
	deadline := time.Now().Add(waitTimeout)
	for ts.Nacks == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling an HTTP endpoint; nothing to await
		e.getJSON("/debug/syncz", &syncz)
		for _, s := range syncz.Streams {
			if s.NodeID == "nacking-envoy" && len(s.Types) > 0 {
				ts = s.Types[0]
			}
		}
	}
	if ts.Nacks != 1 {
		t.Fatalf("syncz nacks = %d, want 1", ts.Nacks)
	}
	if ts.LastError != "test proxy rejects least_request" {
		t.Errorf("syncz last_error = %q", ts.LastError)
	}
	wantKey := mesh.ServiceKey(prefix, "ratings")
	if !slices.Equal(ts.ErrorKeys, []string{wantKey}) {
		t.Errorf("syncz error_keys = %v, want [%s]", ts.ErrorKeys, wantKey)
	}
	if ts.VersionAcked != first.VersionInfo || ts.VersionNacked != bad.VersionInfo {
		t.Errorf("syncz acked=%s nacked=%s, want acked=%s nacked=%s", ts.VersionAcked, ts.VersionNacked, first.VersionInfo, bad.VersionInfo)
	}

	// The rejected version is not sent again. A later change to another
	// service sends the full cluster set with the accepted ratings cluster.
	select {
	case r := <-c.rx:
		t.Fatalf("response %s resent after the NACK", r.VersionInfo)
	case <-time.After(time.Second):
	}
	e.put(mesh.ServiceKey(prefix, "details"), "protocol: grpc\nport: 9080\nconnectTimeout: 2s\n")
	next := c.recv()
	if next.VersionInfo == bad.VersionInfo {
		t.Fatalf("got the rejected version %s again", bad.VersionInfo)
	}
	before, after := clusterBytes(t, first), clusterBytes(t, next)
	if !bytes.Equal(after["ratings"], before["ratings"]) {
		t.Errorf("cluster ratings in the next response differs from the accepted one")
	}
	if bytes.Equal(after["details"], before["details"]) {
		t.Errorf("cluster details did not change")
	}
	if !contains(e.getText("/metrics"), `tether_xds_nacks_total{type_url="`+resourcev3.ClusterType+`"} 1`) {
		t.Errorf("metrics lack tether_xds_nacks_total 1 for clusters")
	}
}
