package mesh_test

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tether-mesh/tether/mesh"
)

const (
	validService   = "port: 9080\n"
	changedService = "port: 9081\n"
	invalidService = "port: 0\n"
)

func endpointDoc(address string) []byte {
	return []byte("address: " + address + "\nport: 9080\nlabels: {version: v1}\n")
}

func mustPut(t *testing.T, b *mesh.Builder, key string, value []byte) {
	t.Helper()
	if err := b.Put(key, value); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		kind     mesh.KeyKind
		service  string
		instance string
	}{
		{"service", "/tether/services/reviews", mesh.KeyService, "reviews", ""},
		{"endpoint", "/tether/endpoints/reviews/reviews-v1", mesh.KeyEndpoint, "reviews", "reviews-v1"},
		{"instance with slash", "/tether/endpoints/reviews/pod/1", mesh.KeyEndpoint, "reviews", "pod/1"},
		{"service name not checked", "/tether/services/Not_Valid", mesh.KeyService, "Not_Valid", ""},
		{"outside prefix", "/other/services/reviews", mesh.KeyUnknown, "", ""},
		{"prefix without slash", "/tetherservices/reviews", mesh.KeyUnknown, "", ""},
		{"prefix itself", "/tether/", mesh.KeyUnknown, "", ""},
		{"services dir", "/tether/services/", mesh.KeyUnknown, "", ""},
		{"nested service", "/tether/services/reviews/v1", mesh.KeyUnknown, "", ""},
		{"endpoint without instance", "/tether/endpoints/reviews/", mesh.KeyUnknown, "", ""},
		{"endpoint without slash", "/tether/endpoints/reviews", mesh.KeyUnknown, "", ""},
		{"endpoint without service", "/tether/endpoints//x", mesh.KeyUnknown, "", ""},
		{"other dir", "/tether/policies/x", mesh.KeyUnknown, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, service, instance := mesh.ParseKey(testPrefix, tt.key)
			if kind != tt.kind {
				t.Errorf("kind = %v, expected %v", kind, tt.kind)
			}
			if service != tt.service {
				t.Errorf("service = %q, expected %q", service, tt.service)
			}
			if instance != tt.instance {
				t.Errorf("instance = %q, expected %q", instance, tt.instance)
			}
		})
	}
}

func TestServiceAndEndpointKey(t *testing.T) {
	if got := mesh.ServiceKey(testPrefix, "reviews"); got != testServiceKey {
		t.Errorf("ServiceKey = %q, expected %q", got, testServiceKey)
	}
	if got := mesh.EndpointKey(testPrefix, "reviews", "reviews-v2"); got != testEndpointKey {
		t.Errorf("EndpointKey = %q, expected %q", got, testEndpointKey)
	}
}

func TestBuilderInvalidPutKeepsLastGood(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	mustPut(t, b, testServiceKey, []byte(validService))
	first := b.State().Services[testService]

	err := b.Put(testServiceKey, []byte(invalidService))
	checkFieldErrors(t, err, testServiceKey, []wantField{{"port", "0 is out of range"}})

	st := b.State()
	if st.Services[testService] != first {
		t.Errorf("service = %+v, expected the first value %+v", st.Services[testService], first)
	}
	if st.Services[testService].Port != 9080 {
		t.Errorf("port = %d, expected 9080", st.Services[testService].Port)
	}
	if got := st.Invalid[testServiceKey]; !errors.Is(got, mesh.ErrInvalid) {
		t.Errorf("Invalid[%s] = %v, expected an ErrInvalid error", testServiceKey, got)
	}

	mustPut(t, b, testServiceKey, []byte(changedService))
	st = b.State()
	if _, ok := st.Invalid[testServiceKey]; ok {
		t.Errorf("Invalid still contains %s after a valid Put", testServiceKey)
	}
	if st.Services[testService].Port != 9081 {
		t.Errorf("port = %d, expected 9081 from the last valid Put", st.Services[testService].Port)
	}
}

func TestBuilderInvalidFirstPut(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	if err := b.Put(testServiceKey, []byte(invalidService)); err == nil {
		t.Fatal("Put of an invalid document returned nil")
	}
	st := b.State()
	if _, ok := st.Services[testService]; ok {
		t.Error("an invalid first document produced a service")
	}
	if _, ok := st.Invalid[testServiceKey]; !ok {
		t.Errorf("Invalid does not contain %s", testServiceKey)
	}
}

func TestBuilderDeleteClearsValueAndError(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	mustPut(t, b, testServiceKey, []byte(validService))
	mustPut(t, b, testEndpointKey, endpointDoc("10.0.0.1"))
	if err := b.Put(testServiceKey, []byte(invalidService)); err == nil {
		t.Fatal("Put of an invalid document returned nil")
	}
	if err := b.Put(testEndpointKey, []byte("port: 1\n")); err == nil {
		t.Fatal("Put of an invalid endpoint returned nil")
	}
	if got := b.State().Endpoints[testService].Instances["reviews-v2"].Address; got != "10.0.0.1" {
		t.Errorf("endpoint address = %q after an invalid Put, expected the last good 10.0.0.1", got)
	}

	b.Delete(testServiceKey)
	b.Delete(testEndpointKey)
	st := b.State()
	if len(st.Services) != 0 {
		t.Errorf("Services = %v after Delete, expected none", st.Services)
	}
	if len(st.Endpoints) != 0 {
		t.Errorf("Endpoints = %v after Delete, expected none", st.Endpoints)
	}
	if len(st.Invalid) != 0 {
		t.Errorf("Invalid = %v after Delete, expected none", st.Invalid)
	}
	if keys := b.Keys(); len(keys) != 0 {
		t.Errorf("Keys() = %v after Delete, expected none", keys)
	}
}

func TestBuilderEndpointKeyInvalidService(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	key := "/tether/endpoints/Reviews_Svc/a"
	err := b.Put(key, endpointDoc("10.0.0.1"))
	checkFieldErrors(t, err, key, []wantField{{"", `service name "Reviews_Svc" in the key is invalid`}})

	st := b.State()
	if len(st.Endpoints) != 0 {
		t.Errorf("Endpoints = %v, expected none", st.Endpoints)
	}
	if _, ok := st.Invalid[key]; !ok {
		t.Errorf("Invalid does not contain %s", key)
	}
}

func TestBuilderServiceKeyInvalidName(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	key := "/tether/services/Reviews"
	err := b.Put(key, []byte(validService))
	checkFieldErrors(t, err, key, []wantField{{"", `service name "Reviews" from the key is invalid`}})
}

func TestBuilderUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		key  string
	}{
		{"unknown dir under prefix", "/tether/policies/x"},
		{"nested service", "/tether/services/reviews/v1"},
		{"endpoint without instance", "/tether/endpoints/reviews/"},
		// The builder does not tell keys outside its prefix apart: they
		// are unknown keys like the others, recorded as invalid.
		{"outside prefix", "/other/services/reviews"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mesh.NewBuilder(testPrefix)
			err := b.Put(tt.key, []byte(validService))
			checkFieldErrors(t, err, tt.key, []wantField{{"", "unknown key: expected services/<name> or endpoints/<service>/<instance> under /tether/"}})

			st := b.State()
			if len(st.Services) != 0 || len(st.Endpoints) != 0 {
				t.Errorf("state has services %v and endpoints %v, expected none", st.Services, st.Endpoints)
			}
			if _, ok := st.Invalid[tt.key]; !ok {
				t.Errorf("Invalid does not contain %s", tt.key)
			}
			if keys := b.Keys(); !slices.Equal(keys, []string{tt.key}) {
				t.Errorf("Keys() = %v, expected [%s]", keys, tt.key)
			}

			b.Delete(tt.key)
			if len(b.State().Invalid) != 0 || len(b.Keys()) != 0 {
				t.Errorf("after Delete: Invalid %v, Keys %v, expected both empty", b.State().Invalid, b.Keys())
			}
		})
	}
}

func TestBuilderKeysListsValidAndInvalid(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	mustPut(t, b, testServiceKey, []byte(validService))
	mustPut(t, b, testEndpointKey, endpointDoc("10.0.0.1"))
	_ = b.Put("/tether/services/ratings", []byte(invalidService))
	_ = b.Put("/tether/unknown", []byte(validService))
	b.TrackKey("/naming/reviews/x")
	b.SetInvalid("/naming/reviews/y", &mesh.FieldError{Key: "/naming/reviews/y", Reason: "bad"})

	want := []string{
		"/naming/reviews/x",
		"/naming/reviews/y",
		"/tether/endpoints/reviews/reviews-v2",
		"/tether/services/ratings",
		"/tether/services/reviews",
		"/tether/unknown",
	}
	if got := b.Keys(); !slices.Equal(got, want) {
		t.Errorf("Keys() =\n%v\nexpected\n%v", got, want)
	}

	b.ClearInvalid("/naming/reviews/y")
	if _, ok := b.State().Invalid["/naming/reviews/y"]; ok {
		t.Error("ClearInvalid left the error in place")
	}
	if !slices.Contains(b.Keys(), "/naming/reviews/y") {
		t.Error("ClearInvalid removed the key from Keys(), expected only the error to go")
	}
}

// TestBuilderStatesImmutable checks that a State handed out is not changed
// by later calls, by pointer and by content.
func TestBuilderStatesImmutable(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	b.SetRevision(7)
	mustPut(t, b, testServiceKey, []byte(validService))
	mustPut(t, b, testEndpointKey, endpointDoc("10.0.0.1"))
	_ = b.Put("/tether/services/ratings", []byte(invalidService))
	st := b.State()

	svc := st.Services[testService]
	svcCopy := *svc
	set := st.Endpoints[testService]
	instances := make(map[string]*mesh.Endpoint, len(set.Instances))
	for name, ep := range set.Instances {
		instances[name] = ep
	}
	ep := set.Instances["reviews-v2"]
	epCopy := *ep
	epCopy.Labels = maps.Clone(ep.Labels)

	b.SetRevision(8)
	mustPut(t, b, testServiceKey, []byte(changedService))
	mustPut(t, b, testEndpointKey, endpointDoc("10.0.0.2"))
	mustPut(t, b, "/tether/endpoints/reviews/reviews-v3", endpointDoc("10.0.0.3"))
	mustPut(t, b, "/tether/services/ratings", []byte(validService))
	mustPut(t, b, "/tether/services/details", []byte(validService))
	b.Delete("/tether/endpoints/reviews/reviews-v3")

	if st.Revision != 7 {
		t.Errorf("Revision = %d, expected 7", st.Revision)
	}
	if got := st.ServiceNames(); !slices.Equal(got, []string{"reviews"}) {
		t.Errorf("ServiceNames() = %v, expected [reviews]", got)
	}
	if st.Services[testService] != svc {
		t.Error("Services[reviews] pointer changed")
	}
	if !reflect.DeepEqual(*svc, svcCopy) {
		t.Errorf("service content changed to %+v, expected %+v", *svc, svcCopy)
	}
	if st.Endpoints[testService] != set {
		t.Error("Endpoints[reviews] pointer changed")
	}
	if !reflect.DeepEqual(set.Instances, instances) {
		t.Errorf("Instances = %v, expected %v", set.Instances, instances)
	}
	if !reflect.DeepEqual(*ep, epCopy) {
		t.Errorf("endpoint content changed to %+v, expected %+v", *ep, epCopy)
	}
	if _, ok := st.Invalid["/tether/services/ratings"]; !ok {
		t.Error("Invalid lost /tether/services/ratings after a later valid Put")
	}
	if st.EndpointCount() != 1 {
		t.Errorf("EndpointCount() = %d, expected 1", st.EndpointCount())
	}
}

// TestBuilderSharesUnchangedPointers checks the contract consumers rely
// on: between two States, only what changed has a new pointer.
func TestBuilderSharesUnchangedPointers(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	for _, name := range []string{"reviews", "ratings"} {
		mustPut(t, b, mesh.ServiceKey(testPrefix, name), []byte(validService))
		mustPut(t, b, mesh.EndpointKey(testPrefix, name, name+"-v1"), endpointDoc("10.0.0.1"))
	}
	before := b.State()

	mustPut(t, b, mesh.EndpointKey(testPrefix, "reviews", "reviews-v2"), endpointDoc("10.0.0.2"))
	after := b.State()

	for _, name := range []string{"reviews", "ratings"} {
		if after.Services[name] != before.Services[name] {
			t.Errorf("Services[%s] pointer changed, expected it kept", name)
		}
	}
	if after.Endpoints["ratings"] != before.Endpoints["ratings"] {
		t.Error("Endpoints[ratings] pointer changed, expected it kept")
	}
	if after.Endpoints["reviews"] == before.Endpoints["reviews"] {
		t.Error("Endpoints[reviews] pointer kept, expected a new set")
	}
	if got := after.Endpoints["reviews"].SortedInstances(); !slices.Equal(got, []string{"reviews-v1", "reviews-v2"}) {
		t.Errorf("reviews instances = %v, expected [reviews-v1 reviews-v2]", got)
	}
	if after.Endpoints["reviews"].Instances["reviews-v1"] != before.Endpoints["reviews"].Instances["reviews-v1"] {
		t.Error("unchanged endpoint reviews-v1 got a new pointer")
	}

	// An invalid Put changes nothing that consumers compare.
	_ = b.Put(mesh.EndpointKey(testPrefix, "ratings", "ratings-v1"), []byte("port: 0\n"))
	third := b.State()
	if third.Endpoints["ratings"] != after.Endpoints["ratings"] {
		t.Error("an invalid endpoint Put replaced Endpoints[ratings]")
	}
	if third.Services["reviews"] != after.Services["reviews"] {
		t.Error("an invalid endpoint Put replaced Services[reviews]")
	}
}

func TestBuilderDeleteLastEndpointRemovesSet(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	mustPut(t, b, testEndpointKey, endpointDoc("10.0.0.1"))
	mustPut(t, b, "/tether/endpoints/reviews/reviews-v3", endpointDoc("10.0.0.3"))

	b.Delete(testEndpointKey)
	if got := b.State().Endpoints[testService].SortedInstances(); !slices.Equal(got, []string{"reviews-v3"}) {
		t.Errorf("instances = %v, expected [reviews-v3]", got)
	}
	b.Delete("/tether/endpoints/reviews/reviews-v3")
	if _, ok := b.State().Endpoints[testService]; ok {
		t.Error("deleting the last instance left an empty EndpointSet")
	}

	// Deleting a key the builder never saw is a no-op.
	b.Delete("/tether/endpoints/reviews/never")
	b.Delete("/tether/services/never")
}

func TestBuilderSetEndpoints(t *testing.T) {
	b := mesh.NewBuilder(testPrefix)
	ep := &mesh.Endpoint{Address: "10.0.0.9", Port: 80, Weight: 1, Health: mesh.HealthHealthy}
	in := map[string]*mesh.Endpoint{"a": ep}
	b.SetEndpoints("reviews", in)
	in["b"] = ep
	if got := b.State().Endpoints["reviews"].SortedInstances(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("instances = %v, expected [a]: SetEndpoints must copy the caller's map", got)
	}
	b.SetEndpoints("reviews", nil)
	if _, ok := b.State().Endpoints["reviews"]; ok {
		t.Error("SetEndpoints with no instances left a set")
	}
}

func TestBuilderPrefix(t *testing.T) {
	b := mesh.NewBuilder("/mesh/")
	if b.Prefix() != "/mesh/" {
		t.Errorf("Prefix() = %q, expected /mesh/", b.Prefix())
	}
	err := b.Put(testServiceKey, []byte(validService))
	if err == nil || !strings.Contains(err.Error(), "under /mesh/") {
		t.Errorf("Put of a key under another prefix: %v, expected an unknown key error naming /mesh/", err)
	}
}
