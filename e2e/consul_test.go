package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/internal/consultest"
	"github.com/tether-mesh/tether/mesh"
)

func TestConsulCatalogMovesTraffic(t *testing.T) {
	c := startConsulEnv(t)
	ratings := c.dial("xds:///ratings", "consul-catalog")
	if got := call(t, ratings, 10); got["ratings-v1"] != 10 {
		t.Fatalf("ratings replies = %v, want all 10 from ratings-v1", got)
	}

	second := c.startBackend(demoInstance("ratings", "ratings-v1-b", "v1"))
	c.register(second)
	eventually(t, ratings, 20, "traffic on the registered instance ratings-v1-b", func(m map[string]int) bool {
		return m["ratings-v1-b"] > 0 && m["ratings-v1"] > 0
	})

	c.setTTL("ratings-v1-b", api.HealthCritical)
	eventually(t, ratings, 20, "no traffic on ratings-v1-b once its TTL check failed", func(m map[string]int) bool {
		return m["ratings-v1"] == 20
	})

	c.setTTL("ratings-v1-b", api.HealthPassing)
	eventually(t, ratings, 20, "traffic on ratings-v1-b once its TTL check passed again", func(m map[string]int) bool {
		return m["ratings-v1-b"] > 0
	})

	c.deregister("ratings-v1")
	eventually(t, ratings, 20, "no traffic on the deregistered ratings-v1", func(m map[string]int) bool {
		return m["ratings-v1-b"] == 20
	})
}

func TestConsulRouteWeightsFollowKV(t *testing.T) {
	c := startConsulEnv(t)
	reviews := c.dial("xds:///reviews", "consul-weights")

	expectDemoSplit(t, reviews)
	if got := call(t, reviews, 10, "end-user", "jason"); got["reviews-v2"] != 10 {
		t.Errorf("requests with end-user: jason went to %v, want all 10 on reviews-v2", got)
	}

	c.putKV(mesh.ServiceKey(consulPrefix, "reviews"), `protocol: grpc
port: 9080
subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
routes:
  - backends: [{subset: v1, weight: 0}, {subset: v3, weight: 100}]
`)
	eventually(t, reviews, 20, "all traffic on reviews-v3", func(m map[string]int) bool {
		return m["reviews-v3"] == 20
	})
}

func TestConsulInvalidDocumentReported(t *testing.T) {
	c := startConsulEnv(t)
	reviews := c.dial("xds:///reviews", "consul-invalid")
	if got := call(t, reviews, 10, "end-user", "jason"); got["reviews-v2"] != 10 {
		t.Fatalf("before: %v, want jason on reviews-v2", got)
	}

	key := mesh.ServiceKey(consulPrefix, "reviews")
	c.putKV(key, "protocol: grpc\nport: 9080\nroutes:\n  - backends: [{subset: v9}]\n")
	// Another service changes after the bad write; seeing it proves the
	// watcher kept going.
	c.putKV(mesh.ServiceKey(consulPrefix, "extra"), "protocol: grpc\nport: 9090\n")
	dump := c.waitForService("extra")

	msg := dump.Mesh.Invalid[key]
	if want := "field routes[0].backends[0].subset"; !strings.Contains(msg, want) {
		t.Errorf("config_dump invalid[%s] = %q, want an error naming %s", key, msg, want)
	}
	if !strings.HasPrefix(msg, key+":") {
		t.Errorf("config_dump invalid[%s] = %q, want the message to start with the key", key, msg)
	}
	if len(dump.Mesh.Invalid) != 1 {
		t.Errorf("config_dump invalid = %v, want only %s", dump.Mesh.Invalid, key)
	}
	if got := call(t, reviews, 10, "end-user", "jason"); got["reviews-v2"] != 10 {
		t.Errorf("after the invalid write: %v, want the last good routing (jason on reviews-v2)", got)
	}
	if got := call(t, c.dial("xds:///ratings", "consul-invalid-ratings"), 5); got["ratings-v1"] != 5 {
		t.Errorf("ratings after the invalid write: %v, want all 5 on ratings-v1", got)
	}
	metrics := c.getText("/metrics")
	if !strings.Contains(metrics, `tether_store_invalid_documents{source="consul"} 1`) {
		t.Errorf("metrics lack tether_store_invalid_documents 1:\n%s", grep(metrics, "invalid"))
	}
}

// configDump is the part of /debug/config_dump the Consul tests read.
type configDump struct {
	Source string `json:"source"`
	Mesh   struct {
		Services map[string]any    `json:"services"`
		Invalid  map[string]string `json:"invalid"`
	} `json:"mesh"`
	// Resources maps a type URL to resource name to the resource.
	Resources map[string]map[string]json.RawMessage `json:"resources"`
}

// waitForService polls /debug/config_dump until the mesh holds service,
// and returns that dump.
func (c *consulEnv) waitForService(service string) configDump {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var dump configDump
		c.getJSON("/debug/config_dump", &dump)
		if dump.Mesh.Services[service] != nil {
			return dump
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("service %s not in config_dump within %s; invalid: %v", service, waitTimeout, dump.Mesh.Invalid)
		}
		time.Sleep(20 * time.Millisecond) // polling an HTTP endpoint; nothing to await
	}
}

func TestConsulResourcesMatchEtcd(t *testing.T) {
	consul := consultest.StartAgent(t)
	etcd := startParityEtcd(t)
	for _, tc := range parityCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			fromEtcd := etcd.state(t, tc)
			fromConsul := consulState(t, consul, tc)
			compareStates(t, fromEtcd, fromConsul)
			compareResources(t, translate(t, fromEtcd), translate(t, fromConsul))
		})
	}
}

func TestBinaryConsulConfigAndAgent(t *testing.T) {
	consul := consultest.StartAgent(t)
	bin := buildBinary(t)
	consulFlags := []string{"--source", "consul", "--consul-addr", consul.Addr()}

	out, err := run(t, bin, append([]string{"config", "apply", "-f", "../docs/examples/reviews.yaml"}, consulFlags...)...)
	if err != nil {
		t.Fatalf("config apply of the schema example: %v\n%s", err, out)
	}
	if !strings.Contains(out, "tether/services/reviews: written") {
		t.Errorf("config apply output does not name the key tether/services/reviews:\n%s", out)
	}
	if strings.Contains(out, "at revision 0") {
		t.Errorf("config apply reports revision 0; want the index Consul wrote:\n%s", out)
	}
	pair, _, err := consul.Client().KV().Get("tether/services/reviews", nil)
	if err != nil || pair == nil {
		t.Fatalf("read tether/services/reviews from consul KV: pair %v, error %v", pair, err)
	}
	if !strings.Contains(string(pair.Value), "subset: v3") {
		t.Errorf("consul KV tether/services/reviews does not hold the applied document:\n%s", pair.Value)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: ratings\nport: 9080\nroutes:\n  - backends: [{subset: v9}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, bin, append([]string{"config", "apply", "-f", bad}, consulFlags...)...)
	if err == nil {
		t.Errorf("config apply of an invalid document succeeded:\n%s", out)
	}
	if !strings.Contains(out, "routes[0].backends[0].subset") {
		t.Errorf("config apply error does not name the field routes[0].backends[0].subset:\n%s", out)
	}
	if pair, _, err := consul.Client().KV().Get("tether/services/ratings", nil); err != nil || pair != nil {
		t.Errorf("the rejected document reached consul KV: pair %v, error %v", pair, err)
	}

	out, err = run(t, bin, append([]string{"config", "get", "reviews"}, consulFlags...)...)
	if err != nil || !strings.Contains(out, "subset: v3") {
		t.Errorf("config get reviews: %v\n%s", err, out)
	}
	out, err = run(t, bin, "config", "validate", "-f", "../docs/examples/reviews.yaml", "--source", "consul")
	if err != nil || !strings.Contains(out, "tether/services/reviews: valid") || strings.Contains(out, "/tether/") {
		t.Errorf("config validate --source consul, want the key tether/services/reviews: %v\n%s", err, out)
	}

	// A second service stays after reviews is deleted below: the agent
	// holds back a state with no services at all.
	if _, err := consul.Client().KV().Put(&api.KVPair{Key: "tether/services/details", Value: []byte("protocol: grpc\nport: 9080\n")}, nil); err != nil {
		t.Fatal(err)
	}

	adminAddr, xdsAddr := freeAddr(t), freeAddr(t)
	agent := startProcess(t, bin, append([]string{"agent", "--xds-addr", xdsAddr, "--admin-addr", adminAddr,
		"--drain-delay", "100ms"}, consulFlags...)...)
	waitForReady(t, adminAddr)

	var dump configDump
	if code := getAdminJSON(t, adminAddr, "/debug/config_dump", &dump); code != 200 {
		t.Fatalf("config_dump returned %d", code)
	}
	if dump.Source != "consul" || dump.Mesh.Services["reviews"] == nil {
		t.Errorf("config_dump source %q, services %v; want source consul serving reviews", dump.Source, dump.Mesh.Services)
	}
	if _, ok := dump.Resources[resourcev3.ClusterType]["reviews/v3"]; !ok {
		t.Errorf("config_dump lacks the cluster reviews/v3; clusters: %v", slices.Sorted(maps.Keys(dump.Resources[resourcev3.ClusterType])))
	}

	out, err = run(t, bin, append([]string{"config", "delete", "reviews"}, consulFlags...)...)
	if err != nil || !strings.Contains(out, "tether/services/reviews: deleted") {
		t.Errorf("config delete reviews: %v\n%s", err, out)
	}
	deadline := time.Now().Add(waitTimeout)
	for dump.Mesh.Services["reviews"] != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling an HTTP endpoint; nothing to await
		dump = configDump{}
		getAdminJSON(t, adminAddr, "/debug/config_dump", &dump)
	}
	if dump.Mesh.Services["reviews"] != nil {
		t.Errorf("the agent still serves reviews %s after config delete", waitTimeout)
	}
	agent.stop(t)
}

// TestConsulDataLossIsHeldBack restarts the Consul dev agent with an empty
// data dir, as a dev agent or a restored cluster without its snapshot
// would come back. Its index goes backwards, so the agent waits for the
// store to settle, finds that it lost every service and endpoint, and keeps
// serving the last state instead of removing the mesh from every proxy.
func TestConsulDataLossIsHeldBack(t *testing.T) {
	c := startConsulEnv(t)
	reviews := c.dial("xds:///reviews", "data-loss")
	if got := call(t, reviews, 5, "end-user", "jason"); got["reviews-v2"] != 5 {
		t.Fatalf("before the restart: %v, want jason on reviews-v2", got)
	}

	c.consul.Stop()
	if err := c.consul.Start(); err != nil {
		t.Fatal(err)
	}

	var ready struct {
		Status    string `json:"status"`
		HeldEmpty bool   `json:"held_empty"`
	}
	deadline := time.Now().Add(waitTimeout)
	for !ready.HeldEmpty && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling readiness; nothing to await
		c.getJSON("/healthz/ready", &ready)
	}
	if !ready.HeldEmpty || ready.Status != "degraded" {
		t.Fatalf("readiness after Consul lost its data = %+v, want degraded and held_empty", ready)
	}
	if got := call(t, reviews, 5, "end-user", "jason"); got["reviews-v2"] != 5 {
		t.Errorf("after Consul lost its data: %v, want the last state still served", got)
	}
	m := c.getText("/metrics")
	if !strings.Contains(m, "tether_agent_empty_states_held_total 1") {
		t.Errorf("metrics lack tether_agent_empty_states_held_total 1:\n%s", grep(m, "empty"))
	}
	if !strings.Contains(m, "tether_agent_store_resets_total 1") {
		t.Errorf("metrics lack tether_agent_store_resets_total 1:\n%s", grep(m, "resets"))
	}
}
