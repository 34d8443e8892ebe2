package mesh

import (
	"fmt"
	"maps"
	"strings"
)

// Store key layout under the prefix.
const (
	ServicesDir  = "services/"
	EndpointsDir = "endpoints/"
)

// KeyKind is the kind of document a store key contains.
type KeyKind int

// Kinds of store keys.
const (
	KeyUnknown KeyKind = iota
	KeyService
	KeyEndpoint
)

// ParseKey splits a store key under prefix into its kind, service name and
// instance name. Keys that fit neither layout return KeyUnknown.
func ParseKey(prefix, key string) (kind KeyKind, service, instance string) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return KeyUnknown, "", ""
	}
	if name, ok := strings.CutPrefix(rest, ServicesDir); ok && name != "" && !strings.Contains(name, "/") {
		return KeyService, name, ""
	}
	if tail, ok := strings.CutPrefix(rest, EndpointsDir); ok {
		svc, inst, ok := strings.Cut(tail, "/")
		if ok && svc != "" && inst != "" {
			return KeyEndpoint, svc, inst
		}
	}
	return KeyUnknown, "", ""
}

// ServiceKey returns the store key of a service document.
func ServiceKey(prefix, name string) string { return prefix + ServicesDir + name }

// EndpointKey returns the store key of an endpoint document.
func EndpointKey(prefix, service, instance string) string {
	return prefix + EndpointsDir + service + "/" + instance
}

// Builder applies store events one key at a time and produces States.
// A document that fails to parse is recorded in State.Invalid and leaves the
// key's last good value in place. Builder is not safe for concurrent use;
// the States it returns are.
type Builder struct {
	prefix    string
	revision  int64
	services  map[string]*Service
	endpoints map[string]*EndpointSet
	invalid   map[string]error
	// keys records every key the builder holds a value or an error for, so
	// a watcher can tell which keys vanished while it was not watching.
	keys map[string]struct{}
	// unpublished names the endpoint sets created since the last State.
	// No State shares them yet, so they are changed in place, which keeps
	// listing a service with n endpoints at O(n) rather than O(n^2).
	unpublished map[string]bool
}

// NewBuilder returns an empty Builder for keys under prefix.
func NewBuilder(prefix string) *Builder {
	return &Builder{
		prefix:    prefix,
		services:  make(map[string]*Service),
		endpoints: make(map[string]*EndpointSet),
		invalid:   make(map[string]error),
		keys:      make(map[string]struct{}),

		unpublished: make(map[string]bool),
	}
}

// Prefix returns the key prefix the builder was made for.
func (b *Builder) Prefix() string { return b.prefix }

// SetRevision records the store revision the next State reflects.
func (b *Builder) SetRevision(rev int64) { b.revision = rev }

// Put parses the value of key and applies it. On error the key's previous
// value stays, the error is recorded in State.Invalid and returned.
func (b *Builder) Put(key string, value []byte) error {
	return b.PutParsed(b.Parse(key, value))
}

// Parsed is one document parsed by Builder.Parse, ready for PutParsed.
type Parsed struct {
	key      string
	kind     KeyKind
	service  string
	instance string
	svc      *Service
	ep       *Endpoint
	err      error
}

// Parse parses the value of key without changing the builder. It only
// reads the prefix, so several goroutines may call it at once, which lets
// a watcher parse a large listing on every core.
func (b *Builder) Parse(key string, value []byte) *Parsed {
	p := &Parsed{key: key}
	p.kind, p.service, p.instance = ParseKey(b.prefix, key)
	switch p.kind {
	case KeyService:
		p.svc, p.err = ParseService(key, p.service, value)
	case KeyEndpoint:
		if !ValidName(p.service) {
			p.err = &FieldError{Key: key, Reason: fmt.Sprintf(
				"service name %q in the key is invalid: use lower-case letters, digits, '-' and '.', at most 63 characters", p.service)}
		} else {
			p.ep, p.err = ParseEndpoint(key, value)
		}
	default:
		p.err = &FieldError{Key: key, Reason: fmt.Sprintf(
			"unknown key: expected %s<name> or %s<service>/<instance> under %s", ServicesDir, EndpointsDir, b.prefix)}
	}
	return p
}

// PutParsed applies a document from Parse. On error the key's previous
// value stays, the error is recorded in State.Invalid and returned.
func (b *Builder) PutParsed(p *Parsed) error {
	b.keys[p.key] = struct{}{}
	if p.err != nil {
		b.invalid[p.key] = p.err
		return p.err
	}
	switch p.kind {
	case KeyService:
		b.services[p.service] = p.svc
	case KeyEndpoint:
		b.PutEndpoint(p.service, p.instance, p.ep)
	}
	delete(b.invalid, p.key)
	return nil
}

// Delete removes key and its value or error.
func (b *Builder) Delete(key string) {
	delete(b.keys, key)
	delete(b.invalid, key)
	switch kind, service, instance := ParseKey(b.prefix, key); kind {
	case KeyService:
		delete(b.services, service)
	case KeyEndpoint:
		b.DeleteEndpoint(service, instance)
	}
}

// PutEndpoint sets one endpoint that did not come from a key under the
// prefix, such as one from etcd's naming format or Consul's catalog. The
// endpoint must already be valid.
func (b *Builder) PutEndpoint(service, instance string, ep *Endpoint) {
	set := b.cloneSet(service)
	set.Instances[instance] = ep
	b.endpoints[service] = set
}

// DeleteEndpoint removes one endpoint.
func (b *Builder) DeleteEndpoint(service, instance string) {
	old := b.endpoints[service]
	if old == nil || old.Instances[instance] == nil {
		return
	}
	if len(old.Instances) == 1 {
		delete(b.endpoints, service)
		return
	}
	set := b.cloneSet(service)
	delete(set.Instances, instance)
	b.endpoints[service] = set
}

// SetEndpoints replaces all endpoints of a service. An empty map removes
// the service's endpoints.
func (b *Builder) SetEndpoints(service string, instances map[string]*Endpoint) {
	if len(instances) == 0 {
		delete(b.endpoints, service)
		return
	}
	b.endpoints[service] = &EndpointSet{Service: service, Instances: maps.Clone(instances)}
	b.unpublished[service] = true
}

// TrackKey records a key outside the layout, such as one in etcd's naming
// format, so that Keys lists it.
func (b *Builder) TrackKey(key string) { b.keys[key] = struct{}{} }

// SetInvalid records an error for a key whose value the caller parsed
// itself; the key's last good value stays.
func (b *Builder) SetInvalid(key string, err error) {
	b.keys[key] = struct{}{}
	b.invalid[key] = err
}

// ClearInvalid removes the error recorded for key.
func (b *Builder) ClearInvalid(key string) { delete(b.invalid, key) }

// Keys returns every key the builder holds a value or an error for.
func (b *Builder) Keys() []string { return sortedKeys(b.keys) }

// State returns the current state. Later calls to Put or Delete do not
// change it.
func (b *Builder) State() *State {
	clear(b.unpublished)
	return &State{
		Revision:  b.revision,
		Services:  maps.Clone(b.services),
		Endpoints: maps.Clone(b.endpoints),
		Invalid:   maps.Clone(b.invalid),
	}
}

// cloneSet returns a copy of the service's endpoint set that the builder
// may change, so that States already handed out stay immutable.
func (b *Builder) cloneSet(service string) *EndpointSet {
	old := b.endpoints[service]
	if old != nil && b.unpublished[service] {
		return old
	}
	set := &EndpointSet{Service: service, Instances: make(map[string]*Endpoint)}
	if old != nil {
		set.Instances = maps.Clone(old.Instances)
	}
	b.unpublished[service] = true
	return set
}
