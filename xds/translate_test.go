package xds

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/tether-mesh/tether/mesh"
)

const testPrefix = "/tether/"

var discardLogger = slog.New(slog.DiscardHandler)

// loadMesh reads the documents under dir into a State, with paths as store
// keys. With reverse set, the documents are applied in reverse order, so
// two loads give equal but separately built States.
func loadMesh(t testing.TB, dir string, reverse bool) *mesh.State {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".yaml" {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	if reverse {
		slices.Reverse(paths)
	}
	b := mesh.NewBuilder(testPrefix)
	for _, path := range paths {
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		key := testPrefix + strings.TrimSuffix(filepath.ToSlash(rel), ".yaml")
		if err := b.Put(key, data); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	return b.State()
}

func bookinfo(t testing.TB) *mesh.State {
	return loadMesh(t, filepath.Join("testdata", "bookinfo"), false)
}

// translateState translates st with a new Translator and fails the test on
// any error.
func translateState(t testing.TB, st *mesh.State) (*Translator, Changes) {
	t.Helper()
	tr := NewTranslator(TranslatorOptions{Logger: discardLogger})
	ch, err := tr.Update(st)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	return tr, ch
}

// message returns the message of a resource, failing the test when it is
// missing or of another type.
func message[T proto.Message](t *testing.T, res map[string]map[string]*Resource, typeURL, name string) T {
	t.Helper()
	r := res[typeURL][name]
	if r == nil {
		t.Fatalf("resource %s %q missing; have %v", typeURL, name, slices.Sorted(maps.Keys(res[typeURL])))
	}
	decoded := decode(t, r)
	m, ok := decoded.(T)
	if !ok {
		t.Fatalf("resource %q is %T", name, decoded)
	}
	return m
}

// unpack returns the message packed in a typed config.
// decode returns a resource's message, failing the test on error.
func decode(t *testing.T, r *Resource) proto.Message {
	t.Helper()
	m, err := r.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func unpack[T proto.Message](t *testing.T, typed interface{ UnmarshalNew() (proto.Message, error) }) T {
	t.Helper()
	m, err := typed.UnmarshalNew()
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("packed message is %T", m)
	}
	return v
}

func claAddresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

func names(res map[string]map[string]*Resource, typeURL string) []string {
	return slices.Sorted(maps.Keys(res[typeURL]))
}

func TestTranslateBookinfo(t *testing.T) {
	tr, ch := translateState(t, bookinfo(t))
	res := tr.Resources()

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"every resource valid", func(t *testing.T) {
			for typeURL, byName := range res {
				for name, r := range byName {
					if err := ValidateResource(r); err != nil {
						t.Errorf("%s %q: %v", typeURL, name, err)
					}
				}
			}
		}},
		{"resources consistent", func(t *testing.T) {
			if err := CheckConsistent(res); err != nil {
				t.Error(err)
			}
		}},
		{"names per type", func(t *testing.T) {
			clusters := []string{
				"details", "details/v1", "details/v2", "mysqldb",
				"productpage", "productpage/v1",
				"ratings", "ratings/v1", "ratings/v2", "ratings/v2-mysql", "ratings/v2-mysql-vm",
				"reviews", "reviews/v1", "reviews/v2", "reviews/v3",
			}
			want := map[string][]string{
				resourcev3.ClusterType:  clusters,
				resourcev3.EndpointType: clusters,
				resourcev3.RouteType:    {"9080", "details", "productpage", "ratings", "reviews"},
				resourcev3.ListenerType: {
					"details", "outbound_0.0.0.0_3306", "outbound_0.0.0.0_9080",
					"productpage", "ratings", "reviews",
				},
			}
			for typeURL, w := range want {
				if got := names(res, typeURL); !slices.Equal(got, w) {
					t.Errorf("%s names = %v, want %v", typeURL, got, w)
				}
			}
		}},
		{"first update returns every resource", func(t *testing.T) {
			for typeURL, byName := range res {
				var got []string
				for _, r := range ch.Upserts[typeURL] {
					got = append(got, r.Name)
				}
				if want := slices.Sorted(maps.Keys(byName)); !slices.Equal(got, want) {
					t.Errorf("%s upserts = %v, want %v", typeURL, got, want)
				}
			}
			if len(ch.Removes) != 0 {
				t.Errorf("removes = %v, want none", ch.Removes)
			}
		}},
		{"weighted route", func(t *testing.T) {
			rc := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "details")
			route := rc.GetVirtualHosts()[0].GetRoutes()[0]
			if route.GetName() != "details-canary" {
				t.Errorf("route name = %q, want details-canary", route.GetName())
			}
			var got []string
			for _, cw := range route.GetRoute().GetWeightedClusters().GetClusters() {
				got = append(got, fmt.Sprintf("%s=%d", cw.GetName(), cw.GetWeight().GetValue()))
			}
			if want := []string{"details/v1=90", "details/v2=10"}; !slices.Equal(got, want) {
				t.Errorf("weighted clusters = %v, want %v", got, want)
			}
			if d := route.GetRoute().GetTimeout().AsDuration(); d != 3*time.Second {
				t.Errorf("timeout = %v, want 3s", d)
			}
			rp := route.GetRoute().GetRetryPolicy()
			if rp.GetRetryOn() != defaultHTTPRetryOn || rp.GetNumRetries().GetValue() != 2 || rp.GetPerTryTimeout().AsDuration() != time.Second {
				t.Errorf("retry policy = %v, want %s, 2 retries, 1s per try", rp, defaultHTTPRetryOn)
			}
		}},
		{"jason header match", func(t *testing.T) {
			vh := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "reviews").GetVirtualHosts()[0]
			if want := []string{"reviews", "reviews:9080"}; !slices.Equal(vh.GetDomains(), want) {
				t.Errorf("domains = %v, want %v", vh.GetDomains(), want)
			}
			if len(vh.GetRoutes()) != 2 {
				t.Fatalf("got %d routes, want 2", len(vh.GetRoutes()))
			}
			jason, rest := vh.GetRoutes()[0], vh.GetRoutes()[1]
			headers := jason.GetMatch().GetHeaders()
			if len(headers) != 1 || headers[0].GetName() != "end-user" || headers[0].GetStringMatch().GetExact() != "jason" {
				t.Errorf("jason route headers = %v, want end-user exact jason", headers)
			}
			if c := jason.GetRoute().GetCluster(); c != "reviews/v2" {
				t.Errorf("jason route cluster = %q, want reviews/v2", c)
			}
			if len(rest.GetMatch().GetHeaders()) != 0 || rest.GetMatch().GetPrefix() != "/" {
				t.Errorf("default route match = %v, want prefix / only", rest.GetMatch())
			}
			if c := rest.GetRoute().GetCluster(); c != "reviews/v3" {
				t.Errorf("default route cluster = %q, want reviews/v3", c)
			}
		}},
		{"default route without routes", func(t *testing.T) {
			vh := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "productpage").GetVirtualHosts()[0]
			if len(vh.GetRoutes()) != 1 || vh.GetRoutes()[0].GetRoute().GetCluster() != "productpage" {
				t.Errorf("routes = %v, want one route to cluster productpage", vh.GetRoutes())
			}
		}},
		{"subset assignments hold matching healthy endpoints", func(t *testing.T) {
			want := map[string][]string{
				"reviews":    {"10.0.3.10:9080", "10.0.3.20:9080", "10.0.3.30:9080", "10.0.3.31:9080"},
				"reviews/v1": {"10.0.3.10:9080"},
				"reviews/v2": {"10.0.3.20:9080"},
				"reviews/v3": {"10.0.3.30:9080", "10.0.3.31:9080"},
				"ratings/v2": nil,
			}
			for name, w := range want {
				cla := message[*endpointv3.ClusterLoadAssignment](t, res, resourcev3.EndpointType, name)
				if got := claAddresses(cla); !slices.Equal(got, w) {
					t.Errorf("%s endpoints = %v, want %v", name, got, w)
				}
			}
		}},
		{"localities sorted with weight sums", func(t *testing.T) {
			cla := message[*endpointv3.ClusterLoadAssignment](t, res, resourcev3.EndpointType, "reviews")
			var got []string
			for _, loc := range cla.GetEndpoints() {
				l := loc.GetLocality()
				got = append(got, fmt.Sprintf("%s/%s=%d", l.GetRegion(), l.GetZone(), loc.GetLoadBalancingWeight().GetValue()))
			}
			if want := []string{"/=1", "eu-west1/eu-west1-a=3", "eu-west1/eu-west1-b=3"}; !slices.Equal(got, want) {
				t.Errorf("localities = %v, want %v", got, want)
			}
		}},
		{"locality weights non-zero", func(t *testing.T) {
			for name, r := range res[resourcev3.EndpointType] {
				for _, loc := range decode(t, r).(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
					if loc.GetLocality() == nil {
						t.Errorf("%s: locality field unset", name)
					}
					var sum uint32
					for _, lb := range loc.GetLbEndpoints() {
						sum += lb.GetLoadBalancingWeight().GetValue()
					}
					if w := loc.GetLoadBalancingWeight().GetValue(); w == 0 || w != sum {
						t.Errorf("%s: locality weight %d, want endpoint sum %d > 0", name, w, sum)
					}
				}
			}
		}},
		{"cluster settings", func(t *testing.T) {
			c := message[*clusterv3.Cluster](t, res, resourcev3.ClusterType, "ratings/v1")
			if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
				t.Errorf("discovery = %v %v, want EDS over ADS", c.GetType(), c.GetEdsClusterConfig())
			}
			if c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST {
				t.Errorf("lb_policy = %v, want LEAST_REQUEST", c.GetLbPolicy())
			}
			if d := c.GetConnectTimeout().AsDuration(); d != DefaultConnectTimeout {
				t.Errorf("connect_timeout = %v, want %v", d, DefaultConnectTimeout)
			}
			th := c.GetCircuitBreakers().GetThresholds()
			if len(th) != 1 || th[0].GetMaxConnections().GetValue() != 100 || th[0].GetMaxRequests().GetValue() != 1000 || th[0].GetMaxRetries() != nil {
				t.Errorf("circuit breakers = %v, want max connections 100, max requests 1000", th)
			}
			od := c.GetOutlierDetection()
			if od.GetConsecutive_5Xx().GetValue() != 5 || od.GetBaseEjectionTime().AsDuration() != 30*time.Second || od.GetMaxEjectionPercent().GetValue() != 50 {
				t.Errorf("outlier detection = %v", od)
			}
			if len(c.GetTypedExtensionProtocolOptions()) != 0 {
				t.Errorf("http service has protocol options %v", c.GetTypedExtensionProtocolOptions())
			}
		}},
		{"api listener", func(t *testing.T) {
			r := res[resourcev3.ListenerType]["reviews"]
			if r == nil || !r.NamedOnly {
				t.Fatalf("listener reviews = %v, want a NamedOnly resource", r)
			}
			lis := decode(t, r).(*listenerv3.Listener)
			hcm := unpack[*hcmv3.HttpConnectionManager](t, lis.GetApiListener().GetApiListener())
			if name := hcm.GetRds().GetRouteConfigName(); name != "reviews" {
				t.Errorf("route_config_name = %q, want reviews", name)
			}
			checkRouterLast(t, hcm)
		}},
		{"http outbound listener", func(t *testing.T) {
			r := res[resourcev3.ListenerType]["outbound_0.0.0.0_9080"]
			if r == nil || r.NamedOnly {
				t.Fatalf("listener = %v, want a wildcard resource", r)
			}
			lis := decode(t, r).(*listenerv3.Listener)
			sa := lis.GetAddress().GetSocketAddress()
			if sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != 9080 {
				t.Errorf("address = %v, want 0.0.0.0:9080", sa)
			}
			f := lis.GetFilterChains()[0].GetFilters()[0]
			if f.GetName() != wellknown.HTTPConnectionManager {
				t.Errorf("filter = %q, want %q", f.GetName(), wellknown.HTTPConnectionManager)
			}
			hcm := unpack[*hcmv3.HttpConnectionManager](t, f.GetTypedConfig())
			if name := hcm.GetRds().GetRouteConfigName(); name != "9080" {
				t.Errorf("route_config_name = %q, want 9080", name)
			}
			checkRouterLast(t, hcm)
		}},
		{"port route config shares virtual hosts", func(t *testing.T) {
			rc := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "9080")
			var got []string
			for _, vh := range rc.GetVirtualHosts() {
				got = append(got, vh.GetName())
			}
			if want := []string{"details", "productpage", "ratings", "reviews"}; !slices.Equal(got, want) {
				t.Errorf("virtual hosts = %v, want %v", got, want)
			}
			own := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "reviews").GetVirtualHosts()[0]
			if !proto.Equal(rc.GetVirtualHosts()[3], own) {
				t.Errorf("reviews virtual host differs between route configs 9080 and reviews")
			}
		}},
		{"tcp outbound listener", func(t *testing.T) {
			lis := message[*listenerv3.Listener](t, res, resourcev3.ListenerType, "outbound_0.0.0.0_3306")
			f := lis.GetFilterChains()[0].GetFilters()[0]
			if f.GetName() != wellknown.TCPProxy {
				t.Errorf("filter = %q, want %q", f.GetName(), wellknown.TCPProxy)
			}
			if c := unpack[*tcpproxyv3.TcpProxy](t, f.GetTypedConfig()).GetCluster(); c != "mysqldb" {
				t.Errorf("tcp_proxy cluster = %q, want mysqldb", c)
			}
			if _, ok := res[resourcev3.RouteType]["mysqldb"]; ok {
				t.Errorf("tcp service has a route configuration")
			}
		}},
		{"store keys", func(t *testing.T) {
			want := map[[2]string][]string{
				{resourcev3.ClusterType, "reviews/v2"}:  {"/tether/services/reviews"},
				{resourcev3.EndpointType, "reviews/v2"}: {"/tether/services/reviews"},
				{resourcev3.ListenerType, "reviews"}:    {"/tether/services/reviews"},
				{resourcev3.RouteType, "9080"}: {
					"/tether/services/details", "/tether/services/productpage",
					"/tether/services/ratings", "/tether/services/reviews",
				},
				{resourcev3.ListenerType, "outbound_0.0.0.0_3306"}: {"/tether/services/mysqldb"},
			}
			for ref, w := range want {
				if got := res[ref[0]][ref[1]].Keys; !slices.Equal(got, w) {
					t.Errorf("%s %q keys = %v, want %v", ref[0], ref[1], got, w)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

func checkRouterLast(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 {
		t.Fatal("no http filters")
	}
	last := filters[len(filters)-1]
	if last.GetName() != wellknown.Router {
		t.Errorf("last http filter = %q, want %q", last.GetName(), wellknown.Router)
	}
	unpack[*routerv3.Router](t, last.GetTypedConfig())
}

func TestTranslateDeterministic(t *testing.T) {
	dir := filepath.Join("testdata", "bookinfo")
	first, _ := translateState(t, loadMesh(t, dir, false))
	second, _ := translateState(t, loadMesh(t, dir, true))
	a, b := first.Resources(), second.Resources()

	for _, typeURL := range translatedTypes {
		if !slices.Equal(names(a, typeURL), names(b, typeURL)) {
			t.Errorf("%s names differ: %v and %v", typeURL, names(a, typeURL), names(b, typeURL))
			continue
		}
		for name, ra := range a[typeURL] {
			rb := b[typeURL][name]
			if ra.Version != rb.Version {
				t.Errorf("%s %q versions differ: %s and %s", typeURL, name, ra.Version, rb.Version)
			}
			if !bytes.Equal(ra.Any.GetValue(), rb.Any.GetValue()) {
				t.Errorf("%s %q bytes differ", typeURL, name)
			}
		}
	}
}

// syntheticMesh returns a mesh of n services with perService endpoints
// each, half of them labelled v1 and half v2, spread over 100 ports and
// three zones.
func syntheticMesh(n, perService int) *mesh.State {
	st := &mesh.State{
		Revision:  1,
		Services:  make(map[string]*mesh.Service, n),
		Endpoints: make(map[string]*mesh.EndpointSet, n),
	}
	for i := range n {
		name := fmt.Sprintf("svc-%04d", i)
		protocol := mesh.ProtocolHTTP
		if i%2 == 1 {
			protocol = mesh.ProtocolGRPC
		}
		st.Services[name] = &mesh.Service{
			Key:      mesh.ServiceKey(testPrefix, name),
			Name:     name,
			Protocol: protocol,
			Port:     uint32(8000 + i%100),
			Subsets: []mesh.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		}
		set := &mesh.EndpointSet{Service: name, Instances: make(map[string]*mesh.Endpoint, perService)}
		for j := range perService {
			inst := fmt.Sprintf("%s-%d", name, j)
			version := "v1"
			if j >= perService/2 {
				version = "v2"
			}
			set.Instances[inst] = &mesh.Endpoint{
				Key:      mesh.EndpointKey(testPrefix, name, inst),
				Address:  fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1),
				Port:     8080,
				Labels:   map[string]string{"version": version},
				Locality: mesh.Locality{Region: "r1", Zone: fmt.Sprintf("z%d", j%3)},
				Weight:   1,
				Health:   mesh.HealthHealthy,
			}
		}
		st.Endpoints[name] = set
	}
	return st
}

// nextState returns a copy of st that shares every service and endpoint set
// with it, as a watcher would build the next State.
func nextState(st *mesh.State) *mesh.State {
	return &mesh.State{
		Revision:  st.Revision + 1,
		Services:  maps.Clone(st.Services),
		Endpoints: maps.Clone(st.Endpoints),
	}
}

// withEndpoint returns a copy of st in which one endpoint of service is
// replaced by the result of change.
func withEndpoint(st *mesh.State, service, instance string, change func(ep *mesh.Endpoint)) *mesh.State {
	next := nextState(st)
	old := st.Endpoints[service]
	set := &mesh.EndpointSet{Service: service, Instances: maps.Clone(old.Instances)}
	ep := *old.Instances[instance]
	change(&ep)
	set.Instances[instance] = &ep
	next.Endpoints[service] = set
	return next
}

// changedNames lists the changes as "upsert <type> <name>" and
// "remove <type> <name>" lines in order.
func changedNames(ch Changes) []string {
	var out []string
	for typeURL, rs := range ch.Upserts {
		for _, r := range rs {
			out = append(out, "upsert "+shortType(typeURL)+" "+r.Name)
		}
	}
	for typeURL, ns := range ch.Removes {
		for _, n := range ns {
			out = append(out, "remove "+shortType(typeURL)+" "+n)
		}
	}
	slices.Sort(out)
	return out
}

func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoints"
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route"
	}
	return typeURL
}

func TestTranslateIncremental(t *testing.T) {
	st := syntheticMesh(1000, 10)
	tr, _ := translateState(t, st)

	// The cases run in order, each on the state the previous one left.
	tests := []struct {
		name   string
		mutate func(st *mesh.State) *mesh.State
		want   []string
	}{
		{
			name: "one endpoint address changed",
			mutate: func(st *mesh.State) *mesh.State {
				return withEndpoint(st, "svc-0042", "svc-0042-3", func(ep *mesh.Endpoint) { ep.Address = "10.99.0.1" })
			},
			want: []string{"upsert endpoints svc-0042", "upsert endpoints svc-0042/v1"},
		},
		{
			name: "one endpoint unhealthy",
			mutate: func(st *mesh.State) *mesh.State {
				return withEndpoint(st, "svc-0007", "svc-0007-8", func(ep *mesh.Endpoint) { ep.Health = mesh.HealthUnhealthy })
			},
			want: []string{"upsert endpoints svc-0007", "upsert endpoints svc-0007/v2"},
		},
		{
			name: "endpoint set rebuilt with equal content",
			mutate: func(st *mesh.State) *mesh.State {
				return withEndpoint(st, "svc-0100", "svc-0100-0", func(*mesh.Endpoint) {})
			},
			want: nil,
		},
		{
			name: "no change",
			mutate: func(st *mesh.State) *mesh.State {
				return nextState(st)
			},
			want: nil,
		},
		{
			name: "service connect timeout changed",
			mutate: func(st *mesh.State) *mesh.State {
				next := nextState(st)
				svc := *st.Services["svc-0500"]
				svc.ConnectTimeout = mesh.Duration{Duration: time.Second}
				next.Services["svc-0500"] = &svc
				return next
			},
			want: []string{"upsert cluster svc-0500", "upsert cluster svc-0500/v1", "upsert cluster svc-0500/v2"},
		},
		{
			name: "service subset removed",
			mutate: func(st *mesh.State) *mesh.State {
				next := nextState(st)
				svc := *st.Services["svc-0500"]
				svc.Subsets = svc.Subsets[:1]
				next.Services["svc-0500"] = &svc
				return next
			},
			want: []string{"remove cluster svc-0500/v2", "remove endpoints svc-0500/v2"},
		},
		{
			name: "service removed",
			mutate: func(st *mesh.State) *mesh.State {
				next := nextState(st)
				delete(next.Services, "svc-0001")
				delete(next.Endpoints, "svc-0001")
				return next
			},
			want: []string{
				"remove cluster svc-0001", "remove cluster svc-0001/v1", "remove cluster svc-0001/v2",
				"remove endpoints svc-0001", "remove endpoints svc-0001/v1", "remove endpoints svc-0001/v2",
				"remove listener svc-0001", "remove route svc-0001",
				"upsert listener outbound_0.0.0.0_8001", "upsert route 8001",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st = tc.mutate(st)
			ch, err := tr.Update(st)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if got := changedNames(ch); !slices.Equal(got, tc.want) {
				t.Errorf("changes = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("matches a full translation", func(t *testing.T) {
		fresh, _ := translateState(t, st)
		got, want := tr.Resources(), fresh.Resources()
		for _, typeURL := range translatedTypes {
			if !slices.Equal(names(got, typeURL), names(want, typeURL)) {
				t.Errorf("%s: incremental has %d resources, full translation %d", typeURL, len(got[typeURL]), len(want[typeURL]))
				continue
			}
			for name, r := range want[typeURL] {
				if got[typeURL][name].Version != r.Version || !slices.Equal(got[typeURL][name].Keys, r.Keys) {
					t.Errorf("%s %q differs from a full translation", typeURL, name)
				}
			}
		}
	})
}

func TestTranslateRemoveService(t *testing.T) {
	st := bookinfo(t)
	tr, _ := translateState(t, st)

	next := nextState(st)
	delete(next.Services, "reviews")
	delete(next.Endpoints, "reviews")
	ch, err := tr.Update(next)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	want := []string{
		"remove cluster reviews", "remove cluster reviews/v1", "remove cluster reviews/v2", "remove cluster reviews/v3",
		"remove endpoints reviews", "remove endpoints reviews/v1", "remove endpoints reviews/v2", "remove endpoints reviews/v3",
		"remove listener reviews", "remove route reviews",
		"upsert listener outbound_0.0.0.0_9080", "upsert route 9080",
	}
	if got := changedNames(ch); !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
	if err := CheckConsistent(tr.Resources()); err != nil {
		t.Errorf("after removal: %v", err)
	}

	ch, err = tr.Update(&mesh.State{Revision: next.Revision + 1})
	if err != nil {
		t.Fatalf("update to empty mesh: %v", err)
	}
	if len(ch.Upserts) != 0 {
		t.Errorf("upserts = %v, want none", changedNames(ch))
	}
	for typeURL, byName := range tr.Resources() {
		if len(byName) != 0 {
			t.Errorf("%s still holds %v", typeURL, slices.Sorted(maps.Keys(byName)))
		}
	}
}

// parseServices parses service documents given by name.
func parseServices(t *testing.T, docs map[string]string) map[string]*mesh.Service {
	t.Helper()
	out := make(map[string]*mesh.Service, len(docs))
	for name, doc := range docs {
		svc, err := mesh.ParseService(mesh.ServiceKey(testPrefix, name), name, []byte(doc))
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		out[name] = svc
	}
	return out
}

func TestTranslatePortConflict(t *testing.T) {
	st := bookinfo(t)
	tr, _ := translateState(t, st)

	next := nextState(st)
	maps.Copy(next.Services, parseServices(t, map[string]string{"redis": "protocol: tcp\nport: 9080\n"}))
	ch, err := tr.Update(next)

	var te *TranslationError
	if !errors.As(err, &te) || !errors.Is(err, ErrPortConflict) {
		t.Fatalf("error = %v, want a TranslationError wrapping ErrPortConflict", err)
	}
	wantKeys := []string{
		"/tether/services/redis", "/tether/services/details", "/tether/services/productpage",
		"/tether/services/ratings", "/tether/services/reviews",
	}
	if !slices.Equal(te.Keys, wantKeys) {
		t.Errorf("error keys = %v, want %v", te.Keys, wantKeys)
	}
	if !strings.Contains(err.Error(), "/tether/services/redis") || !strings.Contains(err.Error(), "/tether/services/reviews") {
		t.Errorf("error %q does not name both store keys", err)
	}
	want := []string{"upsert cluster redis", "upsert endpoints redis"}
	if got := changedNames(ch); !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
	res := tr.Resources()
	lis := message[*listenerv3.Listener](t, res, resourcev3.ListenerType, "outbound_0.0.0.0_9080")
	if f := lis.GetFilterChains()[0].GetFilters()[0].GetName(); f != wellknown.HTTPConnectionManager {
		t.Errorf("port 9080 filter = %q, want the HTTP connection manager", f)
	}
	if err := CheckConsistent(res); err != nil {
		t.Errorf("consistency: %v", err)
	}

	moved := nextState(next)
	maps.Copy(moved.Services, parseServices(t, map[string]string{"redis": "protocol: tcp\nport: 6379\n"}))
	ch, err = tr.Update(moved)
	if err != nil {
		t.Fatalf("update after moving redis: %v", err)
	}
	// The cluster is rebuilt from the new document but its bytes are
	// unchanged, so only the new listener is returned.
	if got, want := changedNames(ch), []string{"upsert listener outbound_0.0.0.0_6379"}; !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
}

func TestTranslateTCPServicesSharingPort(t *testing.T) {
	st := &mesh.State{Services: parseServices(t, map[string]string{
		"redis-a": "protocol: tcp\nport: 6379\n",
		"redis-b": "protocol: tcp\nport: 6379\n",
	})}
	tr := NewTranslator(TranslatorOptions{Logger: discardLogger})
	_, err := tr.Update(st)
	if !errors.Is(err, ErrPortConflict) {
		t.Fatalf("error = %v, want ErrPortConflict", err)
	}
	for _, name := range []string{"redis-a", "redis-b"} {
		if !strings.Contains(err.Error(), mesh.ServiceKey(testPrefix, name)) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if got := names(tr.Resources(), resourcev3.ListenerType); len(got) != 0 {
		t.Errorf("listeners = %v, want none", got)
	}
}

func TestTranslateServiceNamedLikePort(t *testing.T) {
	// The parser rejects such a name; the translator still guards against
	// a State built another way, such as from the last-known-good file.
	svc := &mesh.Service{Key: mesh.ServiceKey(testPrefix, "9080"), Name: "9080", Protocol: mesh.ProtocolHTTP, Port: 9080}
	st := &mesh.State{Services: map[string]*mesh.Service{"9080": svc}}
	tr := NewTranslator(TranslatorOptions{Logger: discardLogger})
	_, err := tr.Update(st)
	if !errors.Is(err, ErrNameConflict) {
		t.Fatalf("error = %v, want ErrNameConflict", err)
	}
	res := tr.Resources()
	if got, want := names(res, resourcev3.ListenerType), []string{"outbound_0.0.0.0_9080"}; !slices.Equal(got, want) {
		t.Errorf("listeners = %v, want %v", got, want)
	}
	if err := CheckConsistent(res); err != nil {
		t.Errorf("consistency: %v", err)
	}
}

func TestTranslateDuplicateAddress(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	docs := map[string]string{
		"services/web":     "port: 80\n",
		"endpoints/web/a":  "address: 10.0.0.1\nport: 8080\n",
		"endpoints/web/b":  "address: 10.0.0.1\nport: 8080\n",
		"endpoints/web/c":  "address: 10.0.0.2\nport: 8080\n",
		"endpoints/web/d6": "address: \"fd00::1\"\nport: 8080\n",
	}
	for key, doc := range docs {
		if err := b.Put(testPrefix+key, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	tr := NewTranslator(TranslatorOptions{Logger: discardLogger})
	_, err := tr.Update(b.State())
	if !errors.Is(err, ErrDuplicateAddress) {
		t.Fatalf("error = %v, want ErrDuplicateAddress", err)
	}
	for _, key := range []string{"/tether/endpoints/web/a", "/tether/endpoints/web/b"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	cla := message[*endpointv3.ClusterLoadAssignment](t, tr.Resources(), resourcev3.EndpointType, "web")
	if got, want := claAddresses(cla), []string{"10.0.0.1:8080", "10.0.0.2:8080", "fd00::1:8080"}; !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
}

func TestTranslateProtocols(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, res map[string]map[string]*Resource)
	}{
		{
			name: "grpc",
			doc: `protocol: grpc
port: 50051
routes:
  - backends: [{}]
    timeout: 2s
    retries: {attempts: 3}
`,
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				checkHTTP2Options(t, message[*clusterv3.Cluster](t, res, resourcev3.ClusterType, "svc"))
				action := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "svc").GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
				if on := action.GetRetryPolicy().GetRetryOn(); on != defaultGRPCRetryOn {
					t.Errorf("retry_on = %q, want %q", on, defaultGRPCRetryOn)
				}
				if d := action.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration(); d != 2*time.Second {
					t.Errorf("max_stream_duration = %v, want 2s", d)
				}
				if c := action.GetCluster(); c != "svc" {
					t.Errorf("cluster = %q, want svc", c)
				}
			},
		},
		{
			name: "http2",
			doc:  "protocol: http2\nport: 8443\nconnectTimeout: 250ms\n",
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				c := message[*clusterv3.Cluster](t, res, resourcev3.ClusterType, "svc")
				checkHTTP2Options(t, c)
				if d := c.GetConnectTimeout().AsDuration(); d != 250*time.Millisecond {
					t.Errorf("connect_timeout = %v, want 250ms", d)
				}
			},
		},
		{
			name: "random load balancing",
			doc:  "port: 80\nloadBalancing: random\n",
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				c := message[*clusterv3.Cluster](t, res, resourcev3.ClusterType, "svc")
				var got []string
				for _, p := range c.GetLoadBalancingPolicy().GetPolicies() {
					got = append(got, p.GetTypedExtensionConfig().GetName())
				}
				want := []string{"envoy.load_balancing_policies.random", "envoy.load_balancing_policies.wrr_locality"}
				if !slices.Equal(got, want) {
					t.Errorf("policies = %v, want %v", got, want)
				}
				if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
					t.Errorf("lb_policy = %v, want the default ROUND_ROBIN", c.GetLbPolicy())
				}
			},
		},
		{
			name: "ring hash load balancing",
			doc:  "port: 80\nloadBalancing: ring_hash\n",
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				if p := message[*clusterv3.Cluster](t, res, resourcev3.ClusterType, "svc").GetLbPolicy(); p != clusterv3.Cluster_RING_HASH {
					t.Errorf("lb_policy = %v, want RING_HASH", p)
				}
			},
		},
		{
			name: "path and header matches",
			doc: `port: 80
routes:
  - match:
      path: {exact: /healthz}
      headers:
        - {name: x-canary, present: true, invert: true}
    backends: [{}]
  - match:
      path: {regex: "/api/v[0-9]+/.*"}
      headers:
        - {name: x-user, prefix: adm}
        - {name: x-trace, regex: "[a-f0-9]+"}
    backends: [{}]
  - match:
      path: {prefix: /static}
    backends: [{}]
`,
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				routes := message[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "svc").GetVirtualHosts()[0].GetRoutes()
				if len(routes) != 3 {
					t.Fatalf("got %d routes, want 3", len(routes))
				}
				m0, m1, m2 := routes[0].GetMatch(), routes[1].GetMatch(), routes[2].GetMatch()
				if m0.GetPath() != "/healthz" {
					t.Errorf("route 0 path = %v, want exact /healthz", m0.GetPathSpecifier())
				}
				if h := m0.GetHeaders()[0]; !h.GetPresentMatch() || !h.GetInvertMatch() {
					t.Errorf("route 0 header = %v, want inverted present match", h)
				}
				if m1.GetSafeRegex().GetRegex() != "/api/v[0-9]+/.*" {
					t.Errorf("route 1 path = %v, want safe_regex", m1.GetPathSpecifier())
				}
				if h := m1.GetHeaders(); h[0].GetStringMatch().GetPrefix() != "adm" || h[1].GetStringMatch().GetSafeRegex().GetRegex() != "[a-f0-9]+" {
					t.Errorf("route 1 headers = %v, want prefix adm and regex [a-f0-9]+", h)
				}
				if m2.GetPrefix() != "/static" {
					t.Errorf("route 2 path = %v, want prefix /static", m2.GetPathSpecifier())
				}
			},
		},
		{
			name: "tcp weighted subsets",
			doc: `protocol: tcp
port: 5432
subsets:
  - {name: primary, labels: {role: primary}}
  - {name: replica, labels: {role: replica}}
routes:
  - backends:
      - {subset: primary, weight: 70}
      - {subset: replica, weight: 30}
`,
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				lis := message[*listenerv3.Listener](t, res, resourcev3.ListenerType, "outbound_0.0.0.0_5432")
				proxy := unpack[*tcpproxyv3.TcpProxy](t, lis.GetFilterChains()[0].GetFilters()[0].GetTypedConfig())
				var got []string
				for _, cw := range proxy.GetWeightedClusters().GetClusters() {
					got = append(got, fmt.Sprintf("%s=%d", cw.GetName(), cw.GetWeight()))
				}
				if want := []string{"svc/primary=70", "svc/replica=30"}; !slices.Equal(got, want) {
					t.Errorf("weighted clusters = %v, want %v", got, want)
				}
			},
		},
		{
			name: "no endpoints",
			doc:  "port: 80\n",
			check: func(t *testing.T, res map[string]map[string]*Resource) {
				cla := message[*endpointv3.ClusterLoadAssignment](t, res, resourcev3.EndpointType, "svc")
				if cla.GetClusterName() != "svc" || len(cla.GetEndpoints()) != 0 {
					t.Errorf("assignment = %v, want cluster svc with no endpoints", cla)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &mesh.State{Services: parseServices(t, map[string]string{"svc": tc.doc})}
			tr, _ := translateState(t, st)
			res := tr.Resources()
			for _, byName := range res {
				for _, r := range byName {
					if err := ValidateResource(r); err != nil {
						t.Errorf("invalid: %v", err)
					}
				}
			}
			if err := CheckConsistent(res); err != nil {
				t.Errorf("consistency: %v", err)
			}
			tc.check(t, res)
		})
	}
}

func checkHTTP2Options(t *testing.T, c *clusterv3.Cluster) {
	t.Helper()
	typed := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if typed == nil {
		t.Fatalf("cluster %q has no %s", c.GetName(), httpProtocolOptionsKey)
	}
	opts := unpack[*upstreamhttpv3.HttpProtocolOptions](t, typed)
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("protocol options = %v, want explicit http2", opts)
	}
}

func TestTranslateInvalidResourceNotEmitted(t *testing.T) {
	// The parser rejects an empty header name, so the Service is built by
	// hand to reach the translator's own validation.
	svc := &mesh.Service{
		Key: mesh.ServiceKey(testPrefix, "svc"), Name: "svc", Protocol: mesh.ProtocolHTTP, Port: 80,
		Routes: []mesh.Route{{
			Match:    mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "", Exact: "x"}}},
			Backends: []mesh.Backend{{}},
		}},
	}
	tr := NewTranslator(TranslatorOptions{Logger: discardLogger})
	ch, err := tr.Update(&mesh.State{Services: map[string]*mesh.Service{"svc": svc}})

	if !errors.Is(err, ErrInvalidResource) {
		t.Fatalf("error = %v, want ErrInvalidResource", err)
	}
	if !strings.Contains(err.Error(), svc.Key) {
		t.Errorf("error %q does not name key %s", err, svc.Key)
	}
	for _, r := range ch.Upserts[resourcev3.RouteType] {
		if r.Name == "svc" || r.Name == "80" {
			t.Errorf("invalid route configuration %q was returned", r.Name)
		}
	}

	res := tr.Resources()
	if got, want := names(res, resourcev3.ClusterType), []string{"svc"}; !slices.Equal(got, want) {
		t.Errorf("clusters = %v, want %v", got, want)
	}
	if got := names(res, resourcev3.ListenerType); len(got) != 0 {
		t.Errorf("listeners = %v, want none: their route configurations are missing", got)
	}
	if err := CheckConsistent(res); err != nil {
		t.Errorf("consistency: %v", err)
	}
}

func TestTranslateBindAddress(t *testing.T) {
	st := &mesh.State{Services: parseServices(t, map[string]string{"svc": "port: 80\n"})}
	tr := NewTranslator(TranslatorOptions{Logger: discardLogger, BindAddress: "127.0.0.1"})
	if _, err := tr.Update(st); err != nil {
		t.Fatal(err)
	}
	lis := message[*listenerv3.Listener](t, tr.Resources(), resourcev3.ListenerType, "outbound_127.0.0.1_80")
	if a := lis.GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("address = %q, want 127.0.0.1", a)
	}
}

func BenchmarkTranslateOneEndpointChange(b *testing.B) {
	base := syntheticMesh(1000, 10)
	changed := withEndpoint(base, "svc-0500", "svc-0500-3", func(ep *mesh.Endpoint) { ep.Address = "10.99.0.1" })
	tr, _ := translateState(b, base)
	states := [2]*mesh.State{changed, base}

	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ch, err := tr.Update(states[i%2])
		if err != nil {
			b.Fatal(err)
		}
		if n := len(ch.Upserts[resourcev3.EndpointType]); n != 2 {
			b.Fatalf("got %d assignments, want 2", n)
		}
	}
}

func BenchmarkTranslateColdStart(b *testing.B) {
	st := syntheticMesh(1000, 10)
	b.ReportAllocs()
	for b.Loop() {
		tr := NewTranslator(TranslatorOptions{Logger: discardLogger})
		if _, err := tr.Update(st); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTranslateDeferredPutsMatchSequential checks that a large Update,
// which prepares resources on every core, yields exactly the resources of
// small Updates that prepare them one at a time.
func TestTranslateDeferredPutsMatchSequential(t *testing.T) {
	full := syntheticMesh(2*deferPutsMin, 4)

	atOnce := NewTranslator(TranslatorOptions{Logger: discardLogger})
	if _, err := atOnce.Update(full); err != nil {
		t.Fatal(err)
	}

	stepwise := NewTranslator(TranslatorOptions{Logger: discardLogger})
	st := &mesh.State{Services: map[string]*mesh.Service{}, Endpoints: map[string]*mesh.EndpointSet{}}
	for _, name := range full.ServiceNames() {
		next := &mesh.State{Services: maps.Clone(st.Services), Endpoints: maps.Clone(st.Endpoints)}
		next.Services[name] = full.Services[name]
		next.Endpoints[name] = full.Endpoints[name]
		if _, err := stepwise.Update(next); err != nil {
			t.Fatal(err)
		}
		st = next
	}

	want, got := stepwise.Resources(), atOnce.Resources()
	for typeURL, byName := range want {
		if len(got[typeURL]) != len(byName) {
			t.Errorf("%s: %d resources at once, %d stepwise", typeURL, len(got[typeURL]), len(byName))
		}
		for name, r := range byName {
			if g := got[typeURL][name]; g == nil || g.Version != r.Version || g.NamedOnly != r.NamedOnly {
				t.Errorf("%s %s differs between the two paths", typeURL, name)
			}
		}
	}
}
