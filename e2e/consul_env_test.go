package e2e

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/internal/consultest"
	"github.com/tether-mesh/tether/mesh"
	consulwatch "github.com/tether-mesh/tether/watchers/consul"
)

// consulPrefix is the KV prefix of `tether agent --source consul` when
// --prefix is not given.
const consulPrefix = consulwatch.DefaultPrefix

// consulEnv is one running mesh on Consul: a dev agent, the demo service
// documents in its KV store, a demo backend per instance registered with
// a passing TTL check, and a Tether agent that watches them. The embedded
// env supplies the backends, the xDS clients and the admin requests.
type consulEnv struct {
	*env
	consul *consultest.Agent
}

// startConsulEnv starts the mesh and runs the Tether agent until the test
// ends.
func startConsulEnv(t *testing.T) *consulEnv {
	t.Helper()
	c := &consulEnv{
		env:    &env{t: t, backends: map[string]*demo.Backend{}, logs: &syncBuffer{}},
		consul: consultest.StartAgent(t),
	}
	for name, doc := range demo.Services() {
		c.putKV(mesh.ServiceKey(consulPrefix, name), doc)
	}
	for _, inst := range demo.Instances() {
		c.register(c.startBackend(inst))
	}
	c.startConsulAgent()
	return c
}

// startConsulAgent runs the Tether agent on a Consul watcher with the
// Config that `tether agent --source consul --consul-addr ADDR` builds.
func (c *consulEnv) startConsulAgent() {
	t := c.t
	log := slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	w, err := consulwatch.New(consulwatch.Config{
		Address:    c.consul.Addr(),
		Prefix:     consulPrefix,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		XDSAddr:    "127.0.0.1:0",
		AdminAddr:  "127.0.0.1:0",
		Watcher:    w,
		SourceName: "consul",
		Logger:     log,
		Registry:   reg,
		DrainDelay: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.agent = a

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent.Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("agent did not stop in time")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", c.logs.String())
			t.Logf("consul output:\n%s", c.consul.Output())
		}
	})
}

// putKV writes a value to Consul KV and fails the test on error.
func (c *consulEnv) putKV(key, value string) {
	c.t.Helper()
	if _, err := c.consul.Client().KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		c.t.Fatalf("put consul key %s: %v", key, err)
	}
}

// ttlCheckID returns the ID of the TTL check that register gives an
// instance.
func ttlCheckID(instance string) string { return "ttl-" + instance }

// register adds a backend to the catalog through the Consul agent: service
// ID the instance name, address 127.0.0.1 and the backend's port, the
// instance labels as service meta, and a TTL check set to passing.
func (c *consulEnv) register(b *demo.Backend) {
	c.t.Helper()
	_, portText, err := net.SplitHostPort(b.Addr)
	if err != nil {
		c.t.Fatalf("backend address %q: %v", b.Addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		c.t.Fatalf("backend port %q: %v", portText, err)
	}
	reg := &api.AgentServiceRegistration{
		ID:      b.Instance.Name,
		Name:    b.Instance.Service,
		Address: "127.0.0.1",
		Port:    port,
		Meta:    b.Instance.Labels,
		Check: &api.AgentServiceCheck{
			CheckID: ttlCheckID(b.Instance.Name),
			TTL:     "10m",
			Status:  api.HealthPassing,
		},
	}
	if err := c.consul.Client().Agent().ServiceRegister(reg); err != nil {
		c.t.Fatalf("register %s in consul: %v", b.Instance.Name, err)
	}
}

// setTTL sets the status of an instance's TTL check: api.HealthPassing,
// api.HealthWarning or api.HealthCritical.
func (c *consulEnv) setTTL(instance, status string) {
	c.t.Helper()
	err := c.consul.Client().Agent().UpdateTTL(ttlCheckID(instance), "set by the test", status)
	if err != nil {
		c.t.Fatalf("set TTL check of %s to %s: %v", instance, status, err)
	}
}

// deregister removes an instance from the catalog.
func (c *consulEnv) deregister(instance string) {
	c.t.Helper()
	if err := c.consul.Client().Agent().ServiceDeregister(instance); err != nil {
		c.t.Fatalf("deregister %s from consul: %v", instance, err)
	}
}
