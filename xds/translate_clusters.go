package xds

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tether-mesh/tether/mesh"
)

// DefaultConnectTimeout is a cluster's connect timeout when the service
// document sets none.
const DefaultConnectTimeout = 5 * time.Second

// httpProtocolOptionsKey is the typed_extension_protocol_options key Envoy
// reads upstream HTTP settings from.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// clusterName returns the name of the cluster of a service's subset, or of
// the whole service when subset is empty. Service and subset names cannot
// contain '/', so the names never collide.
func clusterName(service, subset string) string {
	if subset == "" {
		return service
	}
	return service + "/" + subset
}

// translateClusters builds the service's cluster and one cluster per
// subset, and records them and their assignments as owned by the service.
func (t *Translator) translateClusters(b *changeBatch, name string, out *serviceOutput) {
	svc := out.svc
	names := []string{clusterName(name, "")}
	for _, ss := range svc.Subsets {
		names = append(names, clusterName(name, ss.Name))
	}
	for _, cn := range names {
		out.owned = append(out.owned,
			resourceRef{resourcev3.ClusterType, cn},
			resourceRef{resourcev3.EndpointType, cn})
		c, err := buildCluster(cn, svc)
		if err != nil {
			b.errs = append(b.errs, &TranslationError{
				TypeURL: resourcev3.ClusterType, Name: cn, Keys: []string{svc.Key},
				Err: fmt.Errorf("%w: %w", ErrInvalidResource, err),
			})
			continue
		}
		t.put(b, resourcev3.ClusterType, cn, c, svc.Key)
	}
}

// buildCluster returns an EDS cluster whose endpoints come over ADS under
// the cluster's own name.
func buildCluster(name string, svc *mesh.Service) (*clusterv3.Cluster, error) {
	timeout := svc.ConnectTimeout.Duration
	if timeout == 0 {
		timeout = DefaultConnectTimeout
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsConfigSource(),
			ServiceName: name,
		},
		ConnectTimeout:   durationpb.New(timeout),
		CircuitBreakers:  circuitBreakers(svc.CircuitBreaking),
		OutlierDetection: outlierDetection(svc.OutlierDetection),
	}
	if err := setLoadBalancing(c, svc.LoadBalancing); err != nil {
		return nil, err
	}
	if svc.Protocol == mesh.ProtocolHTTP2 || svc.Protocol == mesh.ProtocolGRPC {
		opts, err := http2ProtocolOptions()
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: opts}
	}
	return c, nil
}

// adsConfigSource returns a config source that points the client at its
// ADS stream. gRPC clients accept only ads or self here.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// setLoadBalancing sets the cluster's policy from the document's
// loadBalancing value.
func setLoadBalancing(c *clusterv3.Cluster, policy string) error {
	switch policy {
	case "", "round_robin":
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case "least_request":
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case "ring_hash":
		// Without a hash policy on the route, Envoy and gRPC hash a random
		// value per request, which spreads load like random.
		c.LbPolicy = clusterv3.Cluster_RING_HASH
	case "random":
		// grpc-go v1.85 rejects a cluster whose lb_policy is RANDOM, so
		// random goes in load_balancing_policy with a round-robin fallback.
		// Each client uses the first policy it supports: Envoy takes
		// random, gRPC clients take weighted-locality round robin (the same
		// policy they use for lb_policy ROUND_ROBIN). lb_policy stays at its
		// default, as Envoy's documentation of load_balancing_policy
		// requires.
		lbp, err := randomPolicy()
		if err != nil {
			return err
		}
		c.LoadBalancingPolicy = lbp
	default:
		return fmt.Errorf("unknown load balancing policy %q", policy)
	}
	return nil
}

func randomPolicy() (*clusterv3.LoadBalancingPolicy, error) {
	random, err := marshalAny(&randomv3.Random{})
	if err != nil {
		return nil, err
	}
	roundRobin, err := marshalAny(&roundrobinv3.RoundRobin{})
	if err != nil {
		return nil, err
	}
	wrrLocality, err := marshalAny(&wrrlocalityv3.WrrLocality{
		EndpointPickingPolicy: &clusterv3.LoadBalancingPolicy{
			Policies: []*clusterv3.LoadBalancingPolicy_Policy{
				lbPolicy("envoy.load_balancing_policies.round_robin", roundRobin),
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return &clusterv3.LoadBalancingPolicy{
		Policies: []*clusterv3.LoadBalancingPolicy_Policy{
			lbPolicy("envoy.load_balancing_policies.random", random),
			lbPolicy("envoy.load_balancing_policies.wrr_locality", wrrLocality),
		},
	}, nil
}

func lbPolicy(name string, config *anypb.Any) *clusterv3.LoadBalancingPolicy_Policy {
	return &clusterv3.LoadBalancingPolicy_Policy{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: name, TypedConfig: config},
	}
}

// circuitBreakers returns default-priority thresholds for the fields the
// document sets, or nil when it sets none.
func circuitBreakers(cb *mesh.CircuitBreaking) *clusterv3.CircuitBreakers {
	if cb == nil || *cb == (mesh.CircuitBreaking{}) {
		return nil
	}
	return &clusterv3.CircuitBreakers{
		Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     optionalUint32(cb.MaxConnections),
			MaxPendingRequests: optionalUint32(cb.MaxPendingRequests),
			MaxRequests:        optionalUint32(cb.MaxRequests),
			MaxRetries:         optionalUint32(cb.MaxRetries),
		}},
	}
}

// outlierDetection returns the document's outlier detection, leaving
// Envoy's default for every zero field. Envoy and gRPC clients also apply
// success-rate ejection with its defaults, because enforcing_success_rate
// defaults to 100 in both.
func outlierDetection(od *mesh.OutlierDetection) *clusterv3.OutlierDetection {
	if od == nil {
		return nil
	}
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:    optionalUint32(od.Consecutive5xx),
		Interval:           optionalDuration(od.Interval.Duration),
		BaseEjectionTime:   optionalDuration(od.BaseEjectionTime.Duration),
		MaxEjectionPercent: optionalUint32(od.MaxEjectionPercent),
	}
}

// http2ProtocolOptions makes Envoy speak HTTP/2 to the upstream.
func http2ProtocolOptions() (*anypb.Any, error) {
	return marshalAny(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
}

// marshalAny packs msg with deterministic marshalling, so that the bytes
// of the enclosing resource, and so its version, depend only on content.
func marshalAny(msg proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, msg, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("marshal %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

func optionalUint32(v uint32) *wrapperspb.UInt32Value {
	if v == 0 {
		return nil
	}
	return wrapperspb.UInt32(v)
}

func optionalDuration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
