package mesh_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tether-mesh/tether/mesh"
)

const (
	testPrefix      = "/tether/"
	testService     = "reviews"
	testServiceKey  = "/tether/services/reviews"
	testEndpointKey = "/tether/endpoints/reviews/reviews-v2"
)

// wantField is one FieldError a test expects: its Field path and a
// substring of its Reason. The Key is always the key the document was
// parsed under.
type wantField struct {
	field  string
	reason string
}

// fieldErrorsOf returns the FieldErrors inside err. It fails the test when
// err is nil, does not match ErrInvalid or contains no FieldError.
func fieldErrorsOf(t *testing.T, err error) []*mesh.FieldError {
	t.Helper()
	if err == nil {
		t.Fatal("error is nil, expected an invalid-document error")
	}
	if !errors.Is(err, mesh.ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) is false", err)
	}
	var list mesh.FieldErrors
	if errors.As(err, &list) {
		return list
	}
	var one *mesh.FieldError
	if errors.As(err, &one) {
		return []*mesh.FieldError{one}
	}
	t.Fatalf("error %v (%T) contains no *mesh.FieldError", err, err)
	return nil
}

// checkFieldErrors asserts that err contains exactly the wanted FieldErrors, in
// order, each with the given key.
func checkFieldErrors(t *testing.T, err error, key string, want []wantField) {
	t.Helper()
	got := fieldErrorsOf(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d field errors, expected %d: %v", len(got), len(want), err)
	}
	for i, w := range want {
		fe := got[i]
		if fe.Key != key {
			t.Errorf("error %d: Key = %q, expected %q", i, fe.Key, key)
		}
		if fe.Field != w.field {
			t.Errorf("error %d: Field = %q, expected %q (reason %q)", i, fe.Field, w.field, fe.Reason)
		}
		if !strings.Contains(fe.Reason, w.reason) {
			t.Errorf("error %d: Reason = %q, expected it to contain %q", i, fe.Reason, w.reason)
		}
	}
	if !strings.Contains(err.Error(), key) {
		t.Errorf("message %q does not name the key %q", err.Error(), key)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func seconds(n int) mesh.Duration { return mesh.Duration{Duration: time.Duration(n) * time.Second} }

// completeService is what testdata/services/reviews.{yaml,json} parse to.
func completeService() *mesh.Service {
	return &mesh.Service{
		Key:            testServiceKey,
		Name:           "reviews",
		Protocol:       mesh.ProtocolHTTP2,
		Port:           9080,
		LoadBalancing:  "least_request",
		ConnectTimeout: seconds(2),
		Subsets: []mesh.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2", "track": "stable"}},
		},
		Routes: []mesh.Route{
			{
				Name: "by-path",
				Match: mesh.RouteMatch{
					Path: &mesh.PathMatch{Regex: "/reviews/[0-9]+"},
					Headers: []mesh.HeaderMatch{
						{Name: "x-canary", Present: true, Invert: true},
						{Name: "end-user", Prefix: "test-"},
					},
				},
				Backends: []mesh.Backend{{Subset: "v2"}},
				Timeout:  seconds(3),
				Retries: &mesh.Retries{
					Attempts:      3,
					PerTryTimeout: seconds(1),
					RetryOn:       []string{"5xx", "reset"},
				},
			},
			{
				Name:     "split",
				Match:    mesh.RouteMatch{Path: &mesh.PathMatch{Prefix: "/"}},
				Backends: []mesh.Backend{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}},
			},
		},
		CircuitBreaking: &mesh.CircuitBreaking{
			MaxConnections: 100, MaxPendingRequests: 50, MaxRequests: 200, MaxRetries: 3,
		},
		OutlierDetection: &mesh.OutlierDetection{
			Consecutive5xx: 5, Interval: seconds(10), BaseEjectionTime: seconds(30), MaxEjectionPercent: 50,
		},
		MTLS:           &mesh.MTLS{Mode: "strict"},
		AllowedCallers: []string{"spiffe://example.org/ns/default/sa/productpage"},
	}
}

func TestParseServiceYAMLAndJSONEqual(t *testing.T) {
	want := completeService()
	for _, file := range []string{"services/reviews.yaml", "services/reviews.json"} {
		t.Run(file, func(t *testing.T) {
			got, err := mesh.ParseService(testServiceKey, testService, readTestdata(t, file))
			if err != nil {
				t.Fatalf("ParseService: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseService(%s) =\n%+v\nexpected\n%+v", file, got, want)
			}
		})
	}
}

func TestParseEndpointYAMLAndJSONEqual(t *testing.T) {
	want := &mesh.Endpoint{
		Key:      testEndpointKey,
		Address:  "10.1.2.3",
		Port:     9080,
		Labels:   map[string]string{"version": "v2", "track": "stable"},
		Locality: mesh.Locality{Region: "eu-west-1", Zone: "eu-west-1a", SubZone: "rack-7"},
		Weight:   10,
		Health:   mesh.HealthDraining,
	}
	for _, file := range []string{"endpoints/reviews-v2.yaml", "endpoints/reviews-v2.json"} {
		t.Run(file, func(t *testing.T) {
			got, err := mesh.ParseEndpoint(testEndpointKey, readTestdata(t, file))
			if err != nil {
				t.Fatalf("ParseEndpoint: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseEndpoint(%s) =\n%+v\nexpected\n%+v", file, got, want)
			}
		})
	}
}

func TestParseServiceDefaults(t *testing.T) {
	got, err := mesh.ParseService(testServiceKey, testService, []byte("port: 9080\n"))
	if err != nil {
		t.Fatalf("ParseService: %v", err)
	}
	if got.Name != testService {
		t.Errorf("Name = %q, expected the name from the key %q", got.Name, testService)
	}
	if got.Protocol != mesh.ProtocolHTTP {
		t.Errorf("Protocol = %q, expected default %q", got.Protocol, mesh.ProtocolHTTP)
	}
	if got.Key != testServiceKey {
		t.Errorf("Key = %q, expected %q", got.Key, testServiceKey)
	}
	if got.ConnectTimeout.Duration != 0 {
		t.Errorf("ConnectTimeout = %v, expected 0 (the translator applies its default)", got.ConnectTimeout)
	}
	if got.LoadBalancing != "" {
		t.Errorf("LoadBalancing = %q, expected empty", got.LoadBalancing)
	}
}

func TestParseEndpointDefaults(t *testing.T) {
	got, err := mesh.ParseEndpoint(testEndpointKey, []byte("address: 10.0.0.1\nport: 80\n"))
	if err != nil {
		t.Fatalf("ParseEndpoint: %v", err)
	}
	if got.Weight != 1 {
		t.Errorf("Weight = %d, expected default 1", got.Weight)
	}
	if got.Health != mesh.HealthHealthy {
		t.Errorf("Health = %q, expected default %q", got.Health, mesh.HealthHealthy)
	}
	if got.Key != testEndpointKey {
		t.Errorf("Key = %q, expected %q", got.Key, testEndpointKey)
	}
}

// TestParseServiceValid lists documents at the edges of the rules that
// must be accepted.
func TestParseServiceValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"json document", `{"port": 80}`},
		{"flow mapping", `{port: 80, protocol: tcp}`},
		// JSON goes through the YAML parser, whose flow mappings allow a
		// trailing comma.
		{"json trailing comma", `{"port": 80,}`},
		{"name equal to key", "name: reviews\nport: 80\n"},
		{"max port", "port: 65535\n"},
		{"every protocol grpc", "protocol: grpc\nport: 80\n"},
		{"every protocol tcp", "protocol: tcp\nport: 80\n"},
		{"every load balancer", "port: 80\nloadBalancing: ring_hash\n"},
		{"random load balancer", "port: 80\nloadBalancing: random\n"},
		{"single backend without weight", "port: 80\nroutes:\n- backends: [{}]\n"},
		{"single backend weight 100", "port: 80\nroutes:\n- backends: [{weight: 100}]\n"},
		{"zero weight among several", "port: 80\nsubsets: [{name: a, labels: {v: a}}]\nroutes:\n- backends: [{subset: a, weight: 100}, {weight: 0}]\n"},
		{"whole service and subset", "port: 80\nsubsets: [{name: a, labels: {v: a}}]\nroutes:\n- backends: [{subset: a, weight: 40}, {weight: 60}]\n"},
		{"retryOn list", "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 2, retryOn: [unavailable]}\n"},
		{"retries without retryOn", "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 10}\n"},
		{"unnamed routes repeat", "port: 80\nroutes:\n- backends: [{}]\n- backends: [{}]\n"},
		{"tcp with one plain route", "protocol: tcp\nport: 80\nroutes:\n- backends: [{}]\n"},
		{"header inverted exact", "port: 80\nroutes:\n- match: {headers: [{name: x-a, exact: b, invert: true}]}\n  backends: [{}]\n"},
		{"path exact", "port: 80\nroutes:\n- match: {path: {exact: /a}}\n  backends: [{}]\n"},
		{"path regex without slash", "port: 80\nroutes:\n- match: {path: {regex: '.*'}}\n  backends: [{}]\n"},
		{"spiffe id without path", "port: 80\nallowedCallers: ['spiffe://example.org']\n"},
		{"mtls permissive", "port: 80\nmtls: {mode: permissive}\n"},
		{"null fields", "port: 80\nname: null\nmtls: null\nroutes: null\n"},
		{"exponent port", "port: 1e2\n"},
		{"zero durations", "port: 80\nconnectTimeout: 0s\n"},
		{"fractional duration", "port: 80\nconnectTimeout: 1.5s\n"},
		{"yaml comment", "# reviews\nport: 80 # inline\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := mesh.ParseService(testServiceKey, testService, []byte(tt.doc)); err != nil {
				t.Errorf("ParseService(%q): %v", tt.doc, err)
			}
		})
	}
}

// TestParseServiceInvalid has one case per decoding check and per rule of
// validate.go.
func TestParseServiceInvalid(t *testing.T) {
	const unknownHint = "unknown field; known fields are"
	tests := []struct {
		name string
		// svc is the service name given to ParseService; empty means
		// testService.
		svc  string
		doc  string
		want []wantField
	}{
		// Whole-document checks.
		{name: "empty", doc: "", want: []wantField{{"", "document is empty"}}},
		{name: "only whitespace", doc: " \n\t\n", want: []wantField{{"", "document is empty"}}},
		{name: "list document", doc: "- port: 80\n", want: []wantField{{"", "must be a mapping of fields, not a list"}}},
		{name: "string document", doc: "reviews\n", want: []wantField{{"", "must be a mapping of fields, not a string"}}},
		{name: "number document", doc: "9080", want: []wantField{{"", "must be a mapping of fields, not a number"}}},
		{name: "null document", doc: "null", want: []wantField{{"", "must be a mapping of fields, not null"}}},
		{name: "yaml syntax", doc: "port: [80\n", want: []wantField{{"", "not valid YAML or JSON"}}},
		{name: "json syntax", doc: `{"port": 80`, want: []wantField{{"", "not valid YAML or JSON"}}},
		{name: "tab indentation", doc: "port: 80\nmtls:\n\tmode: strict\n", want: []wantField{{"", "not valid YAML or JSON"}}},

		// Unknown fields, reported with their full path.
		{name: "unknown top field", doc: "port: 80\nversion: 2\n", want: []wantField{{"version", unknownHint}}},
		{name: "field names are case sensitive", doc: "Port: 80\n", want: []wantField{{"Port", unknownHint}}},
		{name: "unknown subset field", doc: "port: 80\nsubsets: [{name: a, label: {v: a}}]\n", want: []wantField{{"subsets[0].label", "known fields are labels, name"}}},
		{name: "unknown backend field", doc: "port: 80\nroutes:\n- backends: [{}]\n- backends: [{cluster: x}]\n", want: []wantField{{"routes[1].backends[0].cluster", "known fields are subset, weight"}}},
		{name: "unknown path field", doc: "port: 80\nroutes:\n- match: {path: {suffix: /a}}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.path.suffix", "known fields are exact, prefix, regex"}}},
		{name: "unknown header field", doc: "port: 80\nroutes:\n- match: {headers: [{name: a, contains: b}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0].contains", unknownHint}}},
		{name: "unknown retries field", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 1, budget: 2}\n", want: []wantField{{"routes[0].retries.budget", "known fields are attempts, perTryTimeout, retryOn"}}},
		{name: "unknown circuit breaking field", doc: "port: 80\ncircuitBreaking: {maxConns: 1}\n", want: []wantField{{"circuitBreaking.maxConns", unknownHint}}},
		{name: "unknown outlier field", doc: "port: 80\noutlierDetection: {consecutiveErrors: 1}\n", want: []wantField{{"outlierDetection.consecutiveErrors", unknownHint}}},
		{name: "unknown mtls field", doc: "port: 80\nmtls: {mode: strict, enabled: true}\n", want: []wantField{{"mtls.enabled", "known fields are mode"}}},
		{name: "every unknown field", doc: "port: 80\nb: 1\na: 2\n", want: []wantField{{"a", unknownHint}, {"b", unknownHint}}},

		// YAML 1.1 reads a bare on, yes or no as a boolean.
		{name: "bare on key", doc: "port: 80\non: [unavailable]\n", want: []wantField{{"true", unknownHint}}},
		{name: "bare on in retries", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 1, on: [unavailable]}\n", want: []wantField{{"routes[0].retries.true", unknownHint}}},
		{name: "yes as label value", doc: "port: 80\nsubsets: [{name: a, labels: {canary: yes}}]\n", want: []wantField{{"subsets[0].labels.canary", "expected a string, found a boolean"}}},
		{name: "no as header value", doc: "port: 80\nroutes:\n- match: {headers: [{name: x-a, exact: no}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0].exact", "expected a string, found a boolean"}}},

		{name: "off as mtls mode", doc: "port: 80\nmtls: {mode: off}\n", want: []wantField{{"mtls.mode", "expected a string, found a boolean"}}},

		// Values of the wrong kind.
		{name: "port as string", doc: "port: \"9080\"\n", want: []wantField{{"port", "expected a whole number from 0 to 4294967295, found a string"}}},
		{name: "port as fraction", doc: "port: 80.5\n", want: []wantField{{"port", "found 80.5"}}},
		{name: "port negative", doc: "port: -1\n", want: []wantField{{"port", "found -1"}}},
		{name: "port beyond uint32", doc: "port: 4294967296\n", want: []wantField{{"port", "expected a whole number from 0 to 4294967295"}}},
		{name: "timeout as number", doc: "port: 80\nroutes:\n- backends: [{}]\n  timeout: 5\n", want: []wantField{{"routes[0].timeout", "expected a duration string with a unit"}}},
		{name: "labels as list", doc: "port: 80\nsubsets: [{name: a, labels: [version, v1]}]\n", want: []wantField{{"subsets[0].labels", "expected a mapping, found a list"}}},
		{name: "routes as mapping", doc: "port: 80\nroutes: {backends: []}\n", want: []wantField{{"routes", "expected a list, found a mapping"}}},
		{name: "match as string", doc: "port: 80\nroutes:\n- match: /reviews\n  backends: [{}]\n", want: []wantField{{"routes[0].match", "expected a mapping of fields, found a string"}}},
		{name: "present as string", doc: "port: 80\nroutes:\n- match: {headers: [{name: a, present: \"yes\"}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0].present", "expected true or false, found a string"}}},
		{name: "allowedCallers as string", doc: "port: 80\nallowedCallers: spiffe://example.org/a\n", want: []wantField{{"allowedCallers", "expected a list, found a string"}}},
		{name: "weight as string", doc: `{"port": 80, "routes": [{"backends": [{"weight": "50"}]}]}`, want: []wantField{{"routes[0].backends[0].weight", "found a string"}}},

		// Durations.
		{name: "duration without unit", doc: "port: 80\nconnectTimeout: \"5\"\n", want: []wantField{{"connectTimeout", `invalid duration "5"`}}},
		{name: "duration with space", doc: "port: 80\nconnectTimeout: 5 s\n", want: []wantField{{"connectTimeout", `invalid duration "5 s"`}}},
		{name: "negative duration", doc: "port: 80\nconnectTimeout: -1s\n", want: []wantField{{"connectTimeout", "must not be negative"}}},
		{name: "duration unit unknown", doc: "port: 80\noutlierDetection: {interval: 5sec}\n", want: []wantField{{"outlierDetection.interval", `invalid duration "5sec"`}}},
		{name: "per-try timeout", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 1, perTryTimeout: 1d}\n", want: []wantField{{"routes[0].retries.perTryTimeout", `invalid duration "1d"`}}},

		// Service rules.
		{name: "service name from key", svc: "Reviews", doc: "port: 80\n", want: []wantField{{"", `service name "Reviews" from the key is invalid`}}},
		{name: "service name too long", svc: strings.Repeat("a", 64), doc: "port: 80\n", want: []wantField{{"", "at most 63 characters"}}},
		{name: "name mismatch", doc: "name: ratings\nport: 80\n", want: []wantField{{"name", `"ratings" does not match the name "reviews" in the key`}}},
		{name: "protocol unknown", doc: "protocol: https\nport: 80\n", want: []wantField{{"protocol", `"https" is not one of http, http2, grpc, tcp`}}},
		{name: "protocol upper case", doc: "protocol: HTTP\nport: 80\n", want: []wantField{{"protocol", `"HTTP" is not one of`}}},
		{name: "port missing", doc: "protocol: http\n", want: []wantField{{"port", "0 is out of range 1 to 65535"}}},
		{name: "port too large", doc: "port: 65536\n", want: []wantField{{"port", "65536 is out of range 1 to 65535"}}},
		{name: "load balancer unknown", doc: "port: 80\nloadBalancing: maglev\n", want: []wantField{{"loadBalancing", `"maglev" is not one of round_robin, least_request, random, ring_hash`}}},

		// Subsets.
		{name: "subset name invalid", doc: "port: 80\nsubsets: [{name: V1, labels: {v: a}}]\n", want: []wantField{{"subsets[0].name", `"V1" is not a valid subset name`}}},
		{name: "subset name missing", doc: "port: 80\nsubsets: [{labels: {v: a}}]\n", want: []wantField{{"subsets[0].name", `"" is not a valid subset name`}}},
		{name: "duplicate subset", doc: "port: 80\nsubsets: [{name: a, labels: {v: a}}, {name: a, labels: {v: b}}]\n", want: []wantField{{"subsets[1].name", `duplicate subset "a"`}}},
		{name: "subset without labels", doc: "port: 80\nsubsets: [{name: a}]\n", want: []wantField{{"subsets[0].labels", "must select at least one label"}}},
		{name: "subset empty labels", doc: "port: 80\nsubsets: [{name: a, labels: {}}]\n", want: []wantField{{"subsets[0].labels", "must select at least one label"}}},

		// Routes.
		{name: "route name invalid", doc: "port: 80\nroutes:\n- name: My_Route\n  backends: [{}]\n", want: []wantField{{"routes[0].name", `"My_Route" is not a valid route name`}}},
		{name: "duplicate route", doc: "port: 80\nroutes:\n- name: a\n  backends: [{}]\n- name: a\n  backends: [{}]\n", want: []wantField{{"routes[1].name", `duplicate route "a"`}}},
		{name: "tcp two routes", doc: "protocol: tcp\nport: 80\nroutes:\n- backends: [{}]\n- backends: [{}]\n", want: []wantField{{"routes[0]", "a tcp service has at most one route"}, {"routes[1]", "a tcp service has at most one route"}}},
		{name: "tcp route with match", doc: "protocol: tcp\nport: 80\nroutes:\n- match: {path: {prefix: /}}\n  backends: [{}]\n", want: []wantField{{"routes[0]", "takes only backends"}}},
		{name: "tcp route with header", doc: "protocol: tcp\nport: 80\nroutes:\n- match: {headers: [{name: a, present: true}]}\n  backends: [{}]\n", want: []wantField{{"routes[0]", "takes only backends"}}},
		{name: "tcp route with timeout", doc: "protocol: tcp\nport: 80\nroutes:\n- backends: [{}]\n  timeout: 1s\n", want: []wantField{{"routes[0]", "takes only backends"}}},
		{name: "tcp route with retries", doc: "protocol: tcp\nport: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 1}\n", want: []wantField{{"routes[0]", "takes only backends"}}},

		// Path matches.
		{name: "path empty", doc: "port: 80\nroutes:\n- match: {path: {}}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.path", "set exactly one of prefix, exact, regex (found 0)"}}},
		{name: "path two kinds", doc: "port: 80\nroutes:\n- match: {path: {prefix: /a, exact: /a}}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.path", "(found 2)"}}},
		{name: "prefix without slash", doc: "port: 80\nroutes:\n- match: {path: {prefix: reviews}}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.path", "a path must start with /"}}},
		{name: "exact without slash", doc: "port: 80\nroutes:\n- match: {path: {exact: reviews}}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.path", "a path must start with /"}}},
		{name: "path regex invalid", doc: "port: 80\nroutes:\n- backends: [{}]\n- match: {path: {regex: '/a(b'}}\n  backends: [{}]\n", want: []wantField{{"routes[1].match.path.regex", "invalid RE2 expression: error parsing regexp: missing closing )"}}},
		{name: "path regex lookahead", doc: "port: 80\nroutes:\n- match: {path: {regex: '/(?=a)'}}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.path.regex", "invalid RE2 expression"}}},

		// Header matches.
		{name: "header name missing", doc: "port: 80\nroutes:\n- match: {headers: [{exact: a}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0].name", `"" must be a non-empty lower-case header name`}}},
		{name: "header name upper case", doc: "port: 80\nroutes:\n- match: {headers: [{name: End-User, exact: a}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0].name", `"End-User" must be a non-empty lower-case header name`}}},
		{name: "header no condition", doc: "port: 80\nroutes:\n- match: {headers: [{name: a}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0]", "set exactly one of exact, prefix, regex, present (found 0)"}}},
		{name: "header invert only", doc: "port: 80\nroutes:\n- match: {headers: [{name: a, invert: true}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0]", "(found 0)"}}},
		{name: "header two conditions", doc: "port: 80\nroutes:\n- match: {headers: [{name: a, exact: b, present: true}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[0]", "(found 2)"}}},
		{name: "header regex invalid", doc: "port: 80\nroutes:\n- match: {headers: [{name: a, present: true}, {name: b, regex: '[z-a]'}]}\n  backends: [{}]\n", want: []wantField{{"routes[0].match.headers[1].regex", "invalid RE2 expression"}}},

		// Backends.
		{name: "no backends", doc: "port: 80\nroutes:\n- name: a\n", want: []wantField{{"routes[0].backends", "a route needs at least one backend"}}},
		{name: "empty backends", doc: "port: 80\nroutes:\n- backends: []\n", want: []wantField{{"routes[0].backends", "a route needs at least one backend"}}},
		{name: "unknown subset", doc: "port: 80\nsubsets: [{name: v1, labels: {v: a}}]\nroutes:\n- backends: [{}]\n- backends: [{subset: v1, weight: 50}, {subset: v3, weight: 50}]\n", want: []wantField{{"routes[1].backends[1].subset", `unknown subset "v3"; defined subsets are [v1]`}}},
		{name: "unknown subset without subsets", doc: "port: 80\nroutes:\n- backends: [{subset: v1}]\n", want: []wantField{{"routes[0].backends[0].subset", `unknown subset "v1"; defined subsets are []`}}},
		{name: "subset twice in route", doc: "port: 80\nsubsets: [{name: a, labels: {v: a}}]\nroutes:\n- backends: [{subset: a, weight: 50}, {subset: a, weight: 50}]\n", want: []wantField{{"routes[0].backends[1].subset", `subset "a" appears twice in one route`}}},
		{name: "whole service twice in route", doc: "port: 80\nroutes:\n- backends: [{weight: 50}, {weight: 50}]\n", want: []wantField{{"routes[0].backends[1].subset", `subset "" appears twice`}}},
		{name: "weight above 100", doc: "port: 80\nroutes:\n- backends: [{weight: 101}]\n", want: []wantField{{"routes[0].backends[0].weight", "101 is more than 100"}, {"routes[0].backends", "weights add up to 101, not 100"}}},
		{name: "weights below 100", doc: "port: 80\nsubsets: [{name: a, labels: {v: a}}]\nroutes:\n- backends: [{subset: a, weight: 50}, {weight: 30}]\n", want: []wantField{{"routes[0].backends", "weights add up to 80, not 100"}}},
		{name: "weights above 100", doc: "port: 80\nsubsets: [{name: a, labels: {v: a}}]\nroutes:\n- backends: [{subset: a, weight: 80}, {weight: 30}]\n", want: []wantField{{"routes[0].backends", "weights add up to 110, not 100"}}},
		{name: "weights left out of two", doc: "port: 80\nsubsets: [{name: a, labels: {v: a}}]\nroutes:\n- backends: [{subset: a}, {}]\n", want: []wantField{{"routes[0].backends", "weights add up to 0, not 100"}}},
		{name: "single backend partial weight", doc: "port: 80\nroutes:\n- backends: [{weight: 50}]\n", want: []wantField{{"routes[0].backends", "weights add up to 50, not 100"}}},

		// Retries.
		{name: "retries zero attempts", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {retryOn: [5xx]}\n", want: []wantField{{"routes[0].retries.attempts", "0 is out of range 1 to 10"}}},
		{name: "retries eleven attempts", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 11}\n", want: []wantField{{"routes[0].retries.attempts", "11 is out of range 1 to 10"}}},
		{name: "retry condition unknown", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 1, retryOn: [5xx, timeout]}\n", want: []wantField{{"routes[0].retries.retryOn[1]", `"timeout" is not an Envoy retry condition`}}},
		{name: "retry conditions comma joined", doc: "port: 80\nroutes:\n- backends: [{}]\n  retries: {attempts: 1, retryOn: ['5xx,reset']}\n", want: []wantField{{"routes[0].retries.retryOn[0]", `"5xx,reset" is not an Envoy retry condition`}}},

		// Policies.
		{name: "max ejection above 100", doc: "port: 80\noutlierDetection: {maxEjectionPercent: 101}\n", want: []wantField{{"outlierDetection.maxEjectionPercent", "101 is more than 100"}}},
		{name: "mtls mode unknown", doc: "port: 80\nmtls: {mode: STRICT}\n", want: []wantField{{"mtls.mode", `"STRICT" is not one of strict, permissive, disable`}}},
		{name: "mtls without mode", doc: "port: 80\nmtls: {}\n", want: []wantField{{"mtls.mode", `"" is not one of`}}},
		{name: "caller not spiffe", doc: "port: 80\nallowedCallers: [spiffe://example.org/a, productpage]\n", want: []wantField{{"allowedCallers[1]", `"productpage" is not a SPIFFE ID`}}},
		{name: "caller scheme only", doc: "port: 80\nallowedCallers: ['spiffe://']\n", want: []wantField{{"allowedCallers[0]", `"spiffe://" is not a SPIFFE ID`}}},

		// Every rule broken in one document is reported, in the order of the checks.
		{
			name: "several rules",
			doc:  "protocol: udp\nport: 0\nloadBalancing: maglev\nmtls: {mode: none}\n",
			want: []wantField{
				{"protocol", `"udp"`},
				{"port", "0 is out of range"},
				{"loadBalancing", `"maglev"`},
				{"mtls.mode", "is not one of"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := tt.svc
			if svc == "" {
				svc = testService
			}
			key := testPrefix + "services/" + svc
			got, err := mesh.ParseService(key, svc, []byte(tt.doc))
			if got != nil {
				t.Errorf("ParseService returned %+v with the error", got)
			}
			checkFieldErrors(t, err, key, tt.want)
		})
	}
}

func TestParseServiceOversized(t *testing.T) {
	doc := "port: 80\n# " + strings.Repeat("x", mesh.MaxDocumentBytes) + "\n"
	_, err := mesh.ParseService(testServiceKey, testService, []byte(doc))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"", "larger than the limit of 262144"}})

	atLimit := "port: 80\n#" + strings.Repeat("x", mesh.MaxDocumentBytes-len("port: 80\n#"))
	if len(atLimit) != mesh.MaxDocumentBytes {
		t.Fatalf("test document is %d bytes, expected %d", len(atLimit), mesh.MaxDocumentBytes)
	}
	if _, err := mesh.ParseService(testServiceKey, testService, []byte(atLimit)); err != nil {
		t.Errorf("document of exactly MaxDocumentBytes: %v", err)
	}
}

// TestParseServiceDecodeStopsValidation shows that a document with decoding
// errors is not validated: only the decoding errors are reported.
func TestParseServiceDecodeStopsValidation(t *testing.T) {
	doc := "port: 0\nprotocol: udp\nextra: 1\n"
	_, err := mesh.ParseService(testServiceKey, testService, []byte(doc))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"extra", "unknown field"}})
}

// TestParseServiceNullDuration covers a duration field written with no
// value, which YAML reads as null.
func TestParseServiceNullDuration(t *testing.T) {
	doc := "port: 80\nconnectTimeout:\nroutes:\n- backends: [{}]\n  timeout: null\n"
	got, err := mesh.ParseService(testServiceKey, testService, []byte(doc))
	if err != nil {
		t.Fatalf("ParseService: %v", err)
	}
	if got.ConnectTimeout.Duration != 0 {
		t.Errorf("ConnectTimeout = %v, expected 0", got.ConnectTimeout)
	}
}

// TestParseServiceDuplicateKey covers a field written twice.
func TestParseServiceDuplicateKey(t *testing.T) {
	// The YAML conversion rejects the YAML form before the field walk, so
	// only the JSON form gets a field path.
	_, err := mesh.ParseService(testServiceKey, testService, []byte("port: 80\nport: 81\n"))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"", `key "port" already set`}})

	_, err = mesh.ParseService(testServiceKey, testService, []byte(`{"port": 80, "port": 81}`))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"port", "field written twice"}})

	_, err = mesh.ParseService(testServiceKey, testService,
		[]byte(`{"port": 80, "subsets": [{"name": "a", "labels": {"v": "1", "v": "2"}}]}`))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"subsets[0].labels.v", "key written twice"}})
}

// TestParseServiceFieldCase covers JSON field names in another case, which
// encoding/json alone would accept.
func TestParseServiceFieldCase(t *testing.T) {
	_, err := mesh.ParseService(testServiceKey, testService, []byte(`{"Port": 80}`))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"Port", "unknown field"}})
}

// TestParseServiceSecondDocument covers a value holding two YAML
// documents; the conversion to JSON would read only the first.
func TestParseServiceSecondDocument(t *testing.T) {
	doc := "port: 80\n---\nport: nonsense\n"
	_, err := mesh.ParseService(testServiceKey, testService, []byte(doc))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"", "holds 2 YAML documents"}})

	// A leading separator and a trailing comment are one document.
	if _, err := mesh.ParseService(testServiceKey, testService, []byte("---\nport: 80\n---\n# end\n")); err != nil {
		t.Errorf("one document with separators: %v", err)
	}
}

func TestParseEndpointValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"json", `{"address": "10.0.0.1", "port": 80}`},
		{"ipv6", "address: '2001:db8::1'\nport: 80\n"},
		{"max weight", "address: 10.0.0.1\nport: 80\nweight: 128\n"},
		{"max port", "address: 10.0.0.1\nport: 65535\n"},
		{"unhealthy", "address: 10.0.0.1\nport: 80\nhealth: unhealthy\n"},
		{"empty label value", "address: 10.0.0.1\nport: 80\nlabels: {version: ''}\n"},
		{"partial locality", "address: 10.0.0.1\nport: 80\nlocality: {zone: a}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := mesh.ParseEndpoint(testEndpointKey, []byte(tt.doc)); err != nil {
				t.Errorf("ParseEndpoint(%q): %v", tt.doc, err)
			}
		})
	}
}

func TestParseEndpointInvalid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []wantField
	}{
		{"empty", "", []wantField{{"", "document is empty"}}},
		{"list document", "[10.0.0.1, 80]", []wantField{{"", "must be a mapping of fields, not a list"}}},
		{"scalar document", "10.0.0.1:80", []wantField{{"", "must be a mapping of fields, not a string"}}},
		{"unknown field", "address: 10.0.0.1\nport: 80\nhostname: a\n", []wantField{{"hostname", "known fields are address, health, labels, locality, port, weight"}}},
		{"unknown locality field", "address: 10.0.0.1\nport: 80\nlocality: {city: x}\n", []wantField{{"locality.city", "known fields are region, subZone, zone"}}},
		{"port as string", "address: 10.0.0.1\nport: '80'\n", []wantField{{"port", "found a string"}}},
		{"labels as list", "address: 10.0.0.1\nport: 80\nlabels: [v1]\n", []wantField{{"labels", "expected a mapping, found a list"}}},
		{"label value number", "address: 10.0.0.1\nport: 80\nlabels: {version: 2}\n", []wantField{{"labels.version", "expected a string, found a number"}}},
		{"address as number", "address: 10\nport: 80\n", []wantField{{"address", "expected a string, found a number"}}},
		{"address host name", "address: reviews.local\nport: 80\n", []wantField{{"address", `"reviews.local" is not an IPv4 or IPv6 address`}}},
		{"address with port", "address: 10.0.0.1:80\nport: 80\n", []wantField{{"address", "is not an IPv4 or IPv6 address"}}},
		{"address missing", "port: 80\n", []wantField{{"address", `"" is not an IPv4 or IPv6 address`}}},
		{"port missing", "address: 10.0.0.1\n", []wantField{{"port", "0 is out of range 1 to 65535"}}},
		{"port too large", "address: 10.0.0.1\nport: 65536\n", []wantField{{"port", "65536 is out of range"}}},
		{"weight too large", "address: 10.0.0.1\nport: 80\nweight: 129\n", []wantField{{"weight", "129 is out of range 1 to 128"}}},
		{"health unknown", "address: 10.0.0.1\nport: 80\nhealth: up\n", []wantField{{"health", `"up" is not one of healthy, unhealthy, draining`}}},
		{"empty label name", "address: 10.0.0.1\nport: 80\nlabels: {'': x}\n", []wantField{{"labels", "a label name must not be empty"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mesh.ParseEndpoint(testEndpointKey, []byte(tt.doc))
			if got != nil {
				t.Errorf("ParseEndpoint returned %+v with the error", got)
			}
			checkFieldErrors(t, err, testEndpointKey, tt.want)
		})
	}
}

func TestParseEndpointOversized(t *testing.T) {
	doc := "address: 10.0.0.1\nport: 80\n# " + strings.Repeat("x", mesh.MaxDocumentBytes) + "\n"
	_, err := mesh.ParseEndpoint(testEndpointKey, []byte(doc))
	checkFieldErrors(t, err, testEndpointKey, []wantField{{"", "larger than the limit"}})
}

func TestFieldErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *mesh.FieldError
		want string
	}{
		{"with field", &mesh.FieldError{Key: "k", Field: "port", Reason: "bad"}, "k: field port: bad"},
		{"without field", &mesh.FieldError{Key: "k", Reason: "bad"}, "k: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, expected %q", got, tt.want)
			}
			if !errors.Is(tt.err, mesh.ErrInvalid) {
				t.Error("errors.Is(FieldError, ErrInvalid) is false")
			}
		})
	}

	list := mesh.FieldErrors{{Key: "k", Field: "a", Reason: "x"}, {Key: "k", Reason: "y"}}
	if got, want := list.Error(), "k: field a: x; k: y"; got != want {
		t.Errorf("FieldErrors.Error() = %q, expected %q", got, want)
	}
	if errors.Is(mesh.FieldErrors{}, mesh.ErrInvalid) {
		t.Error("errors.Is(empty FieldErrors, ErrInvalid) is true, expected false")
	}
}
