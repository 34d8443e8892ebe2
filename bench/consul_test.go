package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/internal/consultest"
	consulwatch "github.com/tether-mesh/tether/watchers/consul"
	"github.com/tether-mesh/tether/xds"
)

// consulServices is the number of services the Consul benchmark watches.
const consulServices = 100

// consulIdleWindow is how long the idle request count is measured.
const consulIdleWindow = 15 * time.Second

// consulEnv is an agent following a Consul dev agent with consulServices
// services of one instance each, and one grpc-go client of svc-0000.
type consulEnv struct {
	consul   *consultest.Agent
	tether   *tetherEnv
	backends []string
}

func startConsulEnv(tb testing.TB, clients int) *consulEnv {
	tb.Helper()
	consul := consultest.StartAgent(tb)
	backends := startBackends(tb, 2)
	client := consul.Client()
	for i := range consulServices {
		name := serviceName(i)
		doc := "protocol: grpc\nport: 9080\n"
		if _, err := client.KV().Put(&api.KVPair{Key: "tether/services/" + name, Value: []byte(doc)}, nil); err != nil {
			tb.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.1.%d:%d", i%250+1, 9080)
		if i == 0 {
			addr = backends[0]
		}
		registerInstance(tb, client, name, name+"-0", addr)
	}

	acks := newAckTracker()
	reg := prometheus.NewRegistry()
	log := discardLogger()
	w, err := consulwatch.New(consulwatch.Config{Address: consul.Addr(), Logger: log, Registerer: reg})
	if err != nil {
		tb.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Watcher: w, SourceName: "consul",
		Logger: log, Registry: reg, DrainDelay: 100 * time.Millisecond,
		OnAck: func(ev xds.AckEvent) { acks.ack(ev.StreamID, ev.TypeURL, ev.Version, ev.At) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	te := &tetherEnv{agent: a, registry: reg, acks: acks}
	runAgent(tb, a)
	te.waitReady(tb)
	dialClients(tb, a.XDSAddr(), serviceName(0), "consul", clients)
	w8 := acks.expect(edsType, te.edsVersion(tb), clients)
	if _, ok := w8.await(waitTimeout); !ok {
		tb.Fatalf("clients did not ACK the first endpoints")
	}
	return &consulEnv{consul: consul, tether: te, backends: backends}
}

// runAgent runs a until tb ends.
func runAgent(tb testing.TB, a *agent.Agent) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			tb.Error("agent did not stop within the wait timeout")
		}
	})
}

func registerInstance(tb testing.TB, client *api.Client, service, id, addr string) {
	tb.Helper()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		tb.Fatal(err)
	}
	// A service with no checks counts as passing.
	reg := &api.AgentServiceRegistration{ID: id, Name: service, Address: host, Port: port, Meta: map[string]string{"version": "v1"}}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		tb.Fatalf("register %s: %v", id, err)
	}
}

// BenchmarkConsulPropagation measures a catalog registration of a new
// instance of svc-0000, spaced past the watcher's rate limit, from the register call to the client's ACK of the
// endpoints that hold it, with consulServices services watched. The
// deregistration between two iterations is measured the same way. It also
// reports the HTTP requests Consul served per minute while nothing
// changed.
func BenchmarkConsulPropagation(b *testing.B) {
	e := startConsulEnv(b, 1)
	client := e.consul.Client()
	var latencies []time.Duration
	measure := func(change func()) {
		// Each watched query may run once a second after a burst of five
		// (the watcher's default rate limit). Changes spaced wider than
		// that measure the delay of a single registration; changes faster than it
		// wait for the limiter, up to a second each.
		time.Sleep(time.Duration(float64(time.Second) / float64(consulwatch.DefaultQueryRate))) // spacing changes; nothing to await
		target := e.tether.edsVersion(b) + 1
		wait := e.tether.acks.expect(edsType, target, 1)
		start := time.Now()
		change()
		at, ok := wait.await(waitTimeout)
		if !ok {
			b.Fatalf("client did not ACK endpoints version %d", target)
		}
		latencies = append(latencies, at.Sub(start))
	}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("svc-0000-extra-%d", i)
		i++
		measure(func() { registerInstance(b, client, serviceName(0), id, e.backends[1]) })
		measure(func() {
			if err := client.Agent().ServiceDeregister(id); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.StopTimer()

	requests := func() float64 { return counterSum(b, e.tether.registry, "tether_consul_requests_total") }
	before := requests()
	time.Sleep(consulIdleWindow) // measuring an idle period; nothing to await
	idlePerMinute := (requests() - before) * float64(time.Minute) / float64(consulIdleWindow)

	b.ReportMetric(percentileMs(latencies, 50), "p50-ms")
	b.ReportMetric(percentileMs(latencies, 99), "p99-ms")
	b.ReportMetric(idlePerMinute, "idle-requests/min")
	b.Logf("consul: %d services watched, %d changes: p50=%.2fms p99=%.2fms; idle: %.1f requests/min "+
		"(baseline: Consul's own xDS server not measured, see RESULTS.md)",
		consulServices, len(latencies), percentileMs(latencies, 50), percentileMs(latencies, 99), idlePerMinute)
}
