package etcd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/tether-mesh/tether/internal/faultnet"
	"github.com/tether-mesh/tether/mesh"
)

// waitTimeout bounds every wait for the watcher to reach a condition.
const waitTimeout = 15 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testEtcd is a single-member embedded etcd server on loopback ports chosen
// when it is created. It can be stopped and started again on the same data
// directory and ports.
type testEtcd struct {
	dir       string
	clientURL url.URL
	peerURL   url.URL
	server    *embed.Etcd
}

func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	s := &testEtcd{dir: t.TempDir(), clientURL: freeURL(t), peerURL: freeURL(t)}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *testEtcd) start(t *testing.T) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Close logs expected errors at error level, so only fatal ones show.
	cfg.LogLevel = "fatal"
	cfg.UnsafeNoFsync = true

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	select {
	case <-server.Server.ReadyNotify():
	case <-time.After(waitTimeout):
		server.Close()
		t.Fatal("embedded etcd not ready in time")
	}
	s.server = server
}

func (s *testEtcd) stop() {
	if s.server != nil {
		s.server.Close()
		s.server = nil
	}
}

func (s *testEtcd) endpoint() string { return s.clientURL.Host }

// freeURL returns an http URL on a loopback port that was free a moment ago.
func freeURL(t *testing.T) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// newClient returns an etcd client for endpoint that reconnects quickly,
// closed when the test ends.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	reconnect := grpc.ConnectParams{
		Backoff: grpcbackoff.Config{
			BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond,
		},
		MinConnectTimeout: time.Second,
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(reconnect)},
	})
	if err != nil {
		t.Fatalf("create etcd client for %s: %v", endpoint, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// startProxy starts a fault-injecting TCP proxy in front of target,
// closed when the test ends.
func startProxy(t *testing.T, target string) *faultnet.Proxy {
	t.Helper()
	p, err := faultnet.Start(target)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// recorder keeps every State a watcher publishes.
type recorder struct {
	mu     sync.Mutex
	states []*mesh.State
	// changed is closed and replaced on every publish.
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) publish(s *mesh.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
	close(r.changed)
	r.changed = make(chan struct{})
}

// snapshot returns the States published so far and a channel closed on the
// next publish.
func (r *recorder) snapshot() ([]*mesh.State, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*mesh.State(nil), r.states...), r.changed
}

func (r *recorder) count() int {
	states, _ := r.snapshot()
	return len(states)
}

// waitFor waits until the last published State meets cond and returns it.
func (r *recorder) waitFor(t *testing.T, what string, cond func(*mesh.State) bool) *mesh.State {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		states, changed := r.snapshot()
		if n := len(states); n > 0 && cond(states[n-1]) {
			return states[n-1]
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no published state %s within %v", what, waitTimeout)
		}
	}
}

// waitUntil polls cond, for conditions that no channel announces, such as
// a change of Health.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not reached within %v", what, waitTimeout)
		}
	}
}

// testLogger writes the watcher's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

var _ io.Writer = testWriter{}

// startWatcher runs a watcher for cfg until the test ends. cfg gets a
// fresh registry and a test logger.
func startWatcher(t *testing.T, cfg Config) (*Watcher, *recorder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Logger = testLogger(t)
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, rec.publish) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, expected nil after cancel", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return w, rec, reg
}

// metricValue returns the value of the counter or gauge name whose labels
// include labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			found := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					found++
				}
			}
			if found != len(labels) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func put(t *testing.T, c *clientv3.Client, key, value string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Put(ctx, key, value, opts...)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func del(t *testing.T, c *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Delete(ctx, key)
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	if resp.Deleted != 1 {
		t.Fatalf("delete %s: deleted %d keys, expected 1", key, resp.Deleted)
	}
	return resp.Header.Revision
}

func hasService(name string) func(*mesh.State) bool {
	return func(s *mesh.State) bool { return s.Services[name] != nil }
}

func hasEndpoint(service, instance string) func(*mesh.State) bool {
	return func(s *mesh.State) bool {
		set := s.Endpoints[service]
		return set != nil && set.Instances[instance] != nil
	}
}

func not(cond func(*mesh.State) bool) func(*mesh.State) bool {
	return func(s *mesh.State) bool { return !cond(s) }
}

func all(conds ...func(*mesh.State) bool) func(*mesh.State) bool {
	return func(s *mesh.State) bool {
		for _, c := range conds {
			if !c(s) {
				return false
			}
		}
		return true
	}
}
