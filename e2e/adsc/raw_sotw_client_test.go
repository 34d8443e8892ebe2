package adsc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// rawSotW is a minimal state-of-the-world ADS client written for these
// tests. It subscribes as Envoy does: clusters and listeners by wildcard,
// then the endpoints of every EDS cluster and the route configurations of
// every listener by name. It ACKs every response and keeps the resources as
// they arrived on the wire.
type rawSotW struct {
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	// nonces and names are the last nonce received and the names
	// requested, per type URL; used only by the receiving goroutine.
	nonces map[string]string
	names  map[string][]string

	mu sync.Mutex
	// resources are the resources received; guarded by mu.
	resources resourceSet
	// err is the error that ended the stream early, if any; guarded by mu.
	err error
	// updates has capacity one. The receiving goroutine sends without
	// blocking after every response, waiters receive. It is never closed.
	updates chan struct{}
}

// startRawSotW connects the client to addr until the test ends.
func startRawSotW(t *testing.T, addr string) *rawSotW {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		t.Fatalf("open state-of-the-world stream to %s: %v", addr, err)
	}
	c := &rawSotW{
		stream:    stream,
		nonces:    make(map[string]string),
		names:     make(map[string][]string),
		resources: newResourceSet(),
		updates:   make(chan struct{}, 1),
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.setErr(c.run())
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("state-of-the-world client did not stop within %s", waitTimeout)
		}
	})
	return c
}

// run sends the wildcard requests, then reads responses until the stream
// ends. It returns nil when the stream ends because the test canceled it.
func (c *rawSotW) run() error {
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := c.send(t, "", "", nil); err != nil {
			return err
		}
	}
	for {
		resp, err := c.stream.Recv()
		if status.Code(err) == codes.Canceled || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if err := c.handle(resp); err != nil {
			return err
		}
	}
}

// handle stores one response, ACKs it, and subscribes to the endpoints or
// route configurations that its clusters or listeners refer to.
func (c *rawSotW) handle(resp *discovery.DiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	byName := make(map[string][]byte, len(resp.GetResources()))
	var refs []string
	for _, a := range resp.GetResources() {
		name, deps, err := refsOf(a)
		if err != nil {
			return err
		}
		byName[name] = a.GetValue()
		refs = append(refs, deps...)
	}
	c.store(typeURL, byName)

	c.nonces[typeURL] = resp.GetNonce()
	if err := c.send(typeURL, resp.GetVersionInfo(), resp.GetNonce(), c.names[typeURL]); err != nil {
		return err
	}

	var depType string
	switch typeURL {
	case resourcev3.ClusterType:
		depType = resourcev3.EndpointType
	case resourcev3.ListenerType:
		depType = resourcev3.RouteType
	default:
		return nil
	}
	refs = slices.Compact(slices.Sorted(slices.Values(refs)))
	if slices.Equal(refs, c.names[depType]) {
		return nil
	}
	c.names[depType] = refs
	return c.send(depType, "", c.nonces[depType], refs)
}

// store records the resources of one response. A listener or cluster
// response lists every resource of its type. For endpoints and route
// configurations the agent sends only the resources that changed, as the
// xDS protocol allows, so those are merged.
func (c *rawSotW) store(typeURL string, byName map[string][]byte) {
	c.mu.Lock()
	if typeURL == resourcev3.ClusterType || typeURL == resourcev3.ListenerType {
		c.resources[typeURL] = byName
	} else {
		maps.Copy(c.resources[typeURL], byName)
	}
	c.mu.Unlock()

	select {
	case c.updates <- struct{}{}:
	default:
	}
}

func (c *rawSotW) send(typeURL, version, nonce string, names []string) error {
	err := c.stream.Send(&discovery.DiscoveryRequest{
		Node:          &corev3.Node{Id: "sotw-raw"},
		TypeUrl:       typeURL,
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: names,
	})
	if err != nil {
		return fmt.Errorf("send %s request: %w", typeURL, err)
	}
	return nil
}

func (c *rawSotW) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	select {
	case c.updates <- struct{}{}:
	default:
	}
}

// snapshot returns a copy of the resources received and the error that
// ended the stream, if any.
func (c *rawSotW) snapshot() (resourceSet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resources.clone(), c.err
}

// refsOf returns a resource's name and the names of the endpoints or route
// configurations it refers to.
func refsOf(a *anypb.Any) (string, []string, error) {
	name, err := resourceName(a)
	if err != nil {
		return "", nil, err
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return "", nil, fmt.Errorf("decode %s %q: %w", a.GetTypeUrl(), name, err)
	}
	switch r := m.(type) {
	case *clusterv3.Cluster:
		if eds := edsName(r); eds != "" {
			return name, []string{eds}, nil
		}
	case *listenerv3.Listener:
		routes, err := routeNames(r)
		return name, routes, err
	}
	return name, nil, nil
}
