package consul

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/tether-mesh/tether/internal/consultest"
	"github.com/tether-mesh/tether/mesh"
)

// registerTTL registers one instance of service with a TTL check that
// starts passing, and returns the check ID.
func registerTTL(t *testing.T, client *api.Client, service, id string, port int, tags []string, meta map[string]string) string {
	t.Helper()
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    service,
		Address: "127.0.0.1",
		Port:    port,
		Tags:    tags,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			CheckID: "ttl-" + id,
			TTL:     "10m",
			Status:  api.HealthPassing,
		},
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	return "ttl-" + id
}

// clearKV deletes every key under prefix, which an earlier run on the
// shared agent may have left.
func clearKV(t *testing.T, client *api.Client, prefix string) {
	t.Helper()
	if _, err := client.KV().DeleteTree(prefix, nil); err != nil {
		t.Fatalf("delete %s: %v", prefix, err)
	}
}

func putKV(t *testing.T, client *api.Client, key, value string) {
	t.Helper()
	if _, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestConsulInstanceLifecycle(t *testing.T) {
	agent := sharedConsul(t)
	client := agent.Client()
	const service, id = "lifecycle", "lifecycle-1"

	cfg := fastConfig(agent.Addr())
	cfg.Prefix = "lifecycle-test/"
	passing := startWatcher(t, cfg)
	cfg.IncludeWarning = true
	warning := startWatcher(t, cfg)

	check := registerTTL(t, client, service, id, 8080, []string{"v2"}, map[string]string{"version": "v2"})
	t.Cleanup(func() { _ = client.Agent().ServiceDeregister(id) })

	present := func(s *mesh.State) bool { return endpoint(s, service, id) != nil }
	absent := func(s *mesh.State) bool { return endpoint(s, service, id) == nil }

	s := passing.rec.waitFor(t, "registered instance", present)
	ep := endpoint(s, service, id)
	if ep.Address != "127.0.0.1" || ep.Port != 8080 {
		t.Errorf("endpoint address %s:%d, expected 127.0.0.1:8080", ep.Address, ep.Port)
	}
	if v, ok := ep.Labels["v2"]; !ok || v != "" {
		t.Errorf("labels %v, expected tag label v2=\"\"", ep.Labels)
	}
	if ep.Labels["version"] != "v2" {
		t.Errorf("labels %v, expected meta label version=v2", ep.Labels)
	}
	if ep.Locality.Region != "dc1" {
		t.Errorf("locality %+v, expected region dc1 from the datacenter", ep.Locality)
	}
	warning.rec.waitFor(t, "registered instance with IncludeWarning", present)

	if err := client.Agent().WarnTTL(check, "slow"); err != nil {
		t.Fatalf("set check to warning: %v", err)
	}
	passing.rec.waitFor(t, "instance in warning dropped by default", absent)
	warning.rec.waitFor(t, "instance in warning kept with IncludeWarning", present)

	if err := client.Agent().PassTTL(check, ""); err != nil {
		t.Fatalf("set check to passing: %v", err)
	}
	passing.rec.waitFor(t, "instance passing again", present)

	if err := client.Agent().FailTTL(check, "down"); err != nil {
		t.Fatalf("fail check: %v", err)
	}
	passing.rec.waitFor(t, "failed instance removed", absent)
	warning.rec.waitFor(t, "failed instance removed with IncludeWarning", absent)

	if err := client.Agent().PassTTL(check, ""); err != nil {
		t.Fatalf("set check to passing: %v", err)
	}
	passing.rec.waitFor(t, "instance passing after failure", present)
	if err := client.Agent().ServiceDeregister(id); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	passing.rec.waitFor(t, "deregistered service gone", func(s *mesh.State) bool {
		return s.Endpoints[service] == nil
	})
	// Only this test registers services on the shared agent.
	waitUntil(t, "health watch stopped", func() bool {
		return metricValue(passing.w.metrics.healthWatches) == 0
	})
}

// waitUntil polls cond, for conditions that publish no State.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsulKVDocuments(t *testing.T) {
	agent := sharedConsul(t)
	client := agent.Client()
	const prefix = "kv-test/"
	clearKV(t, client, prefix)

	cfg := fastConfig(agent.Addr())
	cfg.Prefix = prefix
	rw := startWatcher(t, cfg)

	putKV(t, client, prefix+"services/reviews", `{"port": 9080}`)
	rw.rec.waitFor(t, "reviews document", func(s *mesh.State) bool {
		return s.Services["reviews"] != nil && s.Services["reviews"].Port == 9080
	})

	putKV(t, client, prefix+"services/reviews", `{"port": 9081, "protocol": "grpc"}`)
	rw.rec.waitFor(t, "reviews document changed", func(s *mesh.State) bool {
		svc := s.Services["reviews"]
		return svc != nil && svc.Port == 9081 && svc.Protocol == mesh.ProtocolGRPC
	})

	badKey := prefix + "services/ratings"
	putKV(t, client, badKey, `{"port": 70000}`)
	s := rw.rec.waitFor(t, "invalid ratings document reported", func(s *mesh.State) bool {
		return s.Invalid[badKey] != nil
	})
	if got := invalidFields(s.Invalid[badKey]); len(got) != 1 || got[0] != "port" {
		t.Errorf("invalid fields of %s: %v, expected [port]", badKey, got)
	}
	if s.Services["ratings"] != nil {
		t.Errorf("invalid ratings document is in Services: %+v", s.Services["ratings"])
	}
	if got := metricValue(rw.w.metrics.InvalidTotal); got < 1 {
		t.Errorf("tether_store_invalid_documents_total %v, expected at least 1", got)
	}

	putKV(t, client, prefix+"services/details", `{"port": 9082}`)
	rw.rec.waitFor(t, "details document after the invalid one", func(s *mesh.State) bool {
		return s.Services["details"] != nil && s.Invalid[badKey] != nil
	})

	putKV(t, client, badKey, `{"port": 9083}`)
	rw.rec.waitFor(t, "ratings fixed", func(s *mesh.State) bool {
		return s.Services["ratings"] != nil && s.Invalid[badKey] == nil
	})

	if _, err := client.KV().Delete(prefix+"services/reviews", nil); err != nil {
		t.Fatalf("delete reviews: %v", err)
	}
	rw.rec.waitFor(t, "reviews deleted", func(s *mesh.State) bool { return s.Services["reviews"] == nil })

	// Keys the Consul source does not read are reported, not ignored.
	for _, key := range []string{prefix + "other/x", prefix + "endpoints/ratings/a"} {
		putKV(t, client, key, `{"address": "10.0.0.1", "port": 80}`)
		s := rw.rec.waitFor(t, key+" reported", func(s *mesh.State) bool { return s.Invalid[key] != nil })
		if msg := s.Invalid[key].Error(); !strings.Contains(msg, "endpoints come from the catalog") {
			t.Errorf("error for %s = %q, want it to say where endpoints come from", key, msg)
		}
		if s.EndpointCount() != 0 {
			t.Errorf("%s became an endpoint", key)
		}
	}
}

func TestConsulAgentRestart(t *testing.T) {
	agent := consultest.StartAgent(t)
	const prefix, service, id = "restart-test/", "restart", "restart-1"

	cfg := fastConfig(agent.Addr())
	cfg.Prefix = prefix
	// The default rate limit, so that the idle bound below holds for it.
	cfg.QueryRate, cfg.QueryBurst = 0, 0
	rw := startWatcher(t, cfg)

	populate := func(port int) {
		client := agent.Client()
		putKV(t, client, prefix+"services/"+service, fmt.Sprintf(`{"port": %d}`, port))
		registerTTL(t, client, service, id, port, nil, nil)
	}
	converged := func(port int) func(*mesh.State) bool {
		return func(s *mesh.State) bool {
			svc, ep := s.Services[service], endpoint(s, service, id)
			return svc != nil && svc.Port == uint32(port) && ep != nil && ep.Port == uint32(port)
		}
	}

	populate(7001)
	before := rw.rec.waitFor(t, "state before restart", converged(7001))

	agent.Stop()
	waitUntil(t, "stale health after the agent stopped", func() bool { return rw.w.Health().Stale })
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	populate(7002)
	after := rw.rec.waitFor(t, "state after restart", converged(7002))
	waitUntil(t, "fresh health after restart", func() bool { return !rw.w.Health().Stale })
	t.Logf("revision before restart %d, after %d", before.Revision, after.Revision)

	// Idle: every query is blocked in Consul, so requests must not grow by
	// more than one per query over the window.
	const window = 3 * time.Second
	const maxIdleRequests = 3
	start := rw.totalRequests()
	time.Sleep(window)
	if grew := rw.totalRequests() - start; grew > maxIdleRequests {
		t.Errorf("tether_consul_requests_total grew by %v while idle for %v, expected at most %d",
			grew, window, maxIdleRequests)
	}
}
