package adsc

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/mesh"
)

// endpointDocument returns the demo endpoint document of a backend with
// its load-balancing weight set.
func endpointDocument(b *demo.Backend, weight uint32) (string, error) {
	doc, err := demo.EndpointDocument(b.Instance, b.Addr)
	if err != nil {
		return "", err
	}
	var ep mesh.Endpoint
	if err := json.Unmarshal(doc, &ep); err != nil {
		return "", fmt.Errorf("decode demo endpoint document: %w", err)
	}
	ep.Weight = weight
	out, err := json.Marshal(ep)
	if err != nil {
		return "", fmt.Errorf("encode endpoint document: %w", err)
	}
	return string(out), nil
}

// reweighted returns the demo reviews service document with its split
// changed from 50/30/20 to 10/70/20.
func reweighted(t *testing.T) string {
	t.Helper()
	doc := demo.Services()["reviews"]
	old := "weight: 50\n      - subset: v2\n        weight: 30\n"
	if strings.Count(doc, old) != 1 {
		t.Fatalf("demo reviews document no longer contains the 50/30 split:\n%s", doc)
	}
	return strings.Replace(doc, old, "weight: 10\n      - subset: v2\n        weight: 70\n", 1)
}

// loadAssignment decodes the named ClusterLoadAssignment, or returns nil
// when the set lacks it.
func loadAssignment(t *testing.T, got resourceSet, name string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	b, ok := got[resourcev3.EndpointType][name]
	if !ok {
		return nil
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(b, cla); err != nil {
		t.Fatalf("decode endpoints %q: %v", name, err)
	}
	return cla
}

// endpointWeight returns the load-balancing weight of the single endpoint
// of an assignment, or 0 when it does not hold exactly one.
func endpointWeight(t *testing.T, got resourceSet, name string) uint32 {
	t.Helper()
	var lbs []*endpointv3.LbEndpoint
	for _, loc := range loadAssignment(t, got, name).GetEndpoints() {
		lbs = append(lbs, loc.GetLbEndpoints()...)
	}
	if len(lbs) != 1 {
		return 0
	}
	return lbs[0].GetLoadBalancingWeight().GetValue()
}

// endpointCount returns the number of endpoints of an assignment, or -1
// when the set lacks it.
func endpointCount(t *testing.T, got resourceSet, name string) int {
	t.Helper()
	cla := loadAssignment(t, got, name)
	if cla == nil {
		return -1
	}
	n := 0
	for _, loc := range cla.GetEndpoints() {
		n += len(loc.GetLbEndpoints())
	}
	return n
}

// routeWeights returns the cluster weights of the first weighted route of
// a virtual host in a route configuration, or nil when there is none.
func routeWeights(t *testing.T, got resourceSet, routeConfig, virtualHost string) []uint32 {
	t.Helper()
	b, ok := got[resourcev3.RouteType][routeConfig]
	if !ok {
		return nil
	}
	rc := &routev3.RouteConfiguration{}
	if err := proto.Unmarshal(b, rc); err != nil {
		t.Fatalf("decode route configuration %q: %v", routeConfig, err)
	}
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != virtualHost {
			continue
		}
		for _, r := range vh.GetRoutes() {
			wc := r.GetRoute().GetWeightedClusters()
			if wc == nil {
				continue
			}
			var weights []uint32
			for _, c := range wc.GetClusters() {
				weights = append(weights, c.GetWeight().GetValue())
			}
			return weights
		}
	}
	return nil
}
