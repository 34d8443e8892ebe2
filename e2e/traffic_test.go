package e2e

import (
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"strings"
	"testing"
	"time"

	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/mesh"
)

// within reports whether got is within tolerance of want.
func within(got, want, tolerance int) bool { return got >= want-tolerance && got <= want+tolerance }

// expectDemoSplit sends 400 requests to the demo's reviews service and
// checks the 50/30/20 split. The balancer picks per request, so each count
// is binomial: a tolerance of 40 is at least four standard deviations for
// every subset, and the check fails by chance about once in 10,000 runs.
func expectDemoSplit(t *testing.T, reviews testgrpc.TestServiceClient) {
	t.Helper()
	const n = 400
	got := call(t, reviews, n)
	if got["error"] > 0 {
		t.Fatalf("%d of %d requests failed: %v", got["error"], n, got)
	}
	for inst, share := range map[string]int{"reviews-v1": 50, "reviews-v2": 30, "reviews-v3": 20} {
		if want := n * share / 100; !within(got[inst], want, 40) {
			t.Errorf("%s got %d of %d requests, want about %d (split 50/30/20): %v", inst, got[inst], n, want, got)
		}
	}
}

func TestTrafficFollowsRouteWeights(t *testing.T) {
	e := startEnv(t, envOptions{})
	reviews := e.dial("xds:///reviews", "weights")

	expectDemoSplit(t, reviews)

	// Move all traffic to v3.
	e.put(mesh.ServiceKey(prefix, "reviews"), `protocol: grpc
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

func TestHeaderRouteSendsJasonToV2(t *testing.T) {
	e := startEnv(t, envOptions{})
	reviews := e.dial("xds:///reviews", "jason")
	got := call(t, reviews, 20, "end-user", "jason")
	if got["reviews-v2"] != 20 {
		t.Errorf("requests with end-user: jason went to %v, want all 20 on reviews-v2", got)
	}
}

func TestEndpointChangesMoveTraffic(t *testing.T) {
	e := startEnv(t, envOptions{})
	ratings := e.dial("xds:///ratings", "endpoints")
	if got := call(t, ratings, 10); got["ratings-v1"] != 10 {
		t.Fatalf("ratings replies = %v, want all 10 from ratings-v1", got)
	}

	// A new instance starts receiving traffic.
	second := e.startBackend(demo.Instance{Service: "ratings", Name: "ratings-v1-b",
		Labels: map[string]string{"app": "ratings", "version": "v1"}})
	e.putEndpoint(second, 0)
	eventually(t, ratings, 20, "traffic on the new instance ratings-v1-b", func(m map[string]int) bool {
		return m["ratings-v1-b"] > 0 && m["ratings-v1"] > 0
	})

	// Deleting the first instance's key stops traffic to it.
	e.del(mesh.EndpointKey(prefix, "ratings", "ratings-v1"))
	eventually(t, ratings, 20, "no traffic on the deleted ratings-v1", func(m map[string]int) bool {
		return m["ratings-v1-b"] == 20
	})
}

func TestExpiredLeaseRemovesEndpoint(t *testing.T) {
	e := startEnv(t, envOptions{})
	details := e.dial("xds:///details", "lease")

	short, err := e.cli.Grant(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	extra := e.startBackend(demo.Instance{Service: "details", Name: "details-v1-short",
		Labels: map[string]string{"app": "details", "version": "v1"}})
	e.putEndpoint(extra, short.ID)
	eventually(t, details, 20, "traffic on the leased instance", func(m map[string]int) bool {
		return m["details-v1-short"] > 0
	})

	// The lease is not kept alive, so etcd expires it after about 2s.
	start := time.Now()
	eventually(t, details, 20, "no traffic once the lease expired", func(m map[string]int) bool {
		return m["details-v1"] == 20
	})
	t.Logf("endpoint gone %s after the last keep-alive", time.Since(start).Round(time.Millisecond))
}

func TestInvalidDocumentKeepsLastGood(t *testing.T) {
	e := startEnv(t, envOptions{})
	reviews := e.dial("xds:///reviews", "invalid")
	if got := call(t, reviews, 10, "end-user", "jason"); got["reviews-v2"] != 10 {
		t.Fatalf("before: %v, want jason on reviews-v2", got)
	}

	key := mesh.ServiceKey(prefix, "reviews")
	e.put(key, "protocol: grpc\nport: 9080\nroutes:\n  - backends: [{subset: v9}]\n")
	// Another service changes after the bad write; seeing it proves the
	// watcher kept going.
	e.put(mesh.ServiceKey(prefix, "extra"), "protocol: grpc\nport: 9090\n")
	var dump struct {
		Mesh struct {
			Services map[string]any    `json:"services"`
			Invalid  map[string]string `json:"invalid"`
		} `json:"mesh"`
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		e.getJSON("/debug/config_dump", &dump)
		if dump.Mesh.Services["extra"] != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling an HTTP endpoint; nothing to await
	}
	if dump.Mesh.Services["extra"] == nil {
		t.Fatal("service extra written after the invalid document never appeared")
	}
	msg := dump.Mesh.Invalid[key]
	want := "routes[0].backends[0].subset"
	if msg == "" || !contains(msg, want) {
		t.Errorf("config_dump invalid[%s] = %q, want an error naming field %s", key, msg, want)
	}
	if got := call(t, reviews, 10, "end-user", "jason"); got["reviews-v2"] != 10 {
		t.Errorf("after the invalid write: %v, want the last good routing (jason on reviews-v2)", got)
	}
	metrics := e.getText("/metrics")
	if !contains(metrics, `tether_store_invalid_documents{source="etcd"} 1`) {
		t.Errorf("metrics lack tether_store_invalid_documents 1:\n%s", grep(metrics, "invalid"))
	}
}

func TestEtcdRestartKeepsServing(t *testing.T) {
	e := startEnv(t, envOptions{silenceTimeout: 2 * time.Second})
	productpage := e.dial("xds:///productpage", "restart")
	if got := call(t, productpage, 5); got["productpage-v1"] != 5 {
		t.Fatalf("before restart: %v", got)
	}

	e.stopEtcd()
	// The store is down: proxies keep the last good configuration.
	if got := call(t, productpage, 5); got["productpage-v1"] != 5 {
		t.Errorf("while etcd is down: %v, want the last good routing", got)
	}
	e.startEtcd()

	second := e.startBackend(demo.Instance{Service: "productpage", Name: "productpage-v1-b",
		Labels: map[string]string{"app": "productpage", "version": "v1"}})
	lease, err := e.cli.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	e.putEndpoint(second, lease.ID)
	e.del(mesh.EndpointKey(prefix, "productpage", "productpage-v1"))
	eventually(t, productpage, 10, "traffic moved to the instance registered after the restart", func(m map[string]int) bool {
		return m["productpage-v1-b"] == 10
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// grep returns the lines of s that contain sub, for failure messages.
func grep(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
