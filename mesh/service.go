package mesh

import (
	"encoding/json"
	"fmt"
	"time"
)

// Protocol is the application protocol a service speaks.
type Protocol string

// Protocols a service document may name.
const (
	ProtocolHTTP  Protocol = "http"
	ProtocolHTTP2 Protocol = "http2"
	ProtocolGRPC  Protocol = "grpc"
	ProtocolTCP   Protocol = "tcp"
)

// IsHTTP reports whether the protocol is routed by an HTTP connection
// manager (everything but tcp).
func (p Protocol) IsHTTP() bool { return p != ProtocolTCP }

// Service is the document stored under <prefix>services/<name>. Values are
// immutable once parsed: State shares them between versions.
type Service struct {
	// Key is the store key the document was read from. It is not part of
	// the document; errors and NACK reports name it.
	Key string `json:"-"`
	// Name must equal the last segment of the store key when set.
	Name string `json:"name,omitempty"`
	// Protocol is http, http2, grpc or tcp. Default http.
	Protocol Protocol `json:"protocol,omitempty"`
	// Port is the port clients use to reach the service, 1 to 65535.
	Port uint32 `json:"port"`
	// Subsets group endpoints by labels; routes send traffic to subsets.
	Subsets []Subset `json:"subsets,omitempty"`
	// Routes are tried in order; the first match wins. With no routes all
	// traffic goes to the whole service.
	Routes []Route `json:"routes,omitempty"`
	// LoadBalancing is round_robin (default), least_request, random or
	// ring_hash.
	LoadBalancing string `json:"loadBalancing,omitempty"`
	// ConnectTimeout bounds TCP connection setup to an endpoint. Default 5s.
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// CircuitBreaking sets Envoy's per-cluster thresholds.
	CircuitBreaking *CircuitBreaking `json:"circuitBreaking,omitempty"`
	// OutlierDetection ejects endpoints that keep failing.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// MTLS sets whether the service's inbound side requires mutual TLS.
	MTLS *MTLS `json:"mtls,omitempty"`
	// AllowedCallers lists the SPIFFE IDs that may call the service. Empty
	// allows every caller.
	AllowedCallers []string `json:"allowedCallers,omitempty"`
}

// Subset is a named group of a service's endpoints selected by labels.
type Subset struct {
	Name string `json:"name"`
	// Labels must all be present with equal values on an endpoint.
	Labels map[string]string `json:"labels"`
}

// Route sends matching requests to weighted backends.
type Route struct {
	// Name is optional and shows up in Envoy's route names and metrics.
	Name  string     `json:"name,omitempty"`
	Match RouteMatch `json:"match,omitempty"`
	// Backends share the traffic by weight. Weights add up to 100. With one
	// backend the weight may be left out.
	Backends []Backend `json:"backends"`
	// Timeout is the whole-request timeout; 0 means Envoy's default (15s).
	Timeout Duration `json:"timeout,omitempty"`
	Retries *Retries `json:"retries,omitempty"`
}

// RouteMatch selects requests by path and headers. All given conditions must
// hold. An empty match takes every request.
type RouteMatch struct {
	Path    *PathMatch    `json:"path,omitempty"`
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// PathMatch matches the request path. Exactly one field is set.
type PathMatch struct {
	Prefix string `json:"prefix,omitempty"`
	Exact  string `json:"exact,omitempty"`
	// Regex is an RE2 expression that must match the whole path.
	Regex string `json:"regex,omitempty"`
}

// HeaderMatch matches one request header. Exactly one of Exact, Prefix,
// Regex and Present is set.
type HeaderMatch struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
	// Invert makes the match succeed when the condition does not hold.
	Invert bool `json:"invert,omitempty"`
}

// Backend is one weighted destination of a route.
type Backend struct {
	// Subset names one of the service's subsets; empty means every endpoint
	// of the service.
	Subset string `json:"subset,omitempty"`
	// Weight is a percentage, 0 to 100.
	Weight uint32 `json:"weight,omitempty"`
}

// Retries configures the retry policy of a route.
type Retries struct {
	// Attempts is the number of retries after the first try, 1 to 10.
	Attempts uint32 `json:"attempts"`
	// PerTryTimeout bounds each try; 0 means the route timeout.
	PerTryTimeout Duration `json:"perTryTimeout,omitempty"`
	// RetryOn lists Envoy retry conditions (x-envoy-retry-on or
	// x-envoy-retry-grpc-on values). Default "5xx,connect-failure" for HTTP
	// and "unavailable" for gRPC. The field is not called "on" because
	// YAML 1.1 parsers read a bare on as the boolean true.
	RetryOn []string `json:"retryOn,omitempty"`
}

// CircuitBreaking holds Envoy's default-priority thresholds. A zero field
// keeps Envoy's default.
type CircuitBreaking struct {
	MaxConnections     uint32 `json:"maxConnections,omitempty"`
	MaxPendingRequests uint32 `json:"maxPendingRequests,omitempty"`
	MaxRequests        uint32 `json:"maxRequests,omitempty"`
	MaxRetries         uint32 `json:"maxRetries,omitempty"`
}

// OutlierDetection ejects endpoints after consecutive failures.
type OutlierDetection struct {
	Consecutive5xx     uint32   `json:"consecutive5xx,omitempty"`
	Interval           Duration `json:"interval,omitempty"`
	BaseEjectionTime   Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent uint32   `json:"maxEjectionPercent,omitempty"`
}

// MTLS is the inbound mutual-TLS mode of a service.
type MTLS struct {
	// Mode is strict, permissive or disable.
	Mode string `json:"mode"`
}

// Duration is a time.Duration written as a Go duration string ("250ms",
// "5s") in documents.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string. Bare numbers are rejected because
// their unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	// A field written with no value ("timeout:") keeps the default.
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("invalid duration %s: write a string with a unit, such as \"5s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: write a number with a unit, such as \"250ms\" or \"5s\"", s)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	d.Duration = v
	return nil
}
