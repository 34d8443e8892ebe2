package xds

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrMissingReference is wrapped by every error of CheckConsistent.
var ErrMissingReference = errors.New("xds: referenced resource missing")

// validator is implemented by every message generated with
// protoc-gen-validate, which includes all of Envoy's API.
type validator interface {
	ValidateAll() error
}

// ValidateResource checks the resource against the protoc-gen-validate rules
// of Envoy's API. It does the same for every message packed in a
// google.protobuf.Any inside it, at any depth, because ValidateAll does not
// look inside an Any. Such messages include connection managers in
// listeners, HTTP filter configs, tcp_proxy configs, cluster protocol
// options and load-balancing policies. An Any whose type is not linked into
// the binary fails. ValidateResource is safe for concurrent use.
func ValidateResource(r *Resource) error {
	if r == nil || (r.Message == nil && r.Any == nil) {
		return errors.New("validate resource: no message")
	}
	msg, err := r.Decode()
	if err != nil {
		return fmt.Errorf("validate resource: %w", err)
	}
	name := msg.ProtoReflect().Descriptor().FullName()
	if err := validateMessage(msg); err != nil {
		return fmt.Errorf("validate %s %q: %w", name, r.Name, err)
	}
	var errs []error
	for _, pe := range validatePacked(msg.ProtoReflect()) {
		errs = append(errs, pe)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("validate %s %q: %w", name, r.Name, err)
	}
	return nil
}

func validateMessage(msg proto.Message) error {
	v, ok := msg.(validator)
	if !ok {
		return fmt.Errorf("%s has no validation rules", msg.ProtoReflect().Descriptor().FullName())
	}
	return v.ValidateAll()
}

// packedError is a failure of a message packed in an Any.
type packedError struct {
	// path is the field path from the resource to the Any, such as
	// ".filter_chains[0].filters[0].typed_config". It is built while the
	// error returns up the walk, so a valid resource costs no strings.
	path string
	err  error
}

func (e *packedError) Error() string {
	path := strings.TrimPrefix(e.path, ".")
	if path == "" {
		path = "(top level)"
	}
	return fmt.Sprintf("field %s: %v", path, e.err)
}

func (e *packedError) Unwrap() error { return e.err }

// validatePacked walks m and validates the message inside every Any it
// finds, then walks that message too.
func validatePacked(m protoreflect.Message) []*packedError {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return []*packedError{{err: fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err)}}
		}
		if err := validateMessage(inner); err != nil {
			return []*packedError{{err: fmt.Errorf("%s: %w", a.GetTypeUrl(), err)}}
		}
		return validatePacked(inner.ProtoReflect())
	}

	var errs []*packedError
	for _, fd := range anyFields(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		for _, pe := range validateField(fd, m.Get(fd)) {
			pe.path = "." + string(fd.Name()) + pe.path
			errs = append(errs, pe)
		}
	}
	return errs
}

// validateField walks one populated field of a message.
func validateField(fd protoreflect.FieldDescriptor, v protoreflect.Value) []*packedError {
	switch {
	case fd.IsList():
		list := v.List()
		var errs []*packedError
		for i := range list.Len() {
			for _, pe := range validatePacked(list.Get(i).Message()) {
				pe.path = fmt.Sprintf("[%d]%s", i, pe.path)
				errs = append(errs, pe)
			}
		}
		return errs
	case fd.IsMap():
		// Map iteration order is random; sort keys so errors are stable.
		entries := map[string]protoreflect.Value{}
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			entries[k.String()] = mv
			return true
		})
		var errs []*packedError
		for _, k := range slices.Sorted(maps.Keys(entries)) {
			for _, pe := range validatePacked(entries[k].Message()) {
				pe.path = fmt.Sprintf("[%q]%s", k, pe.path)
				errs = append(errs, pe)
			}
		}
		return errs
	default:
		return validatePacked(v.Message())
	}
}

// anyFieldCache caches anyFields by message descriptor.
var anyFieldCache sync.Map

// anyFields returns the fields of md whose type can hold a
// google.protobuf.Any at any depth. validatePacked visits only these, so it
// skips subtrees such as socket addresses and weights, which make up most
// of an endpoint assignment.
func anyFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if v, ok := anyFieldCache.Load(md); ok {
		return v.([]protoreflect.FieldDescriptor)
	}
	var out []protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		vd := fd
		if fd.IsMap() {
			vd = fd.MapValue()
		}
		if vd.Message() != nil && reachesAny(vd.Message(), map[protoreflect.FullName]bool{}) {
			out = append(out, fd)
		}
	}
	anyFieldCache.Store(md, out)
	return out
}

// reachesAny searches the types reachable from md for Any. seen holds the
// types already searched, which also ends the search on recursive types.
func reachesAny(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if md.FullName() == anyFullName {
		return true
	}
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Message() != nil && reachesAny(fd.Message(), seen) {
			return true
		}
	}
	return false
}

var anyFullName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// CheckConsistent reports every reference to a missing resource in res,
// which maps type URL, then name, to resources. It checks the route
// configuration named by each listener's connection manager, API listeners
// included. It checks the clusters named by routes and tcp_proxy configs,
// and the assignment of each EDS cluster. Each problem is an error
// wrapping ErrMissingReference.
func CheckConsistent(res map[string]map[string]*Resource) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(res[resourcev3.ListenerType])) {
		errs = append(errs, checkListener(res, res[resourcev3.ListenerType][name]))
	}
	for _, name := range slices.Sorted(maps.Keys(res[resourcev3.RouteType])) {
		m, err := res[resourcev3.RouteType][name].Decode()
		rc, ok := m.(*routev3.RouteConfiguration)
		if err != nil || !ok {
			errs = append(errs, fmt.Errorf("route configuration %q: message is not a RouteConfiguration", name))
			continue
		}
		errs = append(errs, checkRouteClusters(res, "route configuration "+fmt.Sprintf("%q", name), rc))
	}
	for _, name := range slices.Sorted(maps.Keys(res[resourcev3.ClusterType])) {
		errs = append(errs, checkClusterAssignment(res, res[resourcev3.ClusterType][name]))
	}
	return errors.Join(errs...)
}

func checkListener(res map[string]map[string]*Resource, r *Resource) error {
	m, err := r.Decode()
	lis, ok := m.(*listenerv3.Listener)
	if err != nil || !ok {
		return fmt.Errorf("listener %q: message is not a Listener", r.Name)
	}
	owner := fmt.Sprintf("listener %q", r.Name)
	var errs []error
	if api := lis.GetApiListener().GetApiListener(); api != nil {
		errs = append(errs, checkNetworkFilter(res, owner, api))
	}
	chains := lis.GetFilterChains()
	if dc := lis.GetDefaultFilterChain(); dc != nil {
		chains = append(slices.Clip(chains), dc)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if typed := f.GetTypedConfig(); typed != nil {
				errs = append(errs, checkNetworkFilter(res, owner, typed))
			}
		}
	}
	return errors.Join(errs...)
}

// checkNetworkFilter checks the references of a connection manager or
// tcp_proxy config. Other filter types are not checked.
func checkNetworkFilter(res map[string]map[string]*Resource, owner string, typed *anypb.Any) error {
	inner, err := typed.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: unpack %s: %w", owner, typed.GetTypeUrl(), err)
	}
	switch cfg := inner.(type) {
	case *hcmv3.HttpConnectionManager:
		if rds := cfg.GetRds(); rds != nil {
			return requireResource(res, resourcev3.RouteType, rds.GetRouteConfigName(), owner)
		}
		if rc := cfg.GetRouteConfig(); rc != nil {
			return checkRouteClusters(res, owner, rc)
		}
	case *tcpproxyv3.TcpProxy:
		if c := cfg.GetCluster(); c != "" {
			return requireResource(res, resourcev3.ClusterType, c, owner)
		}
		var errs []error
		for _, cw := range cfg.GetWeightedClusters().GetClusters() {
			errs = append(errs, requireResource(res, resourcev3.ClusterType, cw.GetName(), owner))
		}
		return errors.Join(errs...)
	}
	return nil
}

func checkRouteClusters(res map[string]map[string]*Resource, owner string, rc *routev3.RouteConfiguration) error {
	var errs []error
	for _, vh := range rc.GetVirtualHosts() {
		for _, route := range vh.GetRoutes() {
			action := route.GetRoute()
			if c := action.GetCluster(); c != "" {
				errs = append(errs, requireResource(res, resourcev3.ClusterType, c, owner))
			}
			for _, cw := range action.GetWeightedClusters().GetClusters() {
				errs = append(errs, requireResource(res, resourcev3.ClusterType, cw.GetName(), owner))
			}
		}
	}
	return errors.Join(errs...)
}

func checkClusterAssignment(res map[string]map[string]*Resource, r *Resource) error {
	m, err := r.Decode()
	c, ok := m.(*clusterv3.Cluster)
	if err != nil || !ok {
		return fmt.Errorf("cluster %q: message is not a Cluster", r.Name)
	}
	if c.GetType() != clusterv3.Cluster_EDS {
		return nil
	}
	name := c.GetEdsClusterConfig().GetServiceName()
	if name == "" {
		name = c.GetName()
	}
	return requireResource(res, resourcev3.EndpointType, name, fmt.Sprintf("cluster %q", r.Name))
}

func requireResource(res map[string]map[string]*Resource, typeURL, name, owner string) error {
	if _, ok := res[typeURL][name]; ok {
		return nil
	}
	return fmt.Errorf("%w: %s refers to %s %q", ErrMissingReference, owner, typeURL, name)
}
