package etcd

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tether-mesh/tether/mesh"
)

// namingValue is the JSON that go.etcd.io/etcd/client/v3/naming/endpoints
// (v3.7) stores under each key: its internal Update type, which holds the
// fields of endpoints.Endpoint plus Op. Unknown fields are ignored, as
// etcd's own resolver ignores them, so that a newer writer stays readable.
// Op is ignored as well: the Manager only ever stores Op Add and deletes
// the key for a removal.
type namingValue struct {
	Addr     string
	Metadata json.RawMessage
}

// parseNamingKey splits a key in etcd's naming format into the service
// name and the instance, which is everything after the service.
func parseNamingKey(prefix, key string) (service, instance string, err error) {
	rest, _ := strings.CutPrefix(key, prefix)
	service, instance, ok := strings.Cut(rest, "/")
	if !ok || service == "" || instance == "" {
		return "", "", &mesh.FieldError{Key: key, Reason: fmt.Sprintf(
			"key is not in etcd's naming format %s<service>/<instance>", prefix)}
	}
	if !mesh.ValidName(service) {
		return "", "", &mesh.FieldError{Key: key, Reason: fmt.Sprintf(
			"service name %q from the key is invalid: use lower-case letters, digits, '-' and '.', at most 63 characters",
			service)}
	}
	return service, instance, nil
}

// parseNamingEndpoint parses the value of a key in etcd's naming format into
// an endpoint of service. Addr must be an IP address and a port, because
// the mesh routes to addresses and does not resolve names. Metadata becomes
// the endpoint's labels when it is a JSON object whose every value is a
// string. Any other metadata is ignored, because gRPC-style metadata may
// be of any type. Errors are *mesh.FieldError values naming the field in the
// naming format's own terms (Addr, Metadata).
func parseNamingEndpoint(key string, value []byte) (*mesh.Endpoint, error) {
	if len(value) > mesh.MaxDocumentBytes {
		return nil, &mesh.FieldError{Key: key, Reason: fmt.Sprintf(
			"value is %d bytes, larger than the limit of %d", len(value), mesh.MaxDocumentBytes)}
	}
	var v namingValue
	if err := json.Unmarshal(value, &v); err != nil {
		return nil, &mesh.FieldError{Key: key, Reason: fmt.Sprintf(
			"not a JSON endpoint of etcd's naming format: %v", err)}
	}

	address, port, err := parseNamingAddr(key, v.Addr)
	if err != nil {
		return nil, err
	}
	labels, err := parseNamingMetadata(key, v.Metadata)
	if err != nil {
		return nil, err
	}

	// Round-trip through mesh.ParseEndpoint, so that an endpoint from this
	// format passes exactly the checks of a native endpoint document.
	doc, err := json.Marshal(mesh.Endpoint{Address: address, Port: port, Labels: labels})
	if err != nil {
		return nil, fmt.Errorf("encode endpoint %s: %w", key, err)
	}
	return mesh.ParseEndpoint(key, doc)
}

func parseNamingAddr(key, addr string) (string, uint32, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, &mesh.FieldError{Key: key, Field: "Addr", Reason: fmt.Sprintf(
			"%q is not host:port: %v", addr, err)}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", 0, &mesh.FieldError{Key: key, Field: "Addr", Reason: fmt.Sprintf(
			"host %q is not an IPv4 or IPv6 address: the mesh does not resolve host names", host)}
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, &mesh.FieldError{Key: key, Field: "Addr", Reason: fmt.Sprintf(
			"port %q is out of range 1 to 65535", portText)}
	}
	return ip.String(), uint32(port), nil
}

func parseNamingMetadata(key string, raw json.RawMessage) (map[string]string, error) {
	var fields map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &fields) != nil || len(fields) == 0 {
		return nil, nil
	}
	labels := make(map[string]string, len(fields))
	for name, value := range fields {
		s, ok := value.(string)
		if !ok {
			return nil, nil
		}
		labels[name] = s
	}
	if _, ok := labels[""]; ok {
		return nil, &mesh.FieldError{Key: key, Field: "Metadata", Reason: "a label name must not be empty"}
	}
	return labels, nil
}
