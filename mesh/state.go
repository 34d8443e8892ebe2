package mesh

import (
	"maps"
	"slices"
)

// State is one complete, validated view of the mesh. A State is immutable
// once built: readers on any goroutine may use it without locks, and the
// next State shares every unchanged *Service and *EndpointSet with it, so a
// consumer finds what changed by comparing pointers.
type State struct {
	// Revision is the store revision (etcd) or index (Consul) the state
	// reflects.
	Revision int64
	// Services maps a service name to its document.
	Services map[string]*Service
	// Endpoints maps a service name to its endpoints. A service may have
	// endpoints before its document exists, and the other way round.
	Endpoints map[string]*EndpointSet
	// Invalid maps the store key of every document that failed to parse to
	// its error. The last good value of such a key, if any, is still in
	// Services or Endpoints.
	Invalid map[string]error
}

// EndpointSet is the endpoints of one service, keyed by instance name.
// It is immutable once published in a State.
type EndpointSet struct {
	Service   string
	Instances map[string]*Endpoint
}

// SortedInstances returns the instance names in order.
func (s *EndpointSet) SortedInstances() []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.Instances))
}

// ServiceNames returns the names of all services with a document, in order.
func (s *State) ServiceNames() []string {
	return slices.Sorted(maps.Keys(s.Services))
}

// EndpointCount returns the number of endpoints over all services.
func (s *State) EndpointCount() int {
	n := 0
	for _, set := range s.Endpoints {
		n += len(set.Instances)
	}
	return n
}
