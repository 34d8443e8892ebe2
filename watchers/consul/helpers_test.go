package consul

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/tether-mesh/tether/mesh"
)

// waitTimeout bounds every wait for the watcher or the agent to reach a
// condition.
const waitTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	stopSharedConsul()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// recorder keeps the last State a watcher published and wakes waiters on
// every publish.
type recorder struct {
	mu    sync.Mutex
	last  *mesh.State
	count int
	// changed has room for one wake-up; publish never blocks on it.
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) publish(s *mesh.State) {
	r.mu.Lock()
	r.last = s
	r.count++
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) state() (*mesh.State, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.count
}

// waitFor waits until a published State satisfies cond and returns it.
func (r *recorder) waitFor(t *testing.T, what string, cond func(*mesh.State) bool) *mesh.State {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		if s, _ := r.state(); s != nil && cond(s) {
			return s
		}
		select {
		case <-r.changed:
		case <-timeout.C:
			s, n := r.state()
			t.Fatalf("timed out after %v waiting for %s; %d states published, last: %s",
				waitTimeout, what, n, describeState(s))
			return nil
		}
	}
}

func describeState(s *mesh.State) string {
	if s == nil {
		return "none"
	}
	eps := map[string][]string{}
	for name, set := range s.Endpoints {
		eps[name] = set.SortedInstances()
	}
	return fmt.Sprintf("revision %d, services %v, endpoints %v, invalid %v",
		s.Revision, s.ServiceNames(), eps, s.Invalid)
}

// endpoint returns one endpoint of a State, or nil.
func endpoint(s *mesh.State, service, instance string) *mesh.Endpoint {
	set := s.Endpoints[service]
	if set == nil {
		return nil
	}
	return set.Instances[instance]
}

// runningWatcher is a watcher whose Run goroutine the test owns.
type runningWatcher struct {
	w        *Watcher
	rec      *recorder
	registry *prometheus.Registry
	logs     *lockedBuffer
}

// startWatcher creates a watcher from cfg with a fresh registry and a
// logger that captures every line at debug level, runs it, and stops it
// and waits for Run when the test ends.
func startWatcher(t *testing.T, cfg Config) *runningWatcher {
	t.Helper()
	rw := &runningWatcher{rec: newRecorder(), registry: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	cfg.Registerer = rw.registry
	cfg.Logger = slog.New(slog.NewJSONHandler(rw.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("create watcher: %v", err)
	}
	rw.w = w

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, rw.rec.publish) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, expected nil after cancel", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %v after cancel", waitTimeout)
		}
		if t.Failed() {
			t.Logf("watcher logs:\n%s", rw.logs.String())
		}
	})
	return rw
}

// requests returns tether_consul_requests_total for endpoint.
func (rw *runningWatcher) requests(endpoint string) float64 {
	return metricValue(rw.w.metrics.requests.WithLabelValues(endpoint))
}

// totalRequests returns tether_consul_requests_total over every endpoint.
func (rw *runningWatcher) totalRequests() float64 {
	return rw.requests(endpointKV) + rw.requests(endpointCatalog) + rw.requests(endpointHealth)
}

// fastConfig returns a Config for addr with short retry delays and a rate
// limit loose enough that tests never wait on it.
func fastConfig(addr string) Config {
	return Config{
		Address:    addr,
		Token:      "",
		QueryRate:  50,
		QueryBurst: 50,
		BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
	}
}

// metricValue returns the value of a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(fmt.Sprintf("read metric: %v", err))
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}
