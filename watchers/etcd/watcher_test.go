package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/mesh"
)

const prefix = "/tether/"

func serviceKey(name string) string { return mesh.ServiceKey(prefix, name) }

func endpointKey(service, instance string) string {
	return mesh.EndpointKey(prefix, service, instance)
}

func serviceDoc(port int) string { return fmt.Sprintf(`{"port": %d}`, port) }

func endpointDoc(address string) string { return fmt.Sprintf(`{"address": %q, "port": 8080}`, address) }

func TestWatcherListsAndWatches(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())

	// Five keys with pages of two exercise pagination of the first list.
	put(t, client, serviceKey("reviews"), serviceDoc(9080))
	put(t, client, serviceKey("ratings"), serviceDoc(9081))
	put(t, client, endpointKey("reviews", "a"), endpointDoc("10.0.0.1"))
	put(t, client, endpointKey("reviews", "b"), endpointDoc("10.0.0.2"))
	listRev := put(t, client, endpointKey("ratings", "a"), endpointDoc("10.0.0.3"))

	w, rec, reg := startWatcher(t, Config{Client: client, ListPageSize: 2})
	first := rec.waitFor(t, "with the listed keys", func(*mesh.State) bool { return true })
	if got := first.ServiceNames(); !slices.Equal(got, []string{"ratings", "reviews"}) {
		t.Errorf("first state services = %v, expected [ratings reviews]", got)
	}
	if got := first.EndpointCount(); got != 3 {
		t.Errorf("first state endpoint count = %d, expected 3", got)
	}
	if first.Revision != listRev {
		t.Errorf("first state revision = %d, expected %d", first.Revision, listRev)
	}
	if h := w.Health(); !h.Synced || h.Stale {
		t.Errorf("health after first list = %+v, expected synced and not stale", h)
	}

	// Two puts in one transaction arrive in one watch response and must
	// produce one publish.
	before := rec.count()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	txn, err := client.Txn(ctx).Then(
		clientv3.OpPut(serviceKey("details"), serviceDoc(9082)),
		clientv3.OpDelete(endpointKey("reviews", "b")),
	).Commit()
	if err != nil {
		t.Fatalf("commit txn: %v", err)
	}
	got := rec.waitFor(t, "with the transaction applied",
		all(hasService("details"), not(hasEndpoint("reviews", "b"))))
	if n := rec.count() - before; n != 1 {
		t.Errorf("transaction produced %d publishes, expected 1", n)
	}
	if got.Revision != txn.Header.Revision {
		t.Errorf("state revision = %d, expected the transaction's %d", got.Revision, txn.Header.Revision)
	}
	if got.Endpoints["reviews"].Instances["a"] != first.Endpoints["reviews"].Instances["a"] {
		t.Error("unchanged endpoint reviews/a got a new pointer")
	}

	if v := metricValue(t, reg, "tether_store_events_total", map[string]string{"kind": "put", "source": "etcd"}); v != 1 {
		t.Errorf("put events = %v, expected 1", v)
	}
	if v := metricValue(t, reg, "tether_store_events_total", map[string]string{"kind": "delete"}); v != 1 {
		t.Errorf("delete events = %v, expected 1", v)
	}
	if v := metricValue(t, reg, "tether_store_last_sync_timestamp_seconds", nil); v <= 0 {
		t.Errorf("last sync timestamp = %v, expected a positive Unix time", v)
	}
}

func TestWatcherResyncsAfterCompaction(t *testing.T) {
	server := startEtcd(t)
	writer := newClient(t, server.endpoint())
	proxy := startProxy(t, server.endpoint())
	client := newClient(t, proxy.Addr())

	put(t, writer, serviceKey("reviews"), serviceDoc(9080))
	put(t, writer, serviceKey("ratings"), serviceDoc(9081))
	put(t, writer, endpointKey("reviews", "a"), endpointDoc("10.0.0.1"))

	// A long silence bound keeps the silence check out of this test.
	_, rec, reg := startWatcher(t, Config{Client: client, SilenceTimeout: time.Minute})
	rec.waitFor(t, "with the first keys", all(hasService("ratings"), hasEndpoint("reviews", "a")))
	// A watched write proves the watch is running before the cut.
	put(t, writer, endpointKey("reviews", "z"), endpointDoc("10.0.0.9"))
	rec.waitFor(t, "with reviews/z", hasEndpoint("reviews", "z"))

	proxy.Cut()
	put(t, writer, endpointKey("reviews", "b"), endpointDoc("10.0.0.2"))
	rev := del(t, writer, serviceKey("ratings"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := writer.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact at %d: %v", rev, err)
	}
	proxy.Restore()

	got := rec.waitFor(t, "after the resync", all(hasEndpoint("reviews", "b"), not(hasService("ratings"))))
	if !hasService("reviews")(got) {
		t.Error("service reviews missing after the resync")
	}
	if v := metricValue(t, reg, "tether_store_resyncs_total", map[string]string{"reason": "compacted"}); v != 1 {
		t.Errorf("compacted resyncs = %v, expected 1", v)
	}

	put(t, writer, serviceKey("details"), serviceDoc(9082))
	rec.waitFor(t, "with a write after the resync", hasService("details"))
}

func TestWatcherSilentWatchGoesStale(t *testing.T) {
	server := startEtcd(t)
	writer := newClient(t, server.endpoint())
	proxy := startProxy(t, server.endpoint())
	client := newClient(t, proxy.Addr())

	put(t, writer, serviceKey("reviews"), serviceDoc(9080))
	w, rec, reg := startWatcher(t, Config{
		Client:           client,
		SilenceTimeout:   time.Second,
		ProgressInterval: 200 * time.Millisecond,
		ListTimeout:      time.Second,
		BackoffMin:       50 * time.Millisecond,
		BackoffMax:       200 * time.Millisecond,
	})
	rec.waitFor(t, "with reviews", hasService("reviews"))
	put(t, writer, serviceKey("ratings"), serviceDoc(9081))
	rec.waitFor(t, "with ratings", hasService("ratings"))

	proxy.Blackhole()
	waitUntil(t, "health stale after blackhole", func() bool { return w.Health().Stale })
	if v := metricValue(t, reg, "tether_store_stale", nil); v != 1 {
		t.Errorf("stale gauge = %v, expected 1", v)
	}
	put(t, writer, serviceKey("details"), serviceDoc(9082))
	proxy.Restore()

	rec.waitFor(t, "with the write made while blackholed", hasService("details"))
	waitUntil(t, "health not stale after restore", func() bool { return !w.Health().Stale })

	states, _ := rec.snapshot()
	for i, s := range states {
		if !hasService("reviews")(s) {
			t.Errorf("published state %d lacks reviews: a silent watch must never publish a smaller state", i)
		}
	}
	if v := metricValue(t, reg, "tether_store_resyncs_total", map[string]string{"reason": "silent"}); v < 1 {
		t.Errorf("silent resyncs = %v, expected at least 1", v)
	}
	if v := metricValue(t, reg, "tether_store_stale", nil); v != 0 {
		t.Errorf("stale gauge = %v after recovery, expected 0", v)
	}
	if h := w.Health(); h.LastError == "" {
		t.Error("health LastError is empty after a silent watch")
	}

	put(t, writer, serviceKey("productpage"), serviceDoc(9083))
	rec.waitFor(t, "with a write after recovery", hasService("productpage"))
}

func TestWatcherLeasedEndpointsDisappear(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	_, rec, _ := startWatcher(t, Config{Client: client})
	rec.waitFor(t, "first", func(*mesh.State) bool { return true })

	revoked, err := client.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("grant lease: %v", err)
	}
	// etcd raises a TTL below its minimum (1.5 election timeouts, rounded
	// up) to that minimum: 2 s with embed's defaults.
	expiring, err := client.Grant(ctx, 1)
	if err != nil {
		t.Fatalf("grant lease: %v", err)
	}
	put(t, client, endpointKey("reviews", "revoked"), endpointDoc("10.0.0.1"), clientv3.WithLease(revoked.ID))
	put(t, client, endpointKey("reviews", "expiring"), endpointDoc("10.0.0.2"), clientv3.WithLease(expiring.ID))
	put(t, client, endpointKey("reviews", "static"), endpointDoc("10.0.0.3"))
	rec.waitFor(t, "with the leased endpoints",
		all(hasEndpoint("reviews", "revoked"), hasEndpoint("reviews", "expiring")))

	if _, err := client.Revoke(ctx, revoked.ID); err != nil {
		t.Fatalf("revoke lease: %v", err)
	}
	rec.waitFor(t, "without the revoked endpoint", not(hasEndpoint("reviews", "revoked")))

	got := rec.waitFor(t, "without the expired endpoint", not(hasEndpoint("reviews", "expiring")))
	if !hasEndpoint("reviews", "static")(got) {
		t.Error("endpoint without a lease disappeared")
	}
}

func TestWatcherKeepsLastGoodOnInvalidDocument(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())

	put(t, client, serviceKey("reviews"), serviceDoc(9080))
	_, rec, reg := startWatcher(t, Config{Client: client})
	rec.waitFor(t, "with reviews", hasService("reviews"))

	key := serviceKey("reviews")
	put(t, client, key, `{"port": 9090, "protocol": "smtp"}`)
	got := rec.waitFor(t, "with reviews invalid", func(s *mesh.State) bool { return s.Invalid[key] != nil })
	if fields := invalidFields(got.Invalid[key]); !slices.Contains(fields, "protocol") {
		t.Errorf("invalid fields = %v, expected to contain protocol (error %v)", fields, got.Invalid[key])
	}
	if !errors.Is(got.Invalid[key], mesh.ErrInvalid) {
		t.Errorf("invalid error %v does not match mesh.ErrInvalid", got.Invalid[key])
	}
	if port := got.Services["reviews"].Port; port != 9080 {
		t.Errorf("reviews port = %d, expected the last good 9080", port)
	}

	put(t, client, serviceKey("ratings"), serviceDoc(9081))
	got = rec.waitFor(t, "with ratings", hasService("ratings"))
	if got.Invalid[key] == nil {
		t.Error("reviews no longer invalid after an unrelated write")
	}
	if v := metricValue(t, reg, "tether_store_invalid_documents_total", nil); v != 1 {
		t.Errorf("invalid documents total = %v, expected 1", v)
	}
	if v := metricValue(t, reg, "tether_store_invalid_documents", nil); v != 1 {
		t.Errorf("invalid documents gauge = %v, expected 1", v)
	}

	put(t, client, key, serviceDoc(9090))
	got = rec.waitFor(t, "with reviews fixed", func(s *mesh.State) bool { return len(s.Invalid) == 0 })
	if port := got.Services["reviews"].Port; port != 9090 {
		t.Errorf("reviews port = %d after the fix, expected 9090", port)
	}
	if v := metricValue(t, reg, "tether_store_invalid_documents", nil); v != 0 {
		t.Errorf("invalid documents gauge = %v after the fix, expected 0", v)
	}
}

func TestWatcherRecoversAfterEtcdRestart(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())

	put(t, client, serviceKey("reviews"), serviceDoc(9080))
	w, rec, _ := startWatcher(t, Config{
		Client:         client,
		SilenceTimeout: 2 * time.Second,
		ListTimeout:    time.Second,
		BackoffMin:     50 * time.Millisecond,
		BackoffMax:     300 * time.Millisecond,
	})
	rec.waitFor(t, "with reviews", hasService("reviews"))

	server.stop()
	server.start(t)
	writer := newClient(t, server.endpoint())
	put(t, writer, serviceKey("ratings"), serviceDoc(9081))

	got := rec.waitFor(t, "with a write after the restart", hasService("ratings"))
	if !hasService("reviews")(got) {
		t.Error("reviews missing after the restart")
	}
	waitUntil(t, "health not stale after restart", func() bool { return !w.Health().Stale })
}

func TestWatcherRunReturnsWhenClientClosed(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())
	w, err := New(Config{Client: client, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), rec.publish) }()
	rec.waitFor(t, "first", func(*mesh.State) bool { return true })

	if err := w.Run(context.Background(), rec.publish); err == nil {
		t.Error("second concurrent Run returned nil, expected an error")
	}

	client.Close()
	select {
	case err := <-done:
		if !errors.Is(err, errClientClosed) {
			t.Errorf("Run returned %v, expected errClientClosed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after the client was closed")
	}
}

// TestIdleWatchStaysFresh covers a healthy store without writes:
// progress notifications must keep the watch alive, so no silent resync
// happens over several silence windows.
func TestIdleWatchStaysFresh(t *testing.T) {
	server := startEtcd(t)
	client := newClient(t, server.endpoint())
	put(t, client, serviceKey("reviews"), serviceDoc(9080))
	w, rec, reg := startWatcher(t, Config{Client: client, SilenceTimeout: time.Second})
	rec.waitFor(t, "with the listed key", hasService("reviews"))

	// Nothing announces the absence of a resync, so this waits a bounded
	// window of three silence timeouts.
	time.Sleep(3500 * time.Millisecond)
	if v := metricValue(t, reg, "tether_store_resyncs_total", map[string]string{"reason": "silent"}); v != 0 {
		t.Errorf("silent resyncs on an idle healthy store = %v, expected 0", v)
	}
	if h := w.Health(); h.Stale {
		t.Errorf("health = %+v, expected not stale", h)
	}
	if n := rec.count(); n != 1 {
		t.Errorf("published %d states while idle, expected only the first", n)
	}
}
