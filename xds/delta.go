package xds

import (
	"maps"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// runDelta serves one delta (incremental) stream. fixedType is the type of
// a per-type service, or empty for ADS.
func (s *Server) runDelta(gs deltaStream, kind, fixedType string) error {
	st := s.newStream(gs.Context(), kind, fixedType)
	defer s.removeStream(st)
	return serve(st, gs, st.handleDelta, st.flushDelta)
}

// handleDelta applies one request: ACK or NACK, then subscription changes.
// See the xDS protocol, "incremental xDS", for the rules on wildcard and
// initial_resource_versions.
func (st *stream) handleDelta(req *discovery.DeltaDiscoveryRequest) ([]*discovery.DeltaDiscoveryResponse, error) {
	typeURL, err := st.typeOf(req.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()

	st.setNode(req.GetNode())
	sub, first := st.subscriptionLocked(typeURL)
	if nonce := req.GetResponseNonce(); nonce != "" {
		if d := req.GetErrorDetail(); d != nil {
			st.recordNack(sub, nonce, d.GetMessage())
		} else {
			st.recordAck(sub, nonce)
		}
	}

	if first {
		// The client already holds these versions, from an earlier stream.
		maps.Copy(sub.sent, req.GetInitialResourceVersions())
		if len(req.GetResourceNamesSubscribe()) == 0 && wildcardCapable(typeURL) {
			sub.wildcard = true
		}
	}
	added := subscribeDelta(sub, req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe())

	switch {
	case first:
		return st.responseDelta(sub, st.deltaScope(sub), setOf(added)), nil
	case len(added) > 0:
		return st.responseDelta(sub, added, setOf(added)), nil
	}
	return nil, nil
}

// subscribeDelta applies subscribe and unsubscribe lists and returns the
// names newly subscribed. "*" turns the wildcard on or off.
func subscribeDelta(sub *subscription, subscribe, unsubscribe []string) []string {
	var added []string
	for _, n := range subscribe {
		if n == "*" {
			sub.wildcard = true
			continue
		}
		if _, ok := sub.names[n]; !ok {
			sub.names[n] = struct{}{}
			added = append(added, n)
		}
	}
	for _, n := range unsubscribe {
		if n == "*" {
			sub.wildcard = false
			continue
		}
		delete(sub.names, n)
		// The client forgets an unsubscribed resource; if it subscribes
		// again it must receive it again.
		delete(sub.sent, n)
	}
	sub.status.Wildcard = sub.wildcard
	sub.status.Subscribed = slices.Sorted(maps.Keys(sub.names))
	return added
}

// deltaScope returns every name the client may need to hear about: its
// subscriptions, everything a wildcard covers, and what it holds.
func (st *stream) deltaScope(sub *subscription) []string {
	scope := make(map[string]struct{}, len(sub.names)+len(sub.sent))
	for n := range sub.names {
		scope[n] = struct{}{}
	}
	for n := range sub.sent {
		scope[n] = struct{}{}
	}
	if sub.wildcard {
		rs, _ := st.srv.cache.wildcard(sub.typeURL)
		for _, r := range rs {
			scope[r.Name] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(scope))
}

// flushDelta sends the changes the cache recorded since the last flush.
func (st *stream) flushDelta() []*discovery.DeltaDiscoveryResponse {
	changed, resync := st.w.drain()
	st.mu.Lock()
	defer st.mu.Unlock()

	var out []*discovery.DeltaDiscoveryResponse
	for _, t := range st.orderedTypes() {
		sub := st.subs[t]
		switch {
		case resync:
			out = append(out, st.responseDelta(sub, st.deltaScope(sub), nil)...)
		case changed[t] != nil:
			out = append(out, st.responseDelta(sub, slices.Sorted(maps.Keys(changed[t])), nil)...)
		}
	}
	return out
}

// responseDelta builds at most one response covering names. A name the
// client holds but may no longer have goes into removed_resources. A name in
// announceMissing that does not exist is also listed as removed, which is
// how delta xDS informs a client that a resource it subscribed to does not
// exist.
func (st *stream) responseDelta(sub *subscription, names []string, announceMissing map[string]struct{}) []*discovery.DeltaDiscoveryResponse {
	cache := st.srv.cache
	if !cache.Ready() {
		return nil
	}
	var rs []*Resource
	var removed []string
	for _, n := range names {
		r := cache.Get(sub.typeURL, n)
		if r == nil || !sub.wants(r) {
			_, held := sub.sent[n]
			_, announce := announceMissing[n]
			if held || announce {
				removed = append(removed, n)
			}
			continue
		}
		if r = sub.sendable(r); r != nil && sub.sent[n] != r.Version {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 && len(removed) == 0 {
		return nil
	}

	version := cache.Version(sub.typeURL)
	resp := &discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: version,
		TypeUrl:           sub.typeURL,
		Nonce:             st.nextNonce(),
		RemovedResources:  removed,
		Resources:         make([]*discovery.Resource, len(rs)),
	}
	for i, r := range rs {
		resp.Resources[i] = &discovery.Resource{Name: r.Name, Version: r.Version, Resource: r.Any}
	}
	sub.recordSent(resp.Nonce, version, rs, removed, st.srv.now())
	st.countSent(sub.typeURL, len(rs), proto.Size(resp))
	return []*discovery.DeltaDiscoveryResponse{resp}
}
