package xds

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/tether-mesh/tether/mesh"
)

// outboundListenerName returns the name of Envoy's outbound listener for a
// port, such as "outbound_0.0.0.0_9080".
func outboundListenerName(bind string, port uint32) string {
	return "outbound_" + bind + "_" + portRouteName(port)
}

// translatePort rebuilds the resources shared by the services on port: the
// route configuration named after the port and Envoy's outbound listener.
// HTTP-family services share one HTTP connection manager. A tcp service
// gets a tcp_proxy listener only when it is alone on its port.
func (t *Translator) translatePort(b *changeBatch, port uint32) {
	routeName := portRouteName(port)
	listenerName := outboundListenerName(t.bindAddress, port)
	services := t.ports[port]
	if len(services) == 0 {
		delete(t.ports, port)
		t.remove(b, resourcev3.RouteType, routeName)
		t.remove(b, resourcev3.ListenerType, listenerName)
		return
	}

	var httpNames, tcpNames []string
	for _, name := range slices.Sorted(maps.Keys(services)) {
		if services[name].Protocol.IsHTTP() {
			httpNames = append(httpNames, name)
		} else {
			tcpNames = append(tcpNames, name)
		}
	}
	if len(tcpNames) > 0 && len(services) > 1 {
		reportPortConflicts(b, listenerName, port, services, tcpNames)
		tcpNames = nil
	}

	switch {
	case len(httpNames) > 0:
		t.translateHTTPPort(b, port, httpNames)
	case len(tcpNames) == 1:
		t.remove(b, resourcev3.RouteType, routeName)
		t.translateTCPPort(b, port, tcpNames[0])
	default:
		t.remove(b, resourcev3.RouteType, routeName)
		t.remove(b, resourcev3.ListenerType, listenerName)
	}
}

// reportPortConflicts records one error per tcp service on a shared port,
// naming the store keys of every service on it.
func reportPortConflicts(b *changeBatch, listenerName string, port uint32, services map[string]*mesh.Service, tcpNames []string) {
	for _, tcp := range tcpNames {
		keys := []string{services[tcp].Key}
		var others []string
		for _, name := range slices.Sorted(maps.Keys(services)) {
			if name != tcp {
				keys = append(keys, services[name].Key)
				others = append(others, fmt.Sprintf("%q", name))
			}
		}
		b.errs = append(b.errs, &TranslationError{
			TypeURL: resourcev3.ListenerType,
			Name:    listenerName,
			Keys:    keys,
			Err: fmt.Errorf("%w: %q shares port %d with %s; "+
				"Envoy sidecars get no listener for %q until it has a port of its own",
				ErrPortConflict, tcp, port, strings.Join(others, ", "), tcp),
		})
	}
}

// translateHTTPPort builds the port's route configuration from the virtual
// hosts of names, and a listener whose connection manager refers to it.
//
// TODO: this marshals every virtual host on the port again when one service
// document changes. Splice each service's marshalled virtual host instead
// if ports with thousands of HTTP services make document changes slow.
// Endpoint changes do not reach this code.
func (t *Translator) translateHTTPPort(b *changeBatch, port uint32, names []string) {
	routeName := portRouteName(port)
	listenerName := outboundListenerName(t.bindAddress, port)
	keys := make([]string, 0, len(names))
	hosts := make([]*routev3.VirtualHost, 0, len(names))
	for _, name := range names {
		out := t.outputs[name]
		keys = append(keys, out.svc.Key)
		// A service whose virtual host failed to build was reported
		// when it was translated.
		if out.virtualHost != nil {
			hosts = append(hosts, out.virtualHost)
		}
	}
	if !t.put(b, resourcev3.RouteType, routeName, buildPortRouteConfig(port, hosts), keys...) {
		t.remove(b, resourcev3.ListenerType, listenerName)
		return
	}

	hcm, err := buildHTTPConnectionManager("outbound_"+routeName, routeName)
	if err != nil {
		t.reportBuildError(b, resourcev3.ListenerType, listenerName, keys, err)
		return
	}
	lis, err := t.buildOutboundListener(listenerName, port, wellknown.HTTPConnectionManager, hcm)
	if err != nil {
		t.reportBuildError(b, resourcev3.ListenerType, listenerName, keys, err)
		return
	}
	t.put(b, resourcev3.ListenerType, listenerName, lis, keys...)
}

// translateTCPPort builds a listener that proxies the port's connections to
// the clusters of the tcp service name.
func (t *Translator) translateTCPPort(b *changeBatch, port uint32, name string) {
	listenerName := outboundListenerName(t.bindAddress, port)
	svc := t.outputs[name].svc
	keys := []string{svc.Key}
	proxy, err := buildTCPProxy(name, svc)
	if err != nil {
		t.reportBuildError(b, resourcev3.ListenerType, listenerName, keys, err)
		return
	}
	lis, err := t.buildOutboundListener(listenerName, port, wellknown.TCPProxy, proxy)
	if err != nil {
		t.reportBuildError(b, resourcev3.ListenerType, listenerName, keys, err)
		return
	}
	t.put(b, resourcev3.ListenerType, listenerName, lis, keys...)
}

func (t *Translator) reportBuildError(b *changeBatch, typeURL, name string, keys []string, err error) {
	b.errs = append(b.errs, &TranslationError{
		TypeURL: typeURL, Name: name, Keys: keys,
		Err: fmt.Errorf("%w: %w", ErrInvalidResource, err),
	})
}

// buildTCPProxy sends connections to the service's cluster, or to the
// weighted subset clusters of its single route.
func buildTCPProxy(name string, svc *mesh.Service) (*tcpproxyv3.TcpProxy, error) {
	proxy := &tcpproxyv3.TcpProxy{
		StatPrefix:       name,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: clusterName(name, "")},
	}
	if len(svc.Routes) == 0 {
		return proxy, nil
	}
	backends := weightedBackends(svc.Routes[0].Backends)
	switch len(backends) {
	case 0:
		return nil, fmt.Errorf("routes[0]: no backend with a weight above 0")
	case 1:
		proxy.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusterName(name, backends[0].Subset)}
	default:
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, be := range backends {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{
				Name:   clusterName(name, be.Subset),
				Weight: be.Weight,
			})
		}
		proxy.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return proxy, nil
}

// buildOutboundListener returns a listener on the bind address and port
// with one filter chain holding the network filter config.
func (t *Translator) buildOutboundListener(name string, port uint32, filterName string, config proto.Message) (*listenerv3.Listener, error) {
	typed, err := marshalAny(config)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(t.bindAddress, port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       filterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed},
			}},
		}},
	}, nil
}

// buildAPIListener returns the listener a gRPC client requests when it
// dials xds:///<name>. It has no address, so Envoy must not receive it.
func buildAPIListener(name string) (*listenerv3.Listener, error) {
	hcm, err := buildHTTPConnectionManager(name, name)
	if err != nil {
		return nil, err
	}
	typed, err := marshalAny(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: typed},
	}, nil
}

// buildHTTPConnectionManager returns a connection manager that fetches
// route configuration routeName over ADS. gRPC clients require the router
// to be the last HTTP filter.
func buildHTTPConnectionManager(statPrefix, routeName string) (*hcmv3.HttpConnectionManager, error) {
	router, err := marshalAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	}, nil
}
