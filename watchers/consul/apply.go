package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/mesh"
)

// applyKV makes the builder hold exactly the listed service documents. It
// reports whether any key changed.
func (r *runner) applyKV(pairs api.KVPairs) bool {
	changed := false
	listed := make(map[string]struct{}, len(pairs))
	for _, p := range pairs {
		// A key ending in "/" is a folder that the Consul UI creates.
		if p == nil || strings.HasSuffix(p.Key, "/") {
			continue
		}
		listed[p.Key] = struct{}{}
		if old, ok := r.kv[p.Key]; ok && bytes.Equal(old, p.Value) {
			continue
		}
		r.kv[p.Key] = bytes.Clone(p.Value)
		r.putDocument(p.Key, p.Value, p.ModifyIndex)
		changed = true
	}

	for _, key := range sortedNames(r.kv) {
		if _, ok := listed[key]; ok {
			continue
		}
		delete(r.kv, key)
		r.builder.Delete(key)
		r.w.metrics.Events.WithLabelValues("delete").Inc()
		r.w.log.Debug("service document deleted", "key", key)
		changed = true
	}
	return changed
}

// putDocument applies one KV document, and counts and logs it when it is
// invalid. The log names the key and the fields at fault, never the value.
func (r *runner) putDocument(key string, value []byte, modifyIndex uint64) {
	r.w.metrics.Events.WithLabelValues("put").Inc()
	var err error
	if kind, _, _ := mesh.ParseKey(r.w.cfg.Prefix, key); kind == mesh.KeyService {
		err = r.builder.Put(key, value)
	} else {
		err = &mesh.FieldError{Key: key, Reason: "not read: with Consul only " + mesh.ServicesDir +
			"<name> documents come from KV, and endpoints come from the catalog"}
		r.builder.SetInvalid(key, err)
	}
	if err == nil {
		r.w.log.Debug("service document applied", "key", key, "modify_index", modifyIndex)
		return
	}
	r.w.metrics.InvalidTotal.Inc()
	r.logWarn("invalid:"+key, "invalid document, keeping the last good value",
		"key", key, "modify_index", modifyIndex, "fields", invalidFields(err), "error", err)
}

// applyCatalog starts a health watch for every new service in the catalog
// and stops the watches of services that left it. It reports whether the
// builder changed.
func (r *runner) applyCatalog(ctx context.Context, services map[string][]string) bool {
	changed := r.applyBadNames(services)
	for _, name := range sortedNames(services) {
		if _, ok := r.watches[name]; ok || !watchable(name) {
			continue
		}
		r.startWatch(ctx, name)
	}
	for _, name := range sortedNames(r.watches) {
		if _, ok := services[name]; !ok {
			changed = r.stopWatch(name) || changed
		}
	}
	r.w.metrics.healthWatches.Set(float64(len(r.watches)))
	return changed
}

func watchable(name string) bool {
	return name != consulServiceName && mesh.ValidName(name)
}

// applyBadNames records every service name that is not a valid mesh name
// in State.Invalid, and removes those that left the catalog.
func (r *runner) applyBadNames(services map[string][]string) bool {
	changed := false
	for _, name := range sortedNames(services) {
		if _, seen := r.badNames[name]; seen || name == consulServiceName || mesh.ValidName(name) {
			continue
		}
		r.badNames[name] = struct{}{}
		key := catalogKey(name)
		r.builder.SetInvalid(key, &mesh.FieldError{Key: key, Reason: fmt.Sprintf(
			"service name %q is not a valid mesh name: use lower-case letters, digits, '-' and '.', "+
				"at most 63 characters; its instances are ignored", name)})
		r.w.metrics.InvalidTotal.Inc()
		r.logWarn("invalid:"+key, "consul service name is not a valid mesh name, ignoring the service",
			"service", name)
		changed = true
	}
	for _, name := range sortedNames(r.badNames) {
		if _, ok := services[name]; !ok {
			delete(r.badNames, name)
			r.builder.Delete(catalogKey(name))
			changed = true
		}
	}
	return changed
}

// startWatch starts the health query of service.
func (r *runner) startWatch(ctx context.Context, service string) {
	ctx, cancel := context.WithCancel(ctx)
	hw := &healthWatch{
		service:   service,
		query:     r.newHealthQuery(service),
		cancel:    cancel,
		instances: map[string]*mesh.Endpoint{},
		invalid:   map[string]error{},
	}
	r.watches[service] = hw
	r.start(ctx, hw.query)
	r.w.log.Debug("health watch started", "service", service)
}

// stopWatch stops the health query of service and removes its endpoints
// and errors. It reports whether the builder changed.
func (r *runner) stopWatch(service string) bool {
	hw := r.watches[service]
	hw.cancel()
	hw.query.stopped = true
	delete(r.watches, service)
	delete(r.indexes, hw.query)
	if _, ok := r.failing[hw.query]; ok {
		delete(r.failing, hw.query)
		if len(r.failing) == 0 {
			r.w.setStale(false, nil)
		}
	}
	r.w.log.Debug("health watch stopped", "service", service)

	changed := len(hw.instances) > 0 || len(hw.invalid) > 0
	r.w.metrics.Events.WithLabelValues("delete").Add(float64(len(hw.instances)))
	r.builder.SetEndpoints(service, nil)
	for name := range hw.invalid {
		r.builder.Delete(instanceKey(service, name))
	}
	return changed
}

// applyHealth replaces the endpoints of hw's service with res. An invalid
// instance keeps its last good endpoint. It reports whether the builder
// changed.
func (r *runner) applyHealth(hw *healthWatch, res healthResult) bool {
	for name := range res.invalid {
		if old, ok := hw.instances[name]; ok {
			res.instances[name] = old
		}
	}
	changed := r.applyInvalidInstances(hw, res.invalid)

	puts, deletes := diffEndpoints(hw.instances, res.instances)
	if puts == 0 && deletes == 0 {
		return changed
	}
	r.w.metrics.Events.WithLabelValues("put").Add(float64(puts))
	r.w.metrics.Events.WithLabelValues("delete").Add(float64(deletes))
	hw.instances = res.instances
	r.builder.SetEndpoints(hw.service, res.instances)
	r.w.log.Debug("endpoints changed", "service", hw.service,
		"endpoints", len(res.instances), "puts", puts, "deletes", deletes)
	return true
}

// applyInvalidInstances records the errors of invalid instances that are
// new or changed, and clears those of instances that are now valid or
// gone. It reports whether the builder changed.
func (r *runner) applyInvalidInstances(hw *healthWatch, invalid map[string]error) bool {
	changed := false
	for _, name := range sortedNames(invalid) {
		err := invalid[name]
		if old, ok := hw.invalid[name]; ok && old.Error() == err.Error() {
			continue
		}
		key := instanceKey(hw.service, name)
		r.builder.SetInvalid(key, err)
		r.w.metrics.InvalidTotal.Inc()
		r.logWarn("invalid:"+key, "consul instance is not a valid endpoint, keeping its last good value",
			"service", hw.service, "instance", name, "fields", invalidFields(err), "error", err)
		changed = true
	}
	for _, name := range sortedNames(hw.invalid) {
		if _, ok := invalid[name]; !ok {
			r.builder.Delete(instanceKey(hw.service, name))
			changed = true
		}
	}
	hw.invalid = invalid
	return changed
}

// diffEndpoints counts the instances that are new or changed in next, and
// those that are gone from it.
func diffEndpoints(prev, next map[string]*mesh.Endpoint) (puts, deletes int) {
	for name, ep := range next {
		if old, ok := prev[name]; !ok || !reflect.DeepEqual(old, ep) {
			puts++
		}
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			deletes++
		}
	}
	return puts, deletes
}

// invalidFields returns the sorted, distinct field paths of an invalid
// document error, with "" for the document as a whole.
func invalidFields(err error) []string {
	fields := make(map[string]struct{})
	var list mesh.FieldErrors
	var one *mesh.FieldError
	switch {
	case errors.As(err, &list):
		for _, fe := range list {
			fields[fe.Field] = struct{}{}
		}
	case errors.As(err, &one):
		fields[one.Field] = struct{}{}
	}
	return slices.Sorted(maps.Keys(fields))
}
