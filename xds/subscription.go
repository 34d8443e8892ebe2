package xds

import (
	"maps"
	"slices"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// maxInflight bounds the responses per type that wait for an ACK. A client
// ACKs in order, so an ACK for a newer nonce settles every older one.
const maxInflight = 32

// subscription is one stream's view of one resource type: what the client
// asked for, what it holds, and what it rejected. It is owned by the
// stream's goroutine; status is copied out under the stream's lock.
type subscription struct {
	typeURL  string
	wildcard bool
	names    map[string]struct{}
	// sent maps a name to the version the client holds as far as the
	// server can tell: set when a response goes out, reverted on NACK.
	sent map[string]string
	// acked maps a name to the last version the client accepted.
	acked map[string]*Resource
	// rejected maps a name to a version the client NACKed. That version is
	// never sent to this client again; a newer version is.
	rejected map[string]string
	inflight []*inflight
	status   TypeStatus
}

// inflight is one response that waits for its ACK or NACK.
type inflight struct {
	nonce     string
	version   string
	resources []*Resource
	removed   []string
}

func newSubscription(typeURL string) *subscription {
	return &subscription{
		typeURL:  typeURL,
		names:    make(map[string]struct{}),
		sent:     make(map[string]string),
		acked:    make(map[string]*Resource),
		rejected: make(map[string]string),
		status:   TypeStatus{TypeURL: typeURL},
	}
}

// fullState reports whether a state-of-the-world response of this type
// must list every subscribed resource. The xDS protocol requires it for
// listeners and clusters; for the other types a response carries only the
// resources that changed.
func fullState(typeURL string) bool {
	return typeURL == resourcev3.ListenerType || typeURL == resourcev3.ClusterType
}

// wildcardCapable reports whether an empty first subscription means "all
// resources" (legacy wildcard) for this type.
func wildcardCapable(typeURL string) bool { return fullState(typeURL) }

// wants reports whether the client subscribes to r.
func (s *subscription) wants(r *Resource) bool {
	if _, ok := s.names[r.Name]; ok {
		return true
	}
	return s.wildcard && !r.NamedOnly
}

// sendable returns the version of r to send, substituting the last
// accepted version when the current one was rejected. It returns nil when
// the client should get nothing for this name.
func (s *subscription) sendable(r *Resource) *Resource {
	if s.rejected[r.Name] == r.Version {
		return s.acked[r.Name]
	}
	return r
}

// recordSent notes a response on its way to the client.
func (s *subscription) recordSent(nonce, version string, rs []*Resource, removed []string, now time.Time) {
	for _, r := range rs {
		s.sent[r.Name] = r.Version
	}
	for _, n := range removed {
		delete(s.sent, n)
	}
	s.inflight = append(s.inflight, &inflight{nonce: nonce, version: version, resources: rs, removed: removed})
	if len(s.inflight) > maxInflight {
		s.inflight = slices.Delete(s.inflight, 0, len(s.inflight)-maxInflight)
	}
	s.status.VersionSent = version
	s.status.Nonce = nonce
	s.status.Responses++
	s.status.ResourcesSent += uint64(len(rs))
	s.status.LastSent = now
}

// settle finds the response with nonce. Older responses still in flight
// count as accepted: clients process responses in order.
func (s *subscription) settle(nonce string) *inflight {
	i := slices.IndexFunc(s.inflight, func(f *inflight) bool { return f.nonce == nonce })
	if i < 0 {
		return nil
	}
	for _, older := range s.inflight[:i] {
		s.accept(older)
	}
	f := s.inflight[i]
	s.inflight = slices.Delete(s.inflight, 0, i+1)
	return f
}

func (s *subscription) accept(f *inflight) {
	for _, r := range f.resources {
		s.acked[r.Name] = r
		delete(s.rejected, r.Name)
	}
	for _, n := range f.removed {
		delete(s.acked, n)
	}
}

// ack records that the client accepted the response with nonce.
func (s *subscription) ack(nonce string, now time.Time) bool {
	f := s.settle(nonce)
	if f == nil {
		return false
	}
	s.accept(f)
	s.status.VersionAcked = f.version
	s.status.Acks++
	s.status.LastAck = now
	return true
}

// nack records that the client rejected the response with nonce. Every
// resource in it that differs from what the client had accepted is marked
// rejected, and sent reverts to the accepted versions, because the client
// keeps using those. It returns the rejected resources.
func (s *subscription) nack(nonce, detail string, now time.Time) []*Resource {
	f := s.settle(nonce)
	if f == nil {
		return nil
	}
	var bad []*Resource
	for _, r := range f.resources {
		if a := s.acked[r.Name]; a != nil && a.Version == r.Version {
			continue
		}
		s.rejected[r.Name] = r.Version
		bad = append(bad, r)
		if a := s.acked[r.Name]; a != nil {
			s.sent[r.Name] = a.Version
		} else {
			delete(s.sent, r.Name)
		}
	}
	s.status.VersionNacked = f.version
	s.status.Nacks++
	s.status.LastError = detail
	s.status.LastNack = now
	s.status.ErrorResources = s.status.ErrorResources[:0]
	s.status.ErrorKeys = s.status.ErrorKeys[:0]
	for _, r := range bad {
		s.status.ErrorResources = append(s.status.ErrorResources, r.Name)
		s.status.ErrorKeys = append(s.status.ErrorKeys, r.Keys...)
	}
	slices.Sort(s.status.ErrorKeys)
	s.status.ErrorKeys = slices.Compact(s.status.ErrorKeys)
	return bad
}

// subscribe replaces (state of the world) the subscribed names and returns
// the names that are new.
func (s *subscription) replaceNames(names []string) (added []string) {
	next := make(map[string]struct{}, len(names))
	wildcard := false
	for _, n := range names {
		if n == "*" {
			wildcard = true
			continue
		}
		next[n] = struct{}{}
		if _, ok := s.names[n]; !ok {
			added = append(added, n)
		}
	}
	if len(names) == 0 && wildcardCapable(s.typeURL) {
		wildcard = true
	}
	for n := range s.names {
		if _, ok := next[n]; !ok {
			delete(s.sent, n)
		}
	}
	s.names = next
	s.wildcard = wildcard
	s.status.Wildcard = wildcard
	s.status.Subscribed = slices.Sorted(maps.Keys(next))
	return added
}
