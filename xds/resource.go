package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Type URLs the server serves, in the order one flush of a stream sends
// them: clusters before their endpoints and listeners before their routes,
// the order the xDS protocol recommends so that a proxy does not hold a
// reference to a resource it has not received ("eventual consistency
// considerations").
var pushOrder = []string{
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
	resourcev3.SecretType,
}

// Resource is one named xDS resource, marshalled once and shared by every
// stream that sends it. A Resource is immutable after NewResource returns.
type Resource struct {
	// Name is the xDS resource name.
	Name string
	// Message is the resource as built, or nil: the translator drops it
	// once the resource is marshalled and validated, because Any holds the
	// same content in a fraction of the memory. Use Decode to read it.
	Message proto.Message
	// Any is Message packed once, with deterministic marshalling.
	Any *anypb.Any
	// Version is a hash of the marshalled bytes, so identical content gives
	// an identical version on every agent.
	Version string
	// Keys are the store keys of the service documents the resource was
	// built from, reported with a NACK so an operator can tell which
	// document to fix. Endpoint assignments list their service's key, not
	// each endpoint's.
	Keys []string
	// NamedOnly marks a resource that is sent only to clients that request
	// it by name, never to wildcard subscribers. gRPC API listeners use it:
	// Envoy subscribes to listeners by wildcard and rejects a listener with
	// no address.
	NamedOnly bool
}

// Decode returns the resource as a message: Message when the resource
// still holds it, else a new message unmarshalled from Any. The caller
// must not modify the result.
func (r *Resource) Decode() (proto.Message, error) {
	if r.Message != nil {
		return r.Message, nil
	}
	m, err := r.Any.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("decode %s %q: %w", r.TypeURL(), r.Name, err)
	}
	return m, nil
}

// TypeURL returns the resource's type URL.
func (r *Resource) TypeURL() string { return r.Any.GetTypeUrl() }

// Size returns the marshalled size in bytes.
func (r *Resource) Size() int { return len(r.Any.GetValue()) }

// NewResource marshals msg and derives its version from the bytes.
func NewResource(name string, msg proto.Message, keys ...string) (*Resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %q: %w", msg.ProtoReflect().Descriptor().FullName(), name, err)
	}
	sum := sha256.Sum256(b)
	return &Resource{
		Name:    name,
		Message: msg,
		Any: &anypb.Any{
			TypeUrl: resourcev3.APITypePrefix + string(msg.ProtoReflect().Descriptor().FullName()),
			Value:   b,
		},
		Version: hex.EncodeToString(sum[:8]),
		Keys:    keys,
	}, nil
}

// Changes is the output of one translation: resources to add or replace
// and names to remove, by type URL.
type Changes struct {
	Upserts map[string][]*Resource
	Removes map[string][]string
}

// Empty reports whether the changes hold nothing.
func (c *Changes) Empty() bool {
	for _, rs := range c.Upserts {
		if len(rs) > 0 {
			return false
		}
	}
	for _, ns := range c.Removes {
		if len(ns) > 0 {
			return false
		}
	}
	return true
}
