package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/internal/consultest"
	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
	consulwatch "github.com/tether-mesh/tether/watchers/consul"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
	"github.com/tether-mesh/tether/xds"
)

// parityCase is one mesh written to both stores: service documents to KV,
// endpoints to etcd as endpoint documents and to Consul as catalog
// registrations that map to the same mesh.Endpoint values.
type parityCase struct {
	name string
	// services maps a service name to its document.
	services  map[string]string
	endpoints []parityEndpoint
}

// parityEndpoint is one instance with the endpoint document etcd stores.
type parityEndpoint struct {
	service, instance string
	doc               []byte
}

// parityCases returns the demo mesh with fixed addresses, the schema
// examples in docs/examples, and a mesh that uses tag labels, sub-zones
// and weights.
func parityCases(t *testing.T) []parityCase {
	t.Helper()
	demoCase := parityCase{name: "demo mesh", services: demo.Services()}
	for i, inst := range demo.Instances() {
		doc, err := demo.EndpointDocument(inst, fmt.Sprintf("10.0.0.%d:%d", i+1, demo.Port))
		if err != nil {
			t.Fatal(err)
		}
		demoCase.endpoints = append(demoCase.endpoints, parityEndpoint{inst.Service, inst.Name, doc})
	}

	examples := parityCase{
		name:     "schema examples",
		services: map[string]string{"reviews": readFile(t, "../docs/examples/reviews.yaml")},
		endpoints: []parityEndpoint{{"reviews", "reviews-v2-7d9f8",
			[]byte(readFile(t, "../docs/examples/reviews-v2.endpoint.yaml"))}},
	}

	mapping := parityCase{
		name: "tags, sub-zones and weights",
		services: map[string]string{"api": `protocol: http
port: 8080
subsets:
  - {name: stable, labels: {version: v1}}
  - {name: canary, labels: {canary: ""}}
routes:
  - backends: [{subset: stable, weight: 90}, {subset: canary, weight: 10}]
`},
		endpoints: []parityEndpoint{
			{"api", "api-1", []byte(`{"address": "10.1.0.1", "port": 8080, "labels": {"version": "v1"},
				"locality": {"region": "eu", "zone": "eu-1", "subZone": "rack-1"}, "weight": 5}`)},
			{"api", "api-2", []byte(`{"address": "10.1.0.2", "port": 8080, "labels": {"version": "v1"},
				"locality": {"region": "eu", "zone": "eu-1", "subZone": "rack-2"}, "weight": 128}`)},
			{"api", "api-3", []byte(`{"address": "fd00::3", "port": 8081, "labels": {"version": "v2", "canary": ""},
				"locality": {"region": "us"}}`)},
		},
	}
	return []parityCase{demoCase, examples, mapping}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// parityEtcd is an embedded etcd server whose prefix each case refills.
type parityEtcd struct {
	cli *clientv3.Client
}

func startParityEtcd(t *testing.T) *parityEtcd {
	t.Helper()
	srv, err := demo.StartEtcd(demo.EtcdConfig{
		Dir: t.TempDir(), ClientAddr: freeAddr(t), PeerAddr: freeAddr(t), NoFsync: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &parityEtcd{cli: newEtcdClient(t, srv.Clients[0].Addr().String())}
}

// state replaces everything under the etcd prefix with the case's
// documents and returns the first complete State a fresh etcd watcher
// publishes.
func (p *parityEtcd) state(t *testing.T, tc parityCase) *mesh.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if _, err := p.cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		t.Fatalf("clear %s: %v", prefix, err)
	}
	for name, doc := range tc.services {
		if _, err := p.cli.Put(ctx, mesh.ServiceKey(prefix, name), doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, ep := range tc.endpoints {
		if _, err := p.cli.Put(ctx, mesh.EndpointKey(prefix, ep.service, ep.instance), string(ep.doc)); err != nil {
			t.Fatal(err)
		}
	}

	w, err := etcdwatch.New(etcdwatch.Config{Client: p.cli, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return firstState(t, "etcd", w, tc)
}

// consulState clears Consul KV under the prefix, writes the case's
// documents and registers its instances in the catalog, then returns the
// first complete State a fresh Consul watcher publishes. The catalog
// nodes are deregistered when the subtest ends.
func consulState(t *testing.T, agent *consultest.Agent, tc parityCase) *mesh.State {
	t.Helper()
	client := agent.Client()
	if _, err := client.KV().DeleteTree(consulPrefix, nil); err != nil {
		t.Fatalf("clear consul KV %s: %v", consulPrefix, err)
	}
	for name, doc := range tc.services {
		pair := &api.KVPair{Key: mesh.ServiceKey(consulPrefix, name), Value: []byte(doc)}
		if _, err := client.KV().Put(pair, nil); err != nil {
			t.Fatalf("put consul key %s: %v", pair.Key, err)
		}
	}
	registerCatalog(t, client, tc.endpoints)

	w, err := consulwatch.New(consulwatch.Config{Address: agent.Addr(), Prefix: consulPrefix})
	if err != nil {
		t.Fatal(err)
	}
	return firstState(t, "consul", w, tc)
}

// registerCatalog registers each endpoint as a catalog service instance
// whose conversion gives back the endpoint of the document:
//   - the service ID is the instance name, and IDs are unique, so the
//     watcher names the instance by its ID alone;
//   - labels with an empty value become tags, the others service meta;
//   - the locality goes into the node meta keys region, zone and sub_zone
//     of a node per locality, because service meta would also become
//     labels and Consul 1.14 has no Locality field;
//   - the weight goes into Weights.Passing;
//   - one check, passing.
func registerCatalog(t *testing.T, client *api.Client, endpoints []parityEndpoint) {
	t.Helper()
	nodes := map[mesh.Locality]string{}
	for _, pe := range endpoints {
		ep, err := mesh.ParseEndpoint(mesh.EndpointKey(prefix, pe.service, pe.instance), pe.doc)
		if err != nil {
			t.Fatalf("endpoint document of %s: %v", pe.instance, err)
		}
		if ep.Locality.Region == "" {
			t.Fatalf("test case: endpoint %s needs a region, or Consul's datacenter takes its place", pe.instance)
		}
		node, ok := nodes[ep.Locality]
		if !ok {
			node = fmt.Sprintf("parity-node-%d", len(nodes)+1)
			nodes[ep.Locality] = node
			t.Cleanup(func() {
				if _, err := client.Catalog().Deregister(&api.CatalogDeregistration{Node: node}, nil); err != nil {
					t.Errorf("deregister consul node %s: %v", node, err)
				}
			})
		}

		svc := &api.AgentService{
			ID:      pe.instance,
			Service: pe.service,
			Address: ep.Address,
			Port:    int(ep.Port),
			Meta:    map[string]string{},
			Weights: api.AgentWeights{Passing: int(ep.Weight), Warning: int(ep.Weight)},
		}
		for _, name := range slices.Sorted(maps.Keys(ep.Labels)) {
			if value := ep.Labels[name]; value == "" {
				svc.Tags = append(svc.Tags, name)
			} else {
				svc.Meta[name] = value
			}
		}
		reg := &api.CatalogRegistration{
			Node:     node,
			Address:  "127.0.0.1",
			NodeMeta: localityMeta(ep.Locality),
			Service:  svc,
			Check: &api.AgentCheck{
				Node: node, CheckID: "service:" + pe.instance, Name: "parity",
				Status: api.HealthPassing, ServiceID: pe.instance,
			},
		}
		if _, err := client.Catalog().Register(reg, nil); err != nil {
			t.Fatalf("register %s in the consul catalog: %v", pe.instance, err)
		}
	}
}

// localityMeta returns the node meta that the Consul watcher reads a
// locality from.
func localityMeta(l mesh.Locality) map[string]string {
	meta := map[string]string{}
	for key, value := range map[string]string{"region": l.Region, "zone": l.Zone, "sub_zone": l.SubZone} {
		if value != "" {
			meta[key] = value
		}
	}
	return meta
}

// firstState runs w until it publishes a State with every service and
// endpoint of tc, stops it, and returns that State.
func firstState(t *testing.T, source string, w watchers.Watcher, tc parityCase) *mesh.State {
	t.Helper()
	var (
		mu   sync.Mutex
		last *mesh.State
	)
	changed := make(chan struct{}, 1)
	publish := func(s *mesh.State) {
		mu.Lock()
		last = s
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, publish) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s watcher Run: %v", source, err)
		}
	}()

	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		mu.Lock()
		s := last
		mu.Unlock()
		if s != nil && len(s.Services) == len(tc.services) && s.EndpointCount() == len(tc.endpoints) {
			return s
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("%s watcher published no state with %d services and %d endpoints within %s; last: %s",
				source, len(tc.services), len(tc.endpoints), waitTimeout, summarize(s))
			return nil
		}
	}
}

func summarize(s *mesh.State) string {
	if s == nil {
		return "none"
	}
	eps := map[string][]string{}
	for name, set := range s.Endpoints {
		eps[name] = set.SortedInstances()
	}
	return fmt.Sprintf("services %v, endpoints %v, invalid %v", s.ServiceNames(), eps, s.Invalid)
}

// compareStates checks that both States hold the same services and the
// same endpoints under the same instance names. Key fields are left out,
// because each store has its own key layout.
func compareStates(t *testing.T, fromEtcd, fromConsul *mesh.State) {
	t.Helper()
	if len(fromEtcd.Invalid) > 0 || len(fromConsul.Invalid) > 0 {
		t.Errorf("invalid documents: etcd %v, consul %v; want none", fromEtcd.Invalid, fromConsul.Invalid)
	}
	if e, c := fromEtcd.ServiceNames(), fromConsul.ServiceNames(); !slices.Equal(e, c) {
		t.Errorf("services: etcd %v, consul %v", e, c)
	}
	for name, svc := range fromEtcd.Services {
		other := fromConsul.Services[name]
		if other == nil {
			continue
		}
		a, b := *svc, *other
		a.Key, b.Key = "", ""
		if !reflect.DeepEqual(a, b) {
			t.Errorf("service %s: etcd %+v, consul %+v", name, a, b)
		}
	}
	for name, set := range fromEtcd.Endpoints {
		other := fromConsul.Endpoints[name]
		if e, c := set.SortedInstances(), other.SortedInstances(); !slices.Equal(e, c) {
			t.Errorf("instances of %s: etcd %v, consul %v", name, e, c)
			continue
		}
		for inst, ep := range set.Instances {
			a, b := *ep, *other.Instances[inst]
			a.Key, b.Key = "", ""
			if !reflect.DeepEqual(a, b) {
				t.Errorf("endpoint %s/%s: etcd %+v, consul %+v", name, inst, a, b)
			}
		}
	}
	if len(fromConsul.Endpoints) != len(fromEtcd.Endpoints) {
		t.Errorf("services with endpoints: etcd %d, consul %d", len(fromEtcd.Endpoints), len(fromConsul.Endpoints))
	}
}

// translate returns the resources a fresh translator makes of st.
func translate(t *testing.T, st *mesh.State) map[string]map[string]*xds.Resource {
	t.Helper()
	tr := xds.NewTranslator(xds.TranslatorOptions{Logger: slog.New(slog.DiscardHandler)})
	if _, err := tr.Update(st); err != nil {
		t.Fatalf("translate: %v", err)
	}
	return tr.Resources()
}

// compareResources checks every resource of both translations, by type and
// name: the bytes sent over xDS (type URL and value of the Any), the
// version and NamedOnly must be identical. Keys, which the server only
// reports with a NACK and never sends, hold store keys; they must be equal
// once each store's prefix is removed.
func compareResources(t *testing.T, fromEtcd, fromConsul map[string]map[string]*xds.Resource) {
	t.Helper()
	types := slices.Sorted(maps.Keys(fromEtcd))
	if c := slices.Sorted(maps.Keys(fromConsul)); !slices.Equal(types, c) {
		t.Fatalf("type URLs: etcd %v, consul %v", types, c)
	}
	compared := 0
	for _, typeURL := range types {
		short := typeURL[strings.LastIndex(typeURL, ".")+1:]
		names := slices.Sorted(maps.Keys(fromEtcd[typeURL]))
		if c := slices.Sorted(maps.Keys(fromConsul[typeURL])); !slices.Equal(names, c) {
			t.Errorf("%s names: etcd %v, consul %v", short, names, c)
			continue
		}
		for _, name := range names {
			e, c := fromEtcd[typeURL][name], fromConsul[typeURL][name]
			compared++
			if e.Any.GetTypeUrl() != c.Any.GetTypeUrl() || !bytes.Equal(e.Any.GetValue(), c.Any.GetValue()) {
				t.Errorf("%s %s: marshalled bytes differ (%d bytes from etcd, %d from consul)",
					short, name, len(e.Any.GetValue()), len(c.Any.GetValue()))
			}
			if e.Version != c.Version {
				t.Errorf("%s %s: version etcd %s, consul %s", short, name, e.Version, c.Version)
			}
			if e.NamedOnly != c.NamedOnly {
				t.Errorf("%s %s: NamedOnly etcd %v, consul %v", short, name, e.NamedOnly, c.NamedOnly)
			}
			if ek, ck := trimKeys(e.Keys, prefix), trimKeys(c.Keys, consulPrefix); !slices.Equal(ek, ck) {
				t.Errorf("%s %s: keys etcd %v, consul %v, which differ beyond the prefix", short, name, e.Keys, c.Keys)
			}
		}
	}
	if compared == 0 {
		t.Error("the translations hold no resources to compare")
	}
	t.Logf("%d resources of %d types are identical", compared, len(types))
}

func trimKeys(keys []string, prefix string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, prefix)
	}
	return out
}
