package mesh_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/mesh"
)

// seedFiles returns the contents of the files matching each glob.
func seedFiles(f *testing.F, globs ...string) [][]byte {
	f.Helper()
	var out [][]byte
	for _, glob := range globs {
		paths, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, data)
		}
	}
	return out
}

// checkInvalid asserts the error contract of the parsers: every error
// matches ErrInvalid and names the key.
func checkInvalid(t *testing.T, key string, err error) {
	t.Helper()
	if !errors.Is(err, mesh.ErrInvalid) {
		t.Fatalf("error does not match ErrInvalid: %v", err)
	}
	if !strings.Contains(err.Error(), key) {
		t.Fatalf("error does not name the key %q: %v", key, err)
	}
}

func FuzzParseService(f *testing.F) {
	for name, doc := range demo.Services() {
		f.Add(name, []byte(doc))
	}
	for _, data := range seedFiles(f, "testdata/services/*", "testdata/invalid/*") {
		f.Add(testService, data)
	}
	for _, data := range seedFiles(f, "../docs/examples/*.yaml") {
		f.Add(testService, data)
	}
	f.Add(testService, []byte("port: 80\non: [unavailable]\n"))
	f.Add("tcp", []byte(`{"protocol": "tcp", "port": 5432, "routes": [{"backends": [{}]}]}`))

	f.Fuzz(func(t *testing.T, name string, data []byte) {
		key := mesh.ServiceKey(testPrefix, name)
		svc, err := mesh.ParseService(key, name, data)
		if err != nil {
			if svc != nil {
				t.Fatalf("ParseService returned a service with error %v", err)
			}
			checkInvalid(t, key, err)
			return
		}
		checkValidService(t, key, name, svc)
		checkServiceRoundTrip(t, key, name, svc)
	})
}

// checkValidService asserts facts every accepted service document holds.
func checkValidService(t *testing.T, key, name string, svc *mesh.Service) {
	t.Helper()
	if svc.Key != key || svc.Name != name {
		t.Fatalf("Key, Name = %q, %q, expected %q, %q", svc.Key, svc.Name, key, name)
	}
	if !mesh.ValidName(svc.Name) {
		t.Fatalf("accepted invalid name %q", svc.Name)
	}
	if svc.Port < 1 || svc.Port > 65535 {
		t.Fatalf("accepted port %d", svc.Port)
	}
	if !slices.Contains([]mesh.Protocol{mesh.ProtocolHTTP, mesh.ProtocolHTTP2, mesh.ProtocolGRPC, mesh.ProtocolTCP}, svc.Protocol) {
		t.Fatalf("accepted protocol %q", svc.Protocol)
	}
	for i, r := range svc.Routes {
		var sum uint32
		for _, be := range r.Backends {
			sum += be.Weight
		}
		if len(r.Backends) == 0 || (len(r.Backends) > 1 && sum != 100) {
			t.Fatalf("routes[%d]: accepted backends %+v", i, r.Backends)
		}
	}
}

// checkServiceRoundTrip asserts that an accepted service, written back as
// JSON, parses again to the same JSON.
func checkServiceRoundTrip(t *testing.T, key, name string, svc *mesh.Service) {
	t.Helper()
	first, err := json.Marshal(svc)
	if err != nil {
		t.Fatalf("marshal accepted service: %v", err)
	}
	again, err := mesh.ParseService(key, name, first)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", first, err)
	}
	second, err := json.Marshal(again)
	if err != nil {
		t.Fatalf("marshal re-parsed service: %v", err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("round trip changed the document:\n%s\n%s", first, second)
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, inst := range demo.Instances() {
		doc, err := json.Marshal(mesh.Endpoint{Address: "127.0.0.1", Port: demo.Port, Labels: inst.Labels})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	for _, data := range seedFiles(f, "testdata/endpoints/*", "../docs/examples/*.endpoint.yaml") {
		f.Add(data)
	}
	f.Add([]byte("address: '::1'\nport: 1\nlabels: {'': x}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		ep, err := mesh.ParseEndpoint(testEndpointKey, data)
		if err != nil {
			if ep != nil {
				t.Fatalf("ParseEndpoint returned an endpoint with error %v", err)
			}
			checkInvalid(t, testEndpointKey, err)
			return
		}
		checkValidEndpoint(t, ep)

		first, err := json.Marshal(ep)
		if err != nil {
			t.Fatalf("marshal accepted endpoint: %v", err)
		}
		again, err := mesh.ParseEndpoint(testEndpointKey, first)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", first, err)
		}
		second, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("marshal re-parsed endpoint: %v", err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the document:\n%s\n%s", first, second)
		}
	})
}

// checkValidEndpoint asserts facts every accepted endpoint document holds.
func checkValidEndpoint(t *testing.T, ep *mesh.Endpoint) {
	t.Helper()
	if ep.Key != testEndpointKey {
		t.Fatalf("Key = %q, expected %q", ep.Key, testEndpointKey)
	}
	if _, err := netip.ParseAddr(ep.Address); err != nil {
		t.Fatalf("accepted address %q: %v", ep.Address, err)
	}
	if ep.Port < 1 || ep.Port > 65535 {
		t.Fatalf("accepted port %d", ep.Port)
	}
	if ep.Weight < 1 || ep.Weight > 128 {
		t.Fatalf("accepted weight %d", ep.Weight)
	}
	if !slices.Contains([]string{mesh.HealthHealthy, mesh.HealthUnhealthy, mesh.HealthDraining}, ep.Health) {
		t.Fatalf("accepted health %q", ep.Health)
	}
}
