package xds

import (
	"maps"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// runSotW serves one state-of-the-world stream. fixedType is the type of a
// per-type service, or empty for ADS.
func (s *Server) runSotW(gs sotwStream, kind, fixedType string) error {
	st := s.newStream(gs.Context(), kind, fixedType)
	defer s.removeStream(st)
	return serve(st, gs, st.handleSotW, st.flushSotW)
}

// handleSotW applies one request and returns the responses it calls for.
func (st *stream) handleSotW(req *discovery.DiscoveryRequest) ([]*discovery.DiscoveryResponse, error) {
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

	added := sub.replaceNames(req.GetResourceNames())
	// The first request of a type on this stream gets a full response, even
	// with a nonce: a client that moved from another server sends that
	// server's nonce, and Istio's client sends one it made up. So does a
	// request without a nonce. Otherwise only names the client just added
	// get a response.
	if first || req.GetResponseNonce() == "" {
		return st.responseSotW(sub, nil, true), nil
	}
	if len(added) > 0 {
		return st.responseSotW(sub, setOf(added), true), nil
	}
	return nil, nil
}

// flushSotW sends the changes the cache recorded since the last flush.
func (st *stream) flushSotW() []*discovery.DiscoveryResponse {
	changed, resync := st.w.drain()
	st.mu.Lock()
	defer st.mu.Unlock()

	var out []*discovery.DiscoveryResponse
	for _, t := range st.orderedTypes() {
		sub := st.subs[t]
		switch {
		case resync:
			out = append(out, st.responseSotW(sub, nil, true)...)
		case changed[t] != nil:
			out = append(out, st.responseSotW(sub, changed[t], false)...)
		}
	}
	return out
}

// responseSotW builds at most one response for sub. names limits a partial
// type to those names (nil means every subscribed name). force sends a
// full-state type even when it equals what the client holds, because the
// client waits for a response to its request.
func (st *stream) responseSotW(sub *subscription, names map[string]struct{}, force bool) []*discovery.DiscoveryResponse {
	cache := st.srv.cache
	if !cache.Ready() {
		return nil
	}
	var rs []*Resource
	var version string
	if fullState(sub.typeURL) {
		rs, version = st.fullSet(sub)
		if !force && sameVersions(rs, sub.sent) {
			return nil
		}
		clear(sub.sent)
	} else {
		rs, version = st.partialSet(sub, names)
		if len(rs) == 0 {
			return nil
		}
	}

	resp := &discovery.DiscoveryResponse{
		VersionInfo: version,
		TypeUrl:     sub.typeURL,
		Nonce:       st.nextNonce(),
		Resources:   make([]*anypb.Any, len(rs)),
	}
	for i, r := range rs {
		resp.Resources[i] = r.Any
	}
	sub.recordSent(resp.Nonce, version, rs, nil, st.srv.now())
	st.countSent(sub.typeURL, len(rs), proto.Size(resp))
	return []*discovery.DiscoveryResponse{resp}
}

// fullSet returns every resource the client subscribes to, with rejected
// versions replaced by the ones it accepted.
func (st *stream) fullSet(sub *subscription) ([]*Resource, string) {
	var candidates []*Resource
	var version string
	if sub.wildcard {
		candidates, version = st.srv.cache.wildcard(sub.typeURL)
	}
	if len(sub.names) > 0 {
		named, v := st.srv.cache.lookup(sub.typeURL, slices.Sorted(maps.Keys(sub.names)))
		candidates, version = mergeByName(candidates, named), v
	}
	if version == "" {
		version = st.srv.cache.Version(sub.typeURL)
	}
	out := candidates[:0:0]
	for _, r := range candidates {
		if r = sub.sendable(r); r != nil {
			out = append(out, r)
		}
	}
	return out, version
}

// partialSet returns the subscribed resources among names that the client
// does not hold yet.
func (st *stream) partialSet(sub *subscription, names map[string]struct{}) ([]*Resource, string) {
	var want []string
	if names == nil {
		want = slices.Sorted(maps.Keys(sub.names))
	} else {
		for n := range names {
			if _, ok := sub.names[n]; ok {
				want = append(want, n)
			}
		}
		slices.Sort(want)
	}
	found, version := st.srv.cache.lookup(sub.typeURL, want)
	out := found[:0]
	for _, r := range found {
		r = sub.sendable(r)
		if r != nil && sub.sent[r.Name] != r.Version {
			out = append(out, r)
		}
	}
	return out, version
}

func (st *stream) countSent(typeURL string, resources, bytes int) {
	m := st.srv.metrics
	m.responses.WithLabelValues(typeURL).Inc()
	m.resources.WithLabelValues(typeURL).Add(float64(resources))
	m.bytes.WithLabelValues(typeURL).Add(float64(bytes))
}

// sameVersions reports whether rs holds exactly the names and versions of
// sent.
func sameVersions(rs []*Resource, sent map[string]string) bool {
	if len(rs) != len(sent) {
		return false
	}
	for _, r := range rs {
		if v, ok := sent[r.Name]; !ok || v != r.Version {
			return false
		}
	}
	return true
}

// mergeByName merges two name-sorted lists, keeping one entry per name.
func mergeByName(a, b []*Resource) []*Resource {
	if len(a) == 0 {
		return b
	}
	seen := make(map[string]struct{}, len(a))
	for _, r := range a {
		seen[r.Name] = struct{}{}
	}
	for _, r := range b {
		if _, ok := seen[r.Name]; !ok {
			a = append(a, r)
		}
	}
	slices.SortFunc(a, func(x, y *Resource) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return a
}

func setOf(names []string) map[string]struct{} {
	out := make(map[string]struct{}, len(names))
	for _, n := range names {
		out[n] = struct{}{}
	}
	return out
}
