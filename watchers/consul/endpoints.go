package consul

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/mesh"
)

// keyPrefix starts the State.Invalid keys of catalog entries, so that they
// never collide with KV keys.
const keyPrefix = "consul:catalog/"

// catalogKey returns the State.Invalid key of a service in the catalog.
func catalogKey(service string) string { return keyPrefix + service }

// instanceKey returns the State.Invalid key of one instance of a service.
func instanceKey(service, instance string) string { return keyPrefix + service + "/" + instance }

// healthResult is one health response turned into endpoints.
type healthResult struct {
	// instances maps an instance name to its endpoint.
	instances map[string]*mesh.Endpoint
	// invalid maps the name of each instance that is not a valid endpoint
	// to its error.
	invalid map[string]error
}

// convertEntries turns the instances of service that Consul returned into
// endpoints, keeping those with a passing aggregated status, and those in
// warning when includeWarning is set.
func convertEntries(service string, entries []*api.ServiceEntry, includeWarning bool) healthResult {
	res := healthResult{instances: make(map[string]*mesh.Endpoint), invalid: make(map[string]error)}
	kept := make([]*api.ServiceEntry, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil || e.Service.Kind != api.ServiceKindTypical {
			continue
		}
		switch e.Checks.AggregatedStatus() {
		case api.HealthPassing:
		case api.HealthWarning:
			if !includeWarning {
				continue
			}
		default:
			continue
		}
		kept = append(kept, e)
	}

	names := instanceNames(kept)
	for i, e := range kept {
		ep, err := convertEntry(instanceKey(service, names[i]), e)
		if err != nil {
			res.invalid[names[i]] = err
			continue
		}
		res.instances[names[i]] = ep
	}
	return res
}

// instanceNames returns the instance name of each entry: its service ID,
// or <service ID>@<node> when the ID is registered on several nodes.
// Service IDs are unique per agent only.
func instanceNames(entries []*api.ServiceEntry) []string {
	count := make(map[string]int, len(entries))
	for _, e := range entries {
		count[e.Service.ID]++
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Service.ID
		if count[e.Service.ID] > 1 {
			names[i] = e.Service.ID + "@" + e.Node.Node
		}
	}
	return names
}

// convertEntry turns one instance into an endpoint stored under key. The
// endpoint goes through mesh.ParseEndpoint, so that it passes the same
// checks as an endpoint document.
func convertEntry(key string, e *api.ServiceEntry) (*mesh.Endpoint, error) {
	address := e.Service.Address
	if address == "" {
		address = e.Node.Address
	}
	ep := mesh.Endpoint{
		Address:  address,
		Labels:   entryLabels(e.Service),
		Locality: entryLocality(e),
		Weight:   entryWeight(e),
	}
	if e.Service.Port > 0 && e.Service.Port <= 65535 {
		ep.Port = uint32(e.Service.Port)
	}

	doc, err := json.Marshal(ep)
	if err != nil {
		return nil, fmt.Errorf("encode endpoint %s: %w", key, err)
	}
	return mesh.ParseEndpoint(key, doc)
}

// entryLabels maps each tag to a label with an empty value, then each meta
// key to a label with its value.
func entryLabels(s *api.AgentService) map[string]string {
	if len(s.Tags) == 0 && len(s.Meta) == 0 {
		return nil
	}
	labels := make(map[string]string, len(s.Tags)+len(s.Meta))
	for _, tag := range s.Tags {
		if tag != "" {
			labels[tag] = ""
		}
	}
	for k, v := range s.Meta {
		labels[k] = v
	}
	return labels
}

// Meta keys that place an instance when Consul's Locality fields are
// empty, as they are before Consul 1.17.
const (
	metaRegion  = "region"
	metaZone    = "zone"
	metaSubZone = "sub_zone"
)

func entryLocality(e *api.ServiceEntry) mesh.Locality {
	var svc, node api.Locality
	if e.Service.Locality != nil {
		svc = *e.Service.Locality
	}
	if e.Node.Locality != nil {
		node = *e.Node.Locality
	}
	return mesh.Locality{
		Region:  firstSet(svc.Region, node.Region, e.Service.Meta[metaRegion], e.Node.Meta[metaRegion], e.Node.Datacenter),
		Zone:    firstSet(svc.Zone, node.Zone, e.Service.Meta[metaZone], e.Node.Meta[metaZone]),
		SubZone: firstSet(e.Service.Meta[metaSubZone], e.Node.Meta[metaSubZone]),
	}
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// maxWeight is the largest endpoint weight the mesh accepts.
const maxWeight = 128

func entryWeight(e *api.ServiceEntry) uint32 {
	w := e.Service.Weights.Passing
	if e.Checks.AggregatedStatus() == api.HealthWarning {
		w = e.Service.Weights.Warning
	}
	return uint32(min(max(w, 1), maxWeight))
}
