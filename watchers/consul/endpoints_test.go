package consul

import (
	"reflect"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/mesh"
)

func entry(node, id, address string, status string, mutate ...func(*api.ServiceEntry)) *api.ServiceEntry {
	e := &api.ServiceEntry{
		Node: &api.Node{Node: node, Address: "192.0.2.1", Datacenter: "dc1"},
		Service: &api.AgentService{
			ID: id, Service: "web", Address: address, Port: 8080,
			Weights: api.AgentWeights{Passing: 3, Warning: 1},
		},
		Checks: api.HealthChecks{{CheckID: "check", Status: status}},
	}
	for _, m := range mutate {
		m(e)
	}
	return e
}

func TestConvertEntriesFilters(t *testing.T) {
	proxy := func(e *api.ServiceEntry) { e.Service.Kind = api.ServiceKindConnectProxy }
	entries := []*api.ServiceEntry{
		entry("n1", "passing", "10.0.0.1", api.HealthPassing),
		entry("n1", "warning", "10.0.0.2", api.HealthWarning),
		entry("n1", "critical", "10.0.0.3", api.HealthCritical),
		entry("n1", "maintenance", "10.0.0.4", api.HealthMaint),
		entry("n1", "proxy", "10.0.0.5", api.HealthPassing, proxy),
		nil,
	}
	tests := []struct {
		name           string
		includeWarning bool
		want           []string
	}{
		{name: "passing only", want: []string{"passing"}},
		{name: "with warning", includeWarning: true, want: []string{"passing", "warning"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convertEntries("web", entries, tt.includeWarning)
			set := &mesh.EndpointSet{Instances: res.instances}
			if got := set.SortedInstances(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("instances %v, expected %v", got, tt.want)
			}
			if len(res.invalid) != 0 {
				t.Errorf("invalid instances %v, expected none", res.invalid)
			}
		})
	}
}

func TestConvertEntriesMapping(t *testing.T) {
	e := entry("n1", "web-1", "", api.HealthWarning, func(e *api.ServiceEntry) {
		e.Service.Tags = []string{"v2", "canary", ""}
		e.Service.Meta = map[string]string{"version": "v2", "canary": "yes", "zone": "az-b"}
		e.Node.Meta = map[string]string{"zone": "az-a", "region": "eu-west", "sub_zone": "rack-1"}
	})
	res := convertEntries("web", []*api.ServiceEntry{e}, true)
	ep := res.instances["web-1"]
	if ep == nil {
		t.Fatalf("web-1 missing; invalid: %v", res.invalid)
	}
	if ep.Address != "192.0.2.1" {
		t.Errorf("address %s, expected the node address 192.0.2.1", ep.Address)
	}
	wantLabels := map[string]string{"v2": "", "canary": "yes", "version": "v2", "zone": "az-b"}
	if !reflect.DeepEqual(ep.Labels, wantLabels) {
		t.Errorf("labels %v, expected %v", ep.Labels, wantLabels)
	}
	wantLocality := mesh.Locality{Region: "eu-west", Zone: "az-b", SubZone: "rack-1"}
	if ep.Locality != wantLocality {
		t.Errorf("locality %+v, expected %+v", ep.Locality, wantLocality)
	}
	if ep.Weight != 1 {
		t.Errorf("weight %d, expected the warning weight 1", ep.Weight)
	}
	if ep.Health != mesh.HealthHealthy {
		t.Errorf("health %q, expected %q", ep.Health, mesh.HealthHealthy)
	}
	if want := instanceKey("web", "web-1"); ep.Key != want {
		t.Errorf("key %q, expected %q", ep.Key, want)
	}
}

func TestConvertEntriesLocality(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*api.ServiceEntry)
		want   mesh.Locality
	}{
		{name: "datacenter as region", mutate: func(*api.ServiceEntry) {}, want: mesh.Locality{Region: "dc1"}},
		{
			name: "service locality first",
			mutate: func(e *api.ServiceEntry) {
				e.Service.Locality = &api.Locality{Region: "r-svc", Zone: "z-svc"}
				e.Node.Locality = &api.Locality{Region: "r-node", Zone: "z-node"}
			},
			want: mesh.Locality{Region: "r-svc", Zone: "z-svc"},
		},
		{
			name: "node locality before meta",
			mutate: func(e *api.ServiceEntry) {
				e.Node.Locality = &api.Locality{Region: "r-node", Zone: "z-node"}
				e.Service.Meta = map[string]string{"region": "r-meta", "zone": "z-meta"}
			},
			want: mesh.Locality{Region: "r-node", Zone: "z-node"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convertEntries("web", []*api.ServiceEntry{entry("n1", "web-1", "10.0.0.1", api.HealthPassing, tt.mutate)}, false)
			if got := res.instances["web-1"].Locality; got != tt.want {
				t.Errorf("locality %+v, expected %+v", got, tt.want)
			}
		})
	}
}

func TestConvertEntriesNames(t *testing.T) {
	entries := []*api.ServiceEntry{
		entry("n1", "web", "10.0.0.1", api.HealthPassing),
		entry("n2", "web", "10.0.0.2", api.HealthPassing),
		entry("n2", "web-solo", "10.0.0.3", api.HealthPassing),
	}
	res := convertEntries("web", entries, false)
	set := &mesh.EndpointSet{Instances: res.instances}
	want := []string{"web-solo", "web@n1", "web@n2"}
	if got := set.SortedInstances(); !reflect.DeepEqual(got, want) {
		t.Errorf("instances %v, expected %v", got, want)
	}
}

func TestConvertEntriesInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*api.ServiceEntry)
		field  string
	}{
		{name: "host name address", mutate: func(e *api.ServiceEntry) { e.Service.Address = "web.internal" }, field: "address"},
		{name: "port 0", mutate: func(e *api.ServiceEntry) { e.Service.Port = 0 }, field: "port"},
		{name: "port out of range", mutate: func(e *api.ServiceEntry) { e.Service.Port = 70000 }, field: "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convertEntries("web", []*api.ServiceEntry{entry("n1", "web-1", "10.0.0.1", api.HealthPassing, tt.mutate)}, false)
			if len(res.instances) != 0 {
				t.Errorf("instances %v, expected none", res.instances)
			}
			err := res.invalid["web-1"]
			if err == nil {
				t.Fatal("web-1 not reported invalid")
			}
			if got := invalidFields(err); !reflect.DeepEqual(got, []string{tt.field}) {
				t.Errorf("invalid fields %v, expected [%s]", got, tt.field)
			}
		})
	}
}

func TestEntryWeightClamped(t *testing.T) {
	tests := []struct {
		passing int
		want    uint32
	}{{0, 1}, {1, 1}, {50, 50}, {500, 128}}
	for _, tt := range tests {
		e := entry("n1", "web-1", "10.0.0.1", api.HealthPassing)
		e.Service.Weights.Passing = tt.passing
		if got := entryWeight(e); got != tt.want {
			t.Errorf("weight for Passing %d: %d, expected %d", tt.passing, got, tt.want)
		}
	}
}
