package consul

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-mesh/tether/mesh"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name              string
		prev, got         uint64
		next              uint64
		apply, wantsReset bool
	}{
		{name: "first response", prev: 0, got: 40, next: 40, apply: true},
		{name: "first response at index 0", prev: 0, got: 0, next: 1, apply: true},
		{name: "index moved", prev: 40, got: 41, next: 41, apply: true},
		{name: "index unchanged", prev: 40, got: 40, next: 40},
		{name: "index 0 after clamping", prev: 1, got: 0, next: 1},
		{name: "index went backwards", prev: 5000, got: 12, next: 12, apply: true, wantsReset: true},
		{name: "index 0 after a real one", prev: 5000, got: 0, next: 1, apply: true, wantsReset: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, apply, reset := nextIndex(tt.prev, tt.got)
			if next != tt.next {
				t.Errorf("next index %d, expected %d", next, tt.next)
			}
			if apply != tt.apply {
				t.Errorf("apply %v, expected %v", apply, tt.apply)
			}
			if reset != tt.wantsReset {
				t.Errorf("reset %v, expected %v", reset, tt.wantsReset)
			}
		})
	}
}

// TestIndexBackwardsStub runs against a stub, because a real agent's index
// goes backwards only across a restart, which TestConsulAgentRestart
// covers.
func TestIndexBackwardsStub(t *testing.T) {
	var healthCalls atomic.Int32
	// The response at index 12 waits until the state from index 5000 was
	// published. The first state is published only once every query has
	// answered, so under load both health responses could otherwise land
	// before it, and the state holding web-1 would never be seen.
	firstSeen := make(chan struct{})
	stub := newStubConsul(t, stubHandlers{
		kv:      blocking("3", ""),
		catalog: blocking("7", `{"web": []}`),
		health: func(w http.ResponseWriter, r *http.Request) {
			switch healthCalls.Add(1) {
			case 1:
				respond(w, "5000", healthBody("web-1", "10.0.0.1"))
			case 2:
				select {
				case <-firstSeen:
				case <-r.Context().Done():
					return
				}
				respond(w, "12", healthBody("web-2", "10.0.0.2"))
			default:
				blocking("12", healthBody("web-2", "10.0.0.2"))(w, r)
			}
		},
	})
	rw := startWatcher(t, fastConfig(stub.server.URL))

	rw.rec.waitFor(t, "endpoint from the response at index 5000", func(s *mesh.State) bool {
		return endpoint(s, "web", "web-1") != nil
	})
	close(firstSeen)
	s := rw.rec.waitFor(t, "endpoint from the response at index 12", func(s *mesh.State) bool {
		return endpoint(s, "web", "web-2") != nil && endpoint(s, "web", "web-1") == nil
	})
	if got := endpoint(s, "web", "web-2").Address; got != "10.0.0.2" {
		t.Errorf("web-2 address %s, expected 10.0.0.2", got)
	}

	waitUntil(t, "third health request", func() bool { return healthCalls.Load() >= 3 })
	requests := stub.requestsTo("/v1/health/service/web")
	if got := requests[1].index; got != "5000" {
		t.Errorf("second health request waited on index %q, expected 5000", got)
	}
	for i, r := range requests[2:] {
		if r.index != "" && r.index != "0" && r.index != "12" {
			t.Errorf("health request %d after the reset waited on index %q, expected 0 or 12", i+3, r.index)
		}
	}
	if got := metricValue(rw.w.metrics.Resyncs.WithLabelValues(reasonIndexReset)); got != 1 {
		t.Errorf("tether_store_resyncs_total{reason=index_reset} %v, expected 1", got)
	}
}

// TestBusyLoopStub checks that a stub that responds to every request at once,
// which a real agent never does, cannot drive a watch faster than its rate
// limit and backoff allow.
func TestBusyLoopStub(t *testing.T) {
	immediate := func(index, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { respond(w, index, body) }
	}
	failing := func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
	tests := []struct {
		name     string
		handlers stubHandlers
		paths    []string
	}{
		{
			name: "index 0",
			handlers: stubHandlers{
				kv:      immediate("0", ""),
				catalog: immediate("0", `{"web": []}`),
				health:  immediate("0", healthBody("web-1", "10.0.0.1")),
			},
			paths: []string{"/v1/kv/", "/v1/catalog/services", "/v1/health/service/web"},
		},
		{
			name:     "http 500",
			handlers: stubHandlers{kv: failing, catalog: failing, health: failing},
			paths:    []string{"/v1/kv/", "/v1/catalog/services"},
		},
	}

	// With the default limit of DefaultQueryBurst requests at once and
	// DefaultQueryRate per second after that, one watch sends at most
	// burst + rate·window requests in the window, plus one in flight.
	const window = 2 * time.Second
	maxRequests := DefaultQueryBurst + int(float64(DefaultQueryRate)*window.Seconds()) + 1

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stub := newStubConsul(t, tt.handlers)
			rw := startWatcher(t, Config{Address: stub.server.URL})

			time.Sleep(window)
			for _, path := range tt.paths {
				n := len(stub.requestsTo(path))
				t.Logf("%s: %d requests in %v", path, n, window)
				if n == 0 {
					t.Errorf("%s received no request in %v", path, window)
				}
				if n > maxRequests {
					t.Errorf("%s received %d requests in %v, expected at most %d", path, n, window, maxRequests)
				}
			}
			if total := rw.totalRequests(); total > float64(maxRequests*len(tt.paths)) {
				t.Errorf("tether_consul_requests_total %v, expected at most %d", total, maxRequests*len(tt.paths))
			}
		})
	}
}

func TestStaleWhileFailingStub(t *testing.T) {
	var fail atomic.Bool
	catalog := blocking("7", `{}`)
	stub := newStubConsul(t, stubHandlers{
		kv: blocking("3", ""),
		catalog: func(w http.ResponseWriter, r *http.Request) {
			if fail.Load() {
				http.Error(w, "no cluster leader", http.StatusInternalServerError)
				return
			}
			catalog(w, r)
		},
	})
	fail.Store(true)
	rw := startWatcher(t, fastConfig(stub.server.URL))

	waitUntil(t, "stale health", func() bool { return rw.w.Health().Stale })
	h := rw.w.Health()
	if h.Synced {
		t.Error("health is synced before the catalog was read")
	}
	if !strings.Contains(h.LastError, "no cluster leader") {
		t.Errorf("last error %q, expected the agent's error", h.LastError)
	}

	fail.Store(false)
	rw.rec.waitFor(t, "first state", func(*mesh.State) bool { return true })
	waitUntil(t, "fresh health", func() bool { return !rw.w.Health().Stale })
	if !rw.w.Health().Synced {
		t.Error("health is not synced after the first state")
	}
}
