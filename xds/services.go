package xds

import (
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

type (
	sotwStream  = grpc.BidiStreamingServer[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	deltaStream = grpc.BidiStreamingServer[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
)

// The adapters below bind each gRPC service to the shared stream loops.
// Fetch (REST-style unary) methods stay unimplemented.

type adsService struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

func (a adsService) StreamAggregatedResources(st sotwStream) error {
	return a.s.runSotW(st, "ads-sotw", "")
}

func (a adsService) DeltaAggregatedResources(st deltaStream) error {
	return a.s.runDelta(st, "ads-delta", "")
}

type cdsService struct {
	clusterservice.UnimplementedClusterDiscoveryServiceServer
	s *Server
}

func (c cdsService) StreamClusters(st sotwStream) error {
	return c.s.runSotW(st, "cds-sotw", resourcev3.ClusterType)
}

func (c cdsService) DeltaClusters(st deltaStream) error {
	return c.s.runDelta(st, "cds-delta", resourcev3.ClusterType)
}

type edsService struct {
	endpointservice.UnimplementedEndpointDiscoveryServiceServer
	s *Server
}

func (e edsService) StreamEndpoints(st sotwStream) error {
	return e.s.runSotW(st, "eds-sotw", resourcev3.EndpointType)
}

func (e edsService) DeltaEndpoints(st deltaStream) error {
	return e.s.runDelta(st, "eds-delta", resourcev3.EndpointType)
}

type ldsService struct {
	listenerservice.UnimplementedListenerDiscoveryServiceServer
	s *Server
}

func (l ldsService) StreamListeners(st sotwStream) error {
	return l.s.runSotW(st, "lds-sotw", resourcev3.ListenerType)
}

func (l ldsService) DeltaListeners(st deltaStream) error {
	return l.s.runDelta(st, "lds-delta", resourcev3.ListenerType)
}

type rdsService struct {
	routeservice.UnimplementedRouteDiscoveryServiceServer
	s *Server
}

func (r rdsService) StreamRoutes(st sotwStream) error {
	return r.s.runSotW(st, "rds-sotw", resourcev3.RouteType)
}

func (r rdsService) DeltaRoutes(st deltaStream) error {
	return r.s.runDelta(st, "rds-delta", resourcev3.RouteType)
}

type sdsService struct {
	secretservice.UnimplementedSecretDiscoveryServiceServer
	s *Server
}

func (d sdsService) StreamSecrets(st sotwStream) error {
	return d.s.runSotW(st, "sds-sotw", resourcev3.SecretType)
}

func (d sdsService) DeltaSecrets(st deltaStream) error {
	return d.s.runDelta(st, "sds-delta", resourcev3.SecretType)
}
