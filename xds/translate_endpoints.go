package xds

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tether-mesh/tether/mesh"
)

// translateEndpoints rebuilds the ClusterLoadAssignment of every cluster of
// the service from eps, which may be nil.
//
// Only healthy endpoints are sent. Draining and unhealthy ones are left out
// rather than sent with status DRAINING or UNHEALTHY. gRPC clients drop
// every endpoint that is not HEALTHY or UNKNOWN anyway (grpc-go v1.85
// cdsbalancer). Envoy in panic mode, which starts when fewer than 50% of
// hosts are available by default, sends traffic to every listed host,
// unhealthy ones included. Envoy lets in-flight requests to a removed host
// finish.
func (t *Translator) translateEndpoints(b *changeBatch, out *serviceOutput, eps *mesh.EndpointSet) {
	svc := out.svc
	healthy := healthyEndpoints(b, out, eps)
	t.put(b, resourcev3.EndpointType, out.name, buildLoadAssignment(out.name, healthy, nil), svc.Key)
	for _, ss := range svc.Subsets {
		cn := clusterName(out.name, ss.Name)
		t.put(b, resourcev3.EndpointType, cn, buildLoadAssignment(cn, healthy, ss.Labels), svc.Key)
	}
}

// healthyEndpoints returns the service's healthy endpoints ordered by
// instance name. Of two endpoints with the same address and port, the first
// is kept and the second is reported, because gRPC clients reject an
// assignment that lists an address twice.
func healthyEndpoints(b *changeBatch, svcOut *serviceOutput, eps *mesh.EndpointSet) []*mesh.Endpoint {
	instances := eps.SortedInstances()
	out := make([]*mesh.Endpoint, 0, len(instances))
	seen := make(map[string]*mesh.Endpoint, len(instances))
	for _, inst := range instances {
		ep := eps.Instances[inst]
		if ep.Health != "" && ep.Health != mesh.HealthHealthy {
			continue
		}
		addr := net.JoinHostPort(ep.Address, strconv.FormatUint(uint64(ep.Port), 10))
		if first := seen[addr]; first != nil {
			b.errs = append(b.errs, &TranslationError{
				TypeURL: resourcev3.EndpointType,
				Name:    svcOut.name,
				Keys:    []string{svcOut.svc.Key, first.Key, ep.Key},
				Err:     fmt.Errorf("%w %s: instance %q left out", ErrDuplicateAddress, addr, inst),
			})
			continue
		}
		seen[addr] = ep
		out = append(out, ep)
	}
	return out
}

// localityKey groups endpoints into LocalityLbEndpoints.
type localityKey struct{ region, zone, subZone string }

func compareLocality(x, y localityKey) int {
	return cmp.Or(cmp.Compare(x.region, y.region), cmp.Compare(x.zone, y.zone), cmp.Compare(x.subZone, y.subZone))
}

// buildLoadAssignment returns the assignment of cluster name: the endpoints
// whose labels contain every label in selector, grouped by locality in
// sorted order. A nil selector takes every endpoint. An assignment with no
// endpoints is still returned, so that clients see an empty cluster instead
// of waiting for one.
func buildLoadAssignment(name string, endpoints []*mesh.Endpoint, selector map[string]string) *endpointv3.ClusterLoadAssignment {
	byLocality := map[localityKey]*endpointv3.LocalityLbEndpoints{}
	weights := map[localityKey]uint32{}
	for _, ep := range endpoints {
		if !matchesLabels(ep.Labels, selector) {
			continue
		}
		key := localityKey{ep.Locality.Region, ep.Locality.Zone, ep.Locality.SubZone}
		group := byLocality[key]
		if group == nil {
			group = &endpointv3.LocalityLbEndpoints{
				// The locality field is set even when every part is
				// empty, because gRPC clients reject a locality without it.
				Locality: &corev3.Locality{Region: key.region, Zone: key.zone, SubZone: key.subZone},
			}
			byLocality[key] = group
		}
		w := endpointWeight(ep)
		group.LbEndpoints = append(group.LbEndpoints, lbEndpoint(ep, w))
		weights[key] += w
	}

	keys := make([]localityKey, 0, len(byLocality))
	for key := range byLocality {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, compareLocality)

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, key := range keys {
		group := byLocality[key]
		// gRPC clients silently ignore a locality of weight 0. The sum of
		// endpoint weights is at least 1 because every group has an
		// endpoint, and it keeps the per-endpoint share equal to a flat
		// weighted choice over all endpoints.
		group.LoadBalancingWeight = wrapperspb.UInt32(weights[key])
		cla.Endpoints = append(cla.Endpoints, group)
	}
	return cla
}

// matchesLabels reports whether labels contain every label of selector.
func matchesLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// endpointWeight returns the endpoint's weight, taking 0 (an endpoint built
// outside the parser) as the default 1.
func endpointWeight(ep *mesh.Endpoint) uint32 {
	return max(ep.Weight, 1)
}

func lbEndpoint(ep *mesh.Endpoint, weight uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddress(ep.Address, ep.Port)},
		},
		HealthStatus:        corev3.HealthStatus_HEALTHY,
		LoadBalancingWeight: wrapperspb.UInt32(weight),
	}
}

func socketAddress(address string, port uint32) *corev3.Address {
	return &corev3.Address{
		Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{
				Protocol:      corev3.SocketAddress_TCP,
				Address:       address,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			},
		},
	}
}
