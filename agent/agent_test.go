package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
)

const waitTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeWatcher is a stand-in for a store: the test hands it states to
// publish. The end-to-end tests run the agent on a real etcd.
type fakeWatcher struct {
	states chan *mesh.State
	mu     sync.Mutex
	health watchers.Health
}

func newFakeWatcher() *fakeWatcher { return &fakeWatcher{states: make(chan *mesh.State)} }

func (w *fakeWatcher) Run(ctx context.Context, publish func(*mesh.State)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case st := <-w.states:
			w.mu.Lock()
			w.health = watchers.Health{Synced: true, LastSync: time.Now()}
			w.mu.Unlock()
			publish(st)
		}
	}
}

func (w *fakeWatcher) Health() watchers.Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.health
}

// stateWith returns a state with n services of one endpoint each.
func stateWith(t *testing.T, n int, rev int64) *mesh.State {
	t.Helper()
	b := mesh.NewBuilder("/tether/")
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		if err := b.Put(mesh.ServiceKey("/tether/", name), []byte("protocol: grpc\nport: 9080\n")); err != nil {
			t.Fatal(err)
		}
		doc := fmt.Sprintf(`{"address": "127.0.0.1", "port": %d}`, 10000+i)
		if err := b.Put(mesh.EndpointKey("/tether/", name, "a"), []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	b.SetRevision(rev)
	return b.State()
}

type running struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startAgent(t *testing.T, cfg Config) *running {
	t.Helper()
	cfg.XDSAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = 100 * time.Millisecond
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; later calls do nothing.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Run did not return after cancel")
		}
	})
}

func (r *running) get(t *testing.T, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + r.agent.AdminAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("decode %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// waitApplied waits until the cache has seen n changing pushes.
func waitApplied(t *testing.T, a *Agent, n uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for a.Cache().Applied() < n {
		if time.Now().After(deadline) {
			t.Fatalf("cache applied %d pushes, want %d", a.Cache().Applied(), n)
		}
		time.Sleep(time.Millisecond) // polling a counter; nothing to await
	}
}

func TestReadyOnlyAfterFirstState(t *testing.T) {
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake"})

	var body Readiness
	if code := r.get(t, "/healthz/ready", &body); code != http.StatusServiceUnavailable || body.Status != "not_ready" {
		t.Errorf("before any state: %d %q, want 503 not_ready", code, body.Status)
	}
	w.states <- stateWith(t, 2, 7)
	waitApplied(t, r.agent, 1)
	if code := r.get(t, "/healthz/ready", &body); code != http.StatusOK || body.Status != "ready" {
		t.Errorf("after the first state: %d %q, want 200 ready", code, body.Status)
	}
	if body.Revision != 7 {
		t.Errorf("revision = %d, want 7", body.Revision)
	}
	if code := r.get(t, "/healthz/live", nil); code != http.StatusOK {
		t.Errorf("live = %d, want 200", code)
	}
}

func TestBurstIsCoalesced(t *testing.T) {
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake", Debounce: 20 * time.Millisecond, MaxDelay: time.Second})

	for i := 1; i <= 50; i++ {
		w.states <- stateWith(t, 1+i%3, int64(i))
	}
	// The last state has 50%3+1 = 3 services. Wait for it.
	deadline := time.Now().Add(waitTimeout)
	for {
		st, _ := r.agent.Current()
		if st != nil && st.Revision == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the last state of the burst was never pushed")
		}
		time.Sleep(time.Millisecond) // polling; nothing to await
	}
	if pushes := r.agent.Cache().Applied(); pushes > 10 {
		t.Errorf("a burst of 50 states gave %d pushes, want it coalesced to a few", pushes)
	}
	if got := len(r.agent.Cache().Snapshot()["type.googleapis.com/envoy.config.cluster.v3.Cluster"]); got != 3 {
		t.Errorf("clusters after the burst = %d, want 3 (the last state's)", got)
	}
}

func TestLastKnownGoodRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lkg.json")
	st := stateWith(t, 3, 42)
	if err := writeLastKnownGood(path, st, "etcd"); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %o, want 600", info.Mode().Perm())
	}
	got, err := readLastKnownGood(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 42 || len(got.Services) != 3 || got.EndpointCount() != 3 {
		t.Errorf("read back revision %d, %d services, %d endpoints; want 42, 3, 3", got.Revision, len(got.Services), got.EndpointCount())
	}
	if got.Services["svc-1"].Key != "/tether/services/svc-1" {
		t.Errorf("service key = %q, want it kept for NACK reports", got.Services["svc-1"].Key)
	}
}

func TestLastKnownGoodServedAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lkg.json")
	if err := writeLastKnownGood(path, stateWith(t, 2, 9), "etcd"); err != nil {
		t.Fatal(err)
	}
	// The watcher never publishes: the store is unreachable.
	r := startAgent(t, Config{Watcher: newFakeWatcher(), SourceName: "fake", CacheFile: path})
	waitApplied(t, r.agent, 1)
	var body Readiness
	if code := r.get(t, "/healthz/ready", &body); code != http.StatusOK || body.Status != "degraded" {
		t.Errorf("on the last-known-good state: %d %q, want 200 degraded", code, body.Status)
	}
	if body.Source != sourceLastKnownGood {
		t.Errorf("source = %q, want %q", body.Source, sourceLastKnownGood)
	}
}

func TestDamagedLastKnownGoodIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lkg.json")
	if err := os.WriteFile(path, []byte(`{"format": 1, "services": [{"key": "x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readLastKnownGood(path); err == nil {
		t.Error("a service entry without a document was accepted")
	}
	if err := os.WriteFile(path, []byte(`{"format": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readLastKnownGood(path); err == nil {
		t.Error("an unknown format was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no watcher", Config{}},
		{"bad xds address", Config{Watcher: newFakeWatcher(), XDSAddr: "nohost"}},
		{"max delay below debounce", Config{Watcher: newFakeWatcher(), Debounce: time.Second, MaxDelay: time.Millisecond}},
		{"negative drain", Config{Watcher: newFakeWatcher(), DrainDelay: -time.Second}},
		{"remote xds without consent", Config{Watcher: newFakeWatcher(), XDSAddr: "0.0.0.0:18000"}},
		{"remote admin without consent", Config{Watcher: newFakeWatcher(), AdminAddr: "10.1.2.3:15020"}},
		{"host name", Config{Watcher: newFakeWatcher(), XDSAddr: "example.internal:18000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err == nil {
				t.Error("Validate accepted an invalid config")
			}
		})
	}
}

func TestConfigAcceptsRemoteWithConsent(t *testing.T) {
	cfg := Config{Watcher: newFakeWatcher(), XDSAddr: "0.0.0.0:18000", InsecureRemote: true}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate with InsecureRemote: %v", err)
	}
	cfg = Config{Watcher: newFakeWatcher(), XDSAddr: "[::1]:18000", AdminAddr: "localhost:15020"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate on loopback: %v", err)
	}
}

func TestPersistWritesCurrentState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lkg.json")
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake", CacheFile: path})
	w.states <- stateWith(t, 4, 11)
	waitApplied(t, r.agent, 1)
	// persist writes on shutdown at the latest.
	r.stop(t)
	got, err := readLastKnownGood(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 11 || len(got.Services) != 4 {
		t.Errorf("persisted revision %d with %d services, want 11 and 4", got.Revision, len(got.Services))
	}
}

func TestReadinessFailsWhileDraining(t *testing.T) {
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake", DrainDelay: waitTimeout})
	w.states <- stateWith(t, 1, 3)
	waitApplied(t, r.agent, 1)

	// An open stream keeps the drain going.
	conn, err := grpc.NewClient(r.agent.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	r.cancel()
	deadline := time.Now().Add(waitTimeout)
	var body Readiness
	for body.Status != "draining" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling readiness; nothing to await
		body = Readiness{}
		if code := r.get(t, "/healthz/ready", &body); body.Status == "draining" && code != http.StatusServiceUnavailable {
			t.Errorf("readiness while draining = %d, want 503", code)
		}
	}
	if body.Status != "draining" {
		t.Fatalf("readiness status = %q after shutdown started, want draining", body.Status)
	}
	conn.Close()
}

func TestEmptyStateIsHeldBack(t *testing.T) {
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake"})
	w.states <- stateWith(t, 2, 5)
	waitApplied(t, r.agent, 1)

	// The store loses its data: a state with no services.
	w.states <- stateWith(t, 0, 6)
	var body Readiness
	deadline := time.Now().Add(waitTimeout)
	for !body.HeldEmpty && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling readiness; nothing to await
		r.get(t, "/healthz/ready", &body)
	}
	if !body.HeldEmpty || body.Status != "degraded" {
		t.Fatalf("readiness = %+v, want degraded with held_empty", body)
	}
	if st, _ := r.agent.Current(); st == nil || len(st.Services) != 2 {
		t.Errorf("current state replaced by the empty one")
	}
	if got := len(r.agent.Cache().Snapshot()["type.googleapis.com/envoy.config.cluster.v3.Cluster"]); got == 0 {
		t.Error("clusters were removed from the cache")
	}

	// Services coming back end the hold.
	w.states <- stateWith(t, 1, 7)
	deadline = time.Now().Add(waitTimeout)
	for body.HeldEmpty && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling readiness; nothing to await
		body = Readiness{}
		r.get(t, "/healthz/ready", &body)
	}
	if body.HeldEmpty || body.Status != "ready" || body.Revision != 7 {
		t.Errorf("readiness = %+v after services came back, want ready at revision 7", body)
	}
}

func TestEmptyStateAllowedWhenAsked(t *testing.T) {
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake", AllowEmptyMesh: true})
	w.states <- stateWith(t, 2, 5)
	waitApplied(t, r.agent, 1)
	w.states <- stateWith(t, 0, 6)
	waitApplied(t, r.agent, 2)
	if st, _ := r.agent.Current(); st == nil || len(st.Services) != 0 {
		t.Errorf("the empty state was not served with AllowEmptyMesh")
	}
}

func TestStoreResetWaitsBeforeServing(t *testing.T) {
	w := newFakeWatcher()
	r := startAgent(t, Config{Watcher: w, SourceName: "fake", ResetGrace: 300 * time.Millisecond})
	w.states <- stateWith(t, 2, 10)
	waitApplied(t, r.agent, 1)

	// A restored store: a lower revision with other content.
	start := time.Now()
	w.states <- stateWith(t, 3, 4)
	var body Readiness
	deadline := time.Now().Add(waitTimeout)
	for body.Revision != 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling readiness; nothing to await
		body = Readiness{}
		r.get(t, "/healthz/ready", &body)
		if body.Revision == 10 && body.Status != "degraded" {
			t.Errorf("readiness during the reset wait = %q, want degraded", body.Status)
		}
	}
	if body.Revision != 4 {
		t.Fatalf("the restored state was never served; readiness %+v", body)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("the restored state was served after %s, before the 300ms reset grace", waited)
	}
	if body.Status != "ready" {
		t.Errorf("readiness after the reset wait = %q, want ready", body.Status)
	}
}
