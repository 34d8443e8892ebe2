package xds

import (
	"fmt"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tether-mesh/tether/mesh"
)

// Retry conditions used when a route's retries list none.
const (
	defaultHTTPRetryOn = "5xx,connect-failure"
	defaultGRPCRetryOn = "unavailable"
)

// portRouteName returns the name of the route configuration shared by the
// HTTP services on a port, which Envoy's outbound listener for that port
// refers to.
func portRouteName(port uint32) string {
	return strconv.FormatUint(uint64(port), 10)
}

// translateServiceRoutes builds the service's virtual host and, for gRPC
// clients that dial xds:///<service>, the route configuration and API
// listener named after the service. A tcp service has none of these.
func (t *Translator) translateServiceRoutes(b *changeBatch, name string, out *serviceOutput) {
	svc := out.svc
	if !svc.Protocol.IsHTTP() {
		return
	}
	vh, err := buildVirtualHost(name, svc)
	if err != nil {
		b.errs = append(b.errs, &TranslationError{
			TypeURL: resourcev3.RouteType, Name: name, Keys: []string{svc.Key},
			Err: fmt.Errorf("%w: %w", ErrInvalidResource, err),
		})
		return
	}
	out.virtualHost = vh

	// A service named like a port number would share its route
	// configuration name with that port's.
	if isPortNumber(name) {
		b.errs = append(b.errs, &TranslationError{
			TypeURL: resourcev3.RouteType, Name: name, Keys: []string{svc.Key},
			Err: fmt.Errorf("%w: %q is also the name of the route configuration of port %s; "+
				"rename the service so that it is not only digits, gRPC clients get no route for it until then",
				ErrNameConflict, name, name),
		})
		return
	}
	out.owned = append(out.owned,
		resourceRef{resourcev3.RouteType, name},
		resourceRef{resourcev3.ListenerType, name})
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
	if !t.put(b, resourcev3.RouteType, name, rc, svc.Key) {
		return
	}

	lis, err := buildAPIListener(name)
	if err != nil {
		b.errs = append(b.errs, &TranslationError{
			TypeURL: resourcev3.ListenerType, Name: name, Keys: []string{svc.Key},
			Err: fmt.Errorf("%w: %w", ErrInvalidResource, err),
		})
		return
	}
	t.putNamedOnly(b, resourcev3.ListenerType, name, lis, svc.Key)
}

func isPortNumber(name string) bool {
	return strings.Trim(name, "0123456789") == ""
}

// buildVirtualHost returns the virtual host of an HTTP-family service. Its
// domains are "<service>", the authority of xds:///<service>, and
// "<service>:<port>", the Host header Envoy sidecars see.
func buildVirtualHost(name string, svc *mesh.Service) (*routev3.VirtualHost, error) {
	vh := &routev3.VirtualHost{
		Name:    name,
		Domains: []string{name, name + ":" + portRouteName(svc.Port)},
	}
	if len(svc.Routes) == 0 {
		vh.Routes = []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
		}}
		return vh, nil
	}
	for i := range svc.Routes {
		r, err := buildRoute(name, svc.Protocol, &svc.Routes[i])
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		vh.Routes = append(vh.Routes, r)
	}
	return vh, nil
}

func buildRoute(service string, protocol mesh.Protocol, r *mesh.Route) (*routev3.Route, error) {
	action, err := routeAction(service, protocol, r)
	if err != nil {
		return nil, err
	}
	return &routev3.Route{
		Name:   r.Name,
		Match:  routeMatch(r.Match),
		Action: &routev3.Route_Route{Route: action},
	}, nil
}

// routeMatch converts a document match. Without a path condition the route
// matches every path.
func routeMatch(m mesh.RouteMatch) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if p := m.Path; p != nil {
		switch {
		case p.Exact != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: p.Exact}
		case p.Regex != "":
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p.Regex}}
		case p.Prefix != "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: p.Prefix}
		}
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatcher(h))
	}
	return rm
}

func headerMatcher(h mesh.HeaderMatch) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: h.Name, InvertMatch: h.Invert}
	var sm *matcherv3.StringMatcher
	switch {
	case h.Present:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case h.Exact != "":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Exact}}
	case h.Prefix != "":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Prefix}}
	case h.Regex != "":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: h.Regex},
		}}
	}
	if sm != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	}
	return hm
}

func routeAction(service string, protocol mesh.Protocol, r *mesh.Route) (*routev3.RouteAction, error) {
	a := &routev3.RouteAction{}
	backends := weightedBackends(r.Backends)
	switch len(backends) {
	case 0:
		return nil, fmt.Errorf("no backend with a weight above 0")
	case 1:
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: clusterName(service, backends[0].Subset)}
	default:
		wc := &routev3.WeightedCluster{}
		for _, be := range backends {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name:   clusterName(service, be.Subset),
				Weight: wrapperspb.UInt32(be.Weight),
			})
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}

	if d := r.Timeout.Duration; d > 0 {
		a.Timeout = durationpb.New(d)
		if protocol == mesh.ProtocolGRPC {
			// gRPC clients ignore timeout and read max_stream_duration
			// (gRFC A31). Envoy applies both.
			a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(d)}
		}
	}
	if r.Retries != nil {
		a.RetryPolicy = retryPolicy(protocol, r.Retries)
	}
	return a, nil
}

// weightedBackends returns the backends that get traffic. A single backend
// gets all of it whatever its weight, since the document may leave the
// weight out. Of several, those with weight 0 are dropped: Envoy's tcp_proxy
// rejects a weight of 0, and gRPC clients skip such clusters anyway.
func weightedBackends(backends []mesh.Backend) []mesh.Backend {
	if len(backends) == 1 {
		return backends
	}
	out := make([]mesh.Backend, 0, len(backends))
	for _, be := range backends {
		if be.Weight > 0 {
			out = append(out, be)
		}
	}
	return out
}

// retryPolicy converts the document's retries. Envoy takes HTTP and gRPC
// conditions in the same retry_on list; gRPC clients read only the gRPC
// ones (cancelled, deadline-exceeded, internal, resource-exhausted,
// unavailable).
func retryPolicy(protocol mesh.Protocol, r *mesh.Retries) *routev3.RetryPolicy {
	on := strings.Join(r.RetryOn, ",")
	if on == "" {
		on = defaultHTTPRetryOn
		if protocol == mesh.ProtocolGRPC {
			on = defaultGRPCRetryOn
		}
	}
	return &routev3.RetryPolicy{
		RetryOn:       on,
		NumRetries:    wrapperspb.UInt32(r.Attempts),
		PerTryTimeout: optionalDuration(r.PerTryTimeout.Duration),
	}
}

// buildPortRouteConfig returns the route configuration of port, with one
// virtual host per HTTP-family service on it, ordered by service name.
func buildPortRouteConfig(port uint32, hosts []*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name:         portRouteName(port),
		VirtualHosts: hosts,
	}
}
