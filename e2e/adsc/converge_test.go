package adsc

import (
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"istio.io/istio/pkg/log"

	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/mesh"
)

func TestMain(m *testing.M) {
	// Istio's clients log every response at info level, and every
	// disconnection, the end of each test included, at warning level.
	for _, name := range []string{"adsc", "deltaadsc"} {
		if s := log.FindScope(name); s != nil {
			s.SetOutputLevel(log.ErrorLevel)
		}
	}
	os.Exit(m.Run())
}

// quietFatal sets adsc's delta scope to level "none" until the test ends,
// so that its log.Fatalf does not exit the test binary.
func quietFatal(t *testing.T) {
	s := log.FindScope("deltaadsc")
	if s == nil {
		t.Fatal(`istio log scope "deltaadsc" not registered`)
	}
	level := s.GetOutputLevel()
	s.SetOutputLevel(log.NoneLevel)
	t.Cleanup(func() { s.SetOutputLevel(level) })
}

// serviceNames returns the demo services, which are also the names of the
// listeners that gRPC clients request by name.
func serviceNames() []string {
	return slices.Sorted(maps.Keys(demo.Services()))
}

func TestDeltaConvergesWithStateOfTheWorld(t *testing.T) {
	e := startEnv(t)
	named := serviceNames()
	delta := startDelta(t, e.agent.XDSAddr(), named)
	sotw := startRawSotW(t, e.agent.XDSAddr())

	deltaGot := waitDelta(t, e, delta)
	sotwGot := waitSotW(t, e, "raw state-of-the-world client", sotw.snapshot, sotw.updates)

	// With every named listener subscribed, the delta client's scope is the
	// whole cache: no resource is left unreferenced.
	if d := diffSets(deltaGot, cacheSet(e.agent.Cache().Snapshot())); d != "" {
		t.Errorf("delta client differs from the agent's whole cache:\n%s", d)
	}

	both := 0
	for _, typ := range watchedTypes {
		for name, b := range sotwGot[typ] {
			db, ok := deltaGot[typ][name]
			if !ok {
				t.Errorf("%s %q: received over state-of-the-world only", typ, name)
				continue
			}
			if string(db) != string(b) {
				t.Errorf("%s %q: delta and state-of-the-world bytes differ", typ, name)
			}
			both++
		}
	}
	for _, typ := range watchedTypes {
		if len(sotwGot[typ]) == 0 {
			t.Errorf("state-of-the-world client received no %s", typ)
		}
	}
	t.Logf("%d resources compared byte for byte across both clients", both)
}

// TestIstioSotWClientConverges runs Istio's own state-of-the-world client.
// adsc.ADSC sends its first request of each type with a response_nonce set
// to the current time, a nonce the server never issued. The agent responds
// in full to the first request of a type on a stream whatever its nonce,
// as go-control-plane v0.14.0 and istiod do.
func TestIstioSotWClientConverges(t *testing.T) {
	e := startEnv(t)
	// Connect only once the agent serves the mesh. A request that arrives
	// before the agent's first state gets the full push that follows that
	// state, whatever its nonce, which would hide the failure.
	waitDelta(t, e, startDelta(t, e.agent.XDSAddr(), nil))
	sotw := startSotW(t, e.agent.XDSAddr())
	got := waitSotW(t, e, "Istio state-of-the-world client", sotw.snapshot, sotw.updates)
	for _, typ := range watchedTypes {
		if len(got[typ]) == 0 {
			t.Errorf("Istio state-of-the-world client received no %s", typ)
		}
	}
}

func TestDeltaFollowsChanges(t *testing.T) {
	e := startEnv(t)
	// NOTE: adsc (istio.io/istio v0.0.0-20260827124520-eed52ebb66ad) calls
	// log.Fatalf, which exits the process, in two cases this test reaches.
	// Removing a resource watched by name is one, so this client watches
	// listeners by wildcard only: deleting a service removes its gRPC API
	// listener. A cluster removal that arrives before the removal of its
	// endpoints is the other. The agent removes clusters first, and adsc's
	// dependency tree then still names the removed cluster as a parent of
	// the endpoints. Istio's log skips Fatalf at level "none", and the
	// client's bookkeeping stays consistent without the exit. The handlers
	// have already seen the removal by then.
	quietFatal(t)
	delta := startDelta(t, e.agent.XDSAddr(), nil)
	waitDelta(t, e, delta)

	e.putEndpoint("reviews-v1", 7)
	waitDeltaFor(t, e, delta, "endpoint weight 7", func(got resourceSet) bool {
		return endpointWeight(t, got, "reviews/v1") == 7
	})

	e.put(mesh.ServiceKey(prefix, "reviews"), reweighted(t))
	waitDeltaFor(t, e, delta, "route weights 10/70/20", func(got resourceSet) bool {
		return slices.Equal(routeWeights(t, got, "9080", "reviews"), []uint32{10, 70, 20})
	})

	e.del(mesh.EndpointKey(prefix, "reviews", "reviews-v3"))
	waitDeltaFor(t, e, delta, "reviews-v3 endpoint gone", func(got resourceSet) bool {
		return endpointCount(t, got, "reviews/v3") == 0 && endpointCount(t, got, "reviews") == 2
	})

	e.del(mesh.ServiceKey(prefix, "ratings"))
	e.del(mesh.EndpointKey(prefix, "ratings", "ratings-v1"))
	got := waitDeltaFor(t, e, delta, "ratings deleted", func(got resourceSet) bool {
		_, ok := got[resourcev3.ClusterType]["ratings"]
		return !ok
	})
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		if _, ok := got[typ]["ratings/v1"]; ok {
			t.Errorf("%s ratings/v1 still held after the service was deleted", typ)
		}
	}

	_, removed, _ := delta.snapshot()
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, name := range []string{"ratings", "ratings/v1"} {
			if !slices.Contains(removed[typ], name) {
				t.Errorf("%s %q: not in any removed_resources; removed: %v", typ, name, removed[typ])
			}
		}
	}
}

// waitDelta waits until the delta client holds exactly what the agent's
// cache holds in its scope, and returns it.
func waitDelta(t *testing.T, e *env, v *deltaView) resourceSet {
	t.Helper()
	return waitDeltaFor(t, e, v, "initial state", func(resourceSet) bool { return true })
}

// waitDeltaFor waits until ready accepts the delta client's resources and
// they equal the agent's cache in the client's scope. It re-checks after
// every change the client's handlers see.
func waitDeltaFor(t *testing.T, e *env, v *deltaView, what string, ready func(resourceSet) bool) resourceSet {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		got, _, errs := v.snapshot()
		for _, err := range errs {
			t.Fatalf("delta client handler: %v", err)
		}
		want, err := expectedView(e.agent.Cache().Snapshot(), v.named)
		if err != nil {
			t.Fatal(err)
		}
		diff := diffSets(got, want)
		if diff == "" && seeded(want) && ready(got) {
			return got
		}
		select {
		case <-v.updates:
		case <-deadline.C:
			t.Fatalf("delta client: %s not reached within %s; difference from the agent's cache:\n%s", what, waitTimeout, diff)
		}
	}
}

// seeded reports whether the agent has translated the demo mesh: before
// that, an empty client matches an empty cache.
func seeded(want resourceSet) bool {
	return len(want[resourcev3.ClusterType]) > 0
}

// waitSotW waits until a state-of-the-world client holds exactly what the
// agent's cache holds in its scope, and returns it. snapshot returns the
// client's resources and any error that ended or broke its stream; updates
// receives after every response.
func waitSotW(t *testing.T, e *env, client string, snapshot func() (resourceSet, error), updates <-chan struct{}) resourceSet {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		got, err := snapshot()
		if err != nil {
			t.Fatalf("%s: %v", client, err)
		}
		want, err := expectedView(e.agent.Cache().Snapshot(), nil)
		if err != nil {
			t.Fatal(err)
		}
		diff := diffSets(got, want)
		if diff == "" && seeded(want) {
			return got
		}
		select {
		case <-updates:
		case <-deadline.C:
			t.Fatalf("%s did not converge within %s; difference from the agent's cache:\n%s", client, waitTimeout, diff)
		}
	}
}
