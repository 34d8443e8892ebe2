package adsc

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tether-mesh/tether/xds"
)

// watchedTypes are the types both clients subscribe to, in push order.
var watchedTypes = []string{
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
}

// resourceSet maps a type URL and a resource name to the resource's
// marshalled bytes.
type resourceSet map[string]map[string][]byte

func newResourceSet() resourceSet {
	s := make(resourceSet, len(watchedTypes))
	for _, t := range watchedTypes {
		s[t] = make(map[string][]byte)
	}
	return s
}

func (s resourceSet) clone() resourceSet {
	out := make(resourceSet, len(s))
	for t, byName := range s {
		out[t] = maps.Clone(byName)
	}
	return out
}

// marshal returns the deterministic encoding the agent also uses, so a
// message decoded from the agent's bytes encodes back to the same bytes.
func marshal(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// expectedView returns the resources a client holds when it subscribes to
// clusters and listeners by wildcard, to the listeners in namedListeners by
// name, and to the endpoints and route configurations that those clusters
// and listeners refer to. Listeners marked NamedOnly reach wildcard
// subscribers only when named.
func expectedView(snap map[string]map[string]*xds.Resource, namedListeners []string) (resourceSet, error) {
	out := newResourceSet()
	for name, r := range snap[resourcev3.ClusterType] {
		out[resourcev3.ClusterType][name] = r.Any.GetValue()
		m, err := r.Decode()
		if err != nil {
			return nil, err
		}
		c, ok := m.(*clusterv3.Cluster)
		if !ok {
			return nil, fmt.Errorf("cluster %q holds a %T", name, m)
		}
		if eds := edsName(c); eds != "" {
			if cla := snap[resourcev3.EndpointType][eds]; cla != nil {
				out[resourcev3.EndpointType][eds] = cla.Any.GetValue()
			}
		}
	}

	for name, r := range snap[resourcev3.ListenerType] {
		if r.NamedOnly && !slices.Contains(namedListeners, name) {
			continue
		}
		out[resourcev3.ListenerType][name] = r.Any.GetValue()
		m, err := r.Decode()
		if err != nil {
			return nil, err
		}
		l, ok := m.(*listenerv3.Listener)
		if !ok {
			return nil, fmt.Errorf("listener %q holds a %T", name, m)
		}
		routes, err := routeNames(l)
		if err != nil {
			return nil, err
		}
		for _, rn := range routes {
			if rc := snap[resourcev3.RouteType][rn]; rc != nil {
				out[resourcev3.RouteType][rn] = rc.Any.GetValue()
			}
		}
	}
	return out, nil
}

// cacheSet returns every resource of the watched types in the agent's cache.
func cacheSet(snap map[string]map[string]*xds.Resource) resourceSet {
	out := newResourceSet()
	for _, t := range watchedTypes {
		for name, r := range snap[t] {
			out[t][name] = r.Any.GetValue()
		}
	}
	return out
}

// edsName returns the name an EDS cluster's endpoints are requested under,
// or "" for a cluster of another discovery type.
func edsName(c *clusterv3.Cluster) string {
	if c.GetType() != clusterv3.Cluster_EDS {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// routeNames returns the RDS route configuration names a listener refers
// to, from the HTTP connection managers of its filter chains or of its API
// listener.
func routeNames(l *listenerv3.Listener) ([]string, error) {
	var configs []*anypb.Any
	if api := l.GetApiListener().GetApiListener(); api != nil {
		configs = append(configs, api)
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			configs = append(configs, f.GetTypedConfig())
		}
	}

	var names []string
	for _, cfg := range configs {
		hcm := &hcmv3.HttpConnectionManager{}
		if !cfg.MessageIs(hcm) {
			continue
		}
		if err := cfg.UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("listener %q: decode connection manager: %w", l.GetName(), err)
		}
		if n := hcm.GetRds().GetRouteConfigName(); n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

// resourceName returns the xDS name of a resource of one of the watched
// types, as a state-of-the-world response carries no names beside the
// resources.
func resourceName(a *anypb.Any) (string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return "", fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
	}
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName(), nil
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName(), nil
	case *listenerv3.Listener:
		return r.GetName(), nil
	case *routev3.RouteConfiguration:
		return r.GetName(), nil
	}
	return "", fmt.Errorf("unexpected resource type %s", a.GetTypeUrl())
}

// diffSets lists how got differs from want, one line per resource: missing,
// unexpected, or with different bytes. It returns "" when they are equal.
func diffSets(got, want resourceSet) string {
	var lines []string
	for _, t := range watchedTypes {
		short := t[strings.LastIndex(t, ".")+1:]
		for _, name := range slices.Sorted(maps.Keys(want[t])) {
			g, ok := got[t][name]
			switch {
			case !ok:
				lines = append(lines, fmt.Sprintf("%s %q: missing", short, name))
			case string(g) != string(want[t][name]):
				lines = append(lines, fmt.Sprintf("%s %q: %d bytes, expected %d different bytes", short, name, len(g), len(want[t][name])))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(got[t])) {
			if _, ok := want[t][name]; !ok {
				lines = append(lines, fmt.Sprintf("%s %q: unexpected", short, name))
			}
		}
	}
	return strings.Join(lines, "\n")
}
