package etcd

import (
	"context"
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/tether-mesh/tether/mesh"
)

const namingPrefix = "/naming/"

func TestWatcherFollowsNamingFormat(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	manager, err := endpoints.NewManager(client, namingPrefix+"reviews")
	if err != nil {
		t.Fatalf("create naming manager: %v", err)
	}
	listedKey := namingPrefix + "reviews/10.0.0.1:9080"
	err = manager.AddEndpoint(ctx, listedKey, endpoints.Endpoint{
		Addr:     "10.0.0.1:9080",
		Metadata: map[string]string{"version": "v1"},
	})
	if err != nil {
		t.Fatalf("add endpoint: %v", err)
	}
	put(t, client, endpointKey("reviews", "native"), endpointDoc("10.0.0.5"))

	_, rec, reg := startWatcher(t, Config{Client: client, NamingPrefixes: []string{namingPrefix}})
	first := rec.waitFor(t, "with the listed naming endpoint", hasEndpoint("reviews", listedKey))
	ep := first.Endpoints["reviews"].Instances[listedKey]
	if ep.Address != "10.0.0.1" || ep.Port != 9080 {
		t.Errorf("listed endpoint = %s port %d, expected 10.0.0.1 port 9080", ep.Address, ep.Port)
	}
	if !maps.Equal(ep.Labels, map[string]string{"version": "v1"}) {
		t.Errorf("listed endpoint labels = %v, expected version=v1", ep.Labels)
	}
	if !hasEndpoint("reviews", "native")(first) {
		t.Error("native endpoint missing next to the naming endpoint")
	}

	watchedKey := namingPrefix + "reviews/ipv6"
	err = manager.AddEndpoint(ctx, watchedKey, endpoints.Endpoint{
		Addr:     "[2001:db8::1]:9080",
		Metadata: map[string]any{"weight": 3},
	})
	if err != nil {
		t.Fatalf("add endpoint: %v", err)
	}
	got := rec.waitFor(t, "with the watched naming endpoint", hasEndpoint("reviews", watchedKey))
	ep = got.Endpoints["reviews"].Instances[watchedKey]
	if ep.Address != "2001:db8::1" || ep.Port != 9080 {
		t.Errorf("watched endpoint = %s port %d, expected 2001:db8::1 port 9080", ep.Address, ep.Port)
	}
	if ep.Labels != nil {
		t.Errorf("labels from non-string metadata = %v, expected none", ep.Labels)
	}

	// A host name is invalid: the mesh routes to addresses only.
	invalidKey := namingPrefix + "reviews/by-name"
	err = manager.AddEndpoint(ctx, invalidKey, endpoints.Endpoint{Addr: "reviews.internal:9080"})
	if err != nil {
		t.Fatalf("add endpoint: %v", err)
	}
	got = rec.waitFor(t, "with the invalid naming endpoint", func(s *mesh.State) bool { return s.Invalid[invalidKey] != nil })
	if fields := invalidFields(got.Invalid[invalidKey]); !slices.Equal(fields, []string{"Addr"}) {
		t.Errorf("invalid fields = %v, expected [Addr]", fields)
	}
	if v := metricValue(t, reg, "tether_store_invalid_documents_total", nil); v != 1 {
		t.Errorf("invalid documents total = %v, expected 1", v)
	}

	if err := manager.DeleteEndpoint(ctx, listedKey); err != nil {
		t.Fatalf("delete endpoint: %v", err)
	}
	if err := manager.DeleteEndpoint(ctx, invalidKey); err != nil {
		t.Fatalf("delete endpoint: %v", err)
	}
	got = rec.waitFor(t, "without the deleted naming endpoints", func(s *mesh.State) bool {
		return !hasEndpoint("reviews", listedKey)(s) && s.Invalid[invalidKey] == nil
	})
	if !hasEndpoint("reviews", watchedKey)(got) {
		t.Error("remaining naming endpoint disappeared")
	}
}

func TestWatcherNamingResyncDeletesVanishedKeys(t *testing.T) {
	server := startEtcd(t)
	writer := newClient(t, server.endpoint())
	proxy := startProxy(t, server.endpoint())
	client := newClient(t, proxy.Addr())

	key := namingPrefix + "ratings/a"
	put(t, writer, key, `{"Op":0,"Addr":"10.0.0.7:9080","Metadata":null}`)
	_, rec, _ := startWatcher(t, Config{
		Client:         client,
		NamingPrefixes: []string{namingPrefix},
		SilenceTimeout: time.Minute,
	})
	rec.waitFor(t, "with ratings/a", hasEndpoint("ratings", key))

	proxy.Cut()
	rev := del(t, writer, key)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := writer.Compact(ctx, rev); err != nil {
		t.Fatalf("compact at %d: %v", rev, err)
	}
	proxy.Restore()

	got := rec.waitFor(t, "without the vanished naming key", not(hasEndpoint("ratings", key)))
	if _, ok := got.Endpoints["ratings"]; ok {
		t.Error("service ratings still has an endpoint set after its only endpoint vanished")
	}
}

func TestParseNamingEndpoint(t *testing.T) {
	const key = namingPrefix + "reviews/a"
	tests := []struct {
		name        string
		value       string
		wantAddress string
		wantPort    uint32
		wantLabels  map[string]string
		wantField   string // field of the expected error, "-" for none
	}{
		{name: "ipv4 with labels", value: `{"Op":0,"Addr":"10.0.0.1:80","Metadata":{"zone":"a"}}`,
			wantAddress: "10.0.0.1", wantPort: 80, wantLabels: map[string]string{"zone": "a"}, wantField: "-"},
		{name: "ipv6", value: `{"Addr":"[::1]:65535"}`, wantAddress: "::1", wantPort: 65535, wantField: "-"},
		{name: "metadata not a map", value: `{"Addr":"10.0.0.1:80","Metadata":"x"}`,
			wantAddress: "10.0.0.1", wantPort: 80, wantField: "-"},
		{name: "metadata with a number", value: `{"Addr":"10.0.0.1:80","Metadata":{"a":"b","n":1}}`,
			wantAddress: "10.0.0.1", wantPort: 80, wantField: "-"},
		{name: "unknown field ignored", value: `{"Addr":"10.0.0.1:80","Extra":true}`,
			wantAddress: "10.0.0.1", wantPort: 80, wantField: "-"},
		{name: "host name", value: `{"Addr":"db.internal:80"}`, wantField: "Addr"},
		{name: "missing port", value: `{"Addr":"10.0.0.1"}`, wantField: "Addr"},
		{name: "port zero", value: `{"Addr":"10.0.0.1:0"}`, wantField: "Addr"},
		{name: "port too large", value: `{"Addr":"10.0.0.1:65536"}`, wantField: "Addr"},
		{name: "empty label name", value: `{"Addr":"10.0.0.1:80","Metadata":{"":"x"}}`, wantField: "Metadata"},
		{name: "not json", value: `Addr: 10.0.0.1:80`, wantField: ""},
		{name: "json array", value: `[1]`, wantField: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := parseNamingEndpoint(key, []byte(tt.value))
			if tt.wantField != "-" {
				if err == nil {
					t.Fatalf("parse returned %+v, expected an error in field %q", ep, tt.wantField)
				}
				if fields := invalidFields(err); !slices.Equal(fields, []string{tt.wantField}) {
					t.Errorf("error fields = %v, expected [%s] (error %v)", fields, tt.wantField, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if ep.Address != tt.wantAddress || ep.Port != tt.wantPort {
				t.Errorf("endpoint = %s port %d, expected %s port %d", ep.Address, ep.Port, tt.wantAddress, tt.wantPort)
			}
			if !maps.Equal(ep.Labels, tt.wantLabels) {
				t.Errorf("labels = %v, expected %v", ep.Labels, tt.wantLabels)
			}
			if ep.Key != key || ep.Weight != 1 || ep.Health != mesh.HealthHealthy {
				t.Errorf("endpoint key, weight, health = %q, %d, %q; expected %q, 1, healthy",
					ep.Key, ep.Weight, ep.Health, key)
			}
		})
	}
}

func TestParseNamingKey(t *testing.T) {
	tests := []struct {
		name         string
		key          string
		wantService  string
		wantInstance string
		wantErr      bool
	}{
		{name: "service and instance", key: "/naming/reviews/10.0.0.1:80", wantService: "reviews", wantInstance: "10.0.0.1:80"},
		{name: "nested instance", key: "/naming/reviews/a/b", wantService: "reviews", wantInstance: "a/b"},
		{name: "no instance", key: "/naming/reviews", wantErr: true},
		{name: "empty instance", key: "/naming/reviews/", wantErr: true},
		{name: "empty service", key: "/naming//a", wantErr: true},
		{name: "upper-case service", key: "/naming/Reviews/a", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service, instance, err := parseNamingKey(namingPrefix, tt.key)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseNamingKey(%q) error = %v, expected error: %v", tt.key, err, tt.wantErr)
			}
			if service != tt.wantService || instance != tt.wantInstance {
				t.Errorf("parseNamingKey(%q) = %q, %q; expected %q, %q",
					tt.key, service, instance, tt.wantService, tt.wantInstance)
			}
		})
	}
}

func FuzzParseNamingEndpoint(f *testing.F) {
	seeds := []string{
		`{"Op":0,"Addr":"10.0.0.1:80","Metadata":{"zone":"a"}}`,
		`{"Addr":"[fe80::1%eth0]:443","Metadata":null}`,
		`{"Addr":"db:80","Metadata":[1,2]}`,
		`{"Addr":"10.0.0.1:80","Metadata":{"":""}}`,
		`null`,
		`{"Addr":1}`,
	}
	for _, s := range seeds {
		f.Add("reviews/a", []byte(s))
	}
	f.Fuzz(func(t *testing.T, rest string, value []byte) {
		key := namingPrefix + rest
		// Any key must parse or fail without a panic.
		_, _, _ = parseNamingKey(namingPrefix, key)
		ep, err := parseNamingEndpoint(key, value)
		if err != nil {
			if invalidFields(err) == nil {
				t.Fatalf("error %v is not a mesh field error", err)
			}
			return
		}
		if _, err := netip.ParseAddr(ep.Address); err != nil {
			t.Errorf("accepted address %q is not an IP address", ep.Address)
		}
		if ep.Port == 0 || ep.Port > 65535 {
			t.Errorf("accepted port %d is out of range", ep.Port)
		}
		// An accepted endpoint must pass the native document parser too.
		doc, err := json.Marshal(ep)
		if err != nil {
			t.Fatalf("encode accepted endpoint: %v", err)
		}
		if _, err := mesh.ParseEndpoint(key, doc); err != nil {
			t.Errorf("accepted endpoint fails mesh.ParseEndpoint: %v", err)
		}
	})
}
