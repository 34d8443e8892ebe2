package adsc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"istio.io/istio/pkg/adsc"
)

// sotwView runs Istio's state-of-the-world ADS client (adsc.ADSC) against
// the agent and keeps the raw bytes of the resources it receives.
//
// ADSC subscribes to clusters by wildcard, then to the endpoints of every
// EDS cluster, then to listeners by wildcard, then to the route
// configuration named after the port of every HTTP listener.
type sotwView struct {
	mu sync.Mutex
	// resources are the resources received, as sent on the wire; guarded
	// by mu.
	resources resourceSet
	// errs are responses that could not be read; guarded by mu.
	errs []error
	// updates has capacity one. HandleResponse sends without blocking,
	// waiters receive. It is never closed.
	updates chan struct{}
}

// startSotW connects a state-of-the-world client to addr until the test
// ends.
func startSotW(t *testing.T, addr string) *sotwView {
	t.Helper()
	v := &sotwView{resources: newResourceSet(), updates: make(chan struct{}, 1)}
	ended := &endSignal{ended: make(chan struct{})}
	client, err := adsc.New(addr, &adsc.ADSConfig{
		Config: adsc.Config{
			ClientName:    "sotw",
			IP:            "127.0.0.1",
			Workload:      "sotw-1",
			BackoffPolicy: ended,
		},
		InitialDiscoveryRequests: []*discovery.DiscoveryRequest{{TypeUrl: resourcev3.ClusterType}},
		ResponseHandler:          v,
	})
	if err != nil {
		t.Fatalf("new state-of-the-world client for %s: %v", addr, err)
	}
	if err := client.Run(); err != nil {
		t.Fatalf("start state-of-the-world client: %v", err)
	}
	t.Cleanup(func() {
		client.Close()
		select {
		case <-ended.ended:
		case <-time.After(waitTimeout):
			t.Errorf("state-of-the-world client did not stop within %s", waitTimeout)
		}
	})
	return v
}

// HandleResponse stores the resources of one response. A listener or
// cluster response lists every resource of its type. For endpoints and
// route configurations the agent sends only the resources that changed,
// as the xDS protocol allows, so those are merged.
func (v *sotwView) HandleResponse(_ *adsc.ADSC, resp *discovery.DiscoveryResponse) {
	byName := make(map[string][]byte, len(resp.GetResources()))
	var errs []error
	for _, a := range resp.GetResources() {
		name, err := resourceName(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		byName[name] = a.GetValue()
	}

	v.mu.Lock()
	v.errs = append(v.errs, errs...)
	switch t := resp.GetTypeUrl(); t {
	case resourcev3.ClusterType, resourcev3.ListenerType:
		v.resources[t] = byName
	case resourcev3.EndpointType, resourcev3.RouteType:
		for name, b := range byName {
			v.resources[t][name] = b
		}
	default:
		v.errs = append(v.errs, fmt.Errorf("unexpected response type %s", t))
	}
	v.mu.Unlock()

	select {
	case v.updates <- struct{}{}:
	default:
	}
}

// snapshot returns a copy of the resources received and any failure to
// read a response.
func (v *sotwView) snapshot() (resourceSet, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.resources.clone(), errors.Join(v.errs...)
}

// endSignal is ADSC's reconnect policy. ADSC calls NextBackOff as the
// goroutine that reads the stream returns, so the first call marks that
// goroutine's end. ADSC's reconnect, scheduled after the delay, finds the
// client closed and does nothing.
type endSignal struct {
	once  sync.Once
	ended chan struct{}
}

// NextBackOff closes ended and returns a short delay.
func (e *endSignal) NextBackOff() time.Duration {
	e.once.Do(func() { close(e.ended) })
	return 10 * time.Millisecond
}

// Reset does nothing: the delay is fixed.
func (e *endSignal) Reset() {}

// RetryWithContext runs operation once; ADSC does not call it.
func (e *endSignal) RetryWithContext(_ context.Context, operation func() error) error {
	return operation()
}
