// Package adsc checks Tether's xDS server against Istio's ADS client
// (istio.io/istio/pkg/adsc), a real xDS client that speaks delta ADS. It is
// a separate module because Istio pulls in Kubernetes, which the agent's own
// module must not depend on.
package adsc

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/mesh"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
)

// waitTimeout bounds every wait for a client to converge.
const waitTimeout = 15 * time.Second

// prefix is the etcd key prefix the demo mesh is written under.
const prefix = "/tether/"

// env is one running mesh: embedded etcd seeded with the demo mesh, and the
// agent serving it.
type env struct {
	t        *testing.T
	cli      *clientv3.Client
	agent    *agent.Agent
	backends map[string]*demo.Backend
	lease    clientv3.LeaseID
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startEnv starts etcd, seeds the demo mesh with a backend per instance,
// and runs the agent until the test ends.
func startEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, backends: map[string]*demo.Backend{}}
	e.startEtcd()
	e.seed()
	e.startAgent()
	return e
}

func (e *env) startEtcd() {
	t := e.t
	cfg := demo.EtcdConfig{Dir: t.TempDir(), ClientAddr: freeAddr(t), PeerAddr: freeAddr(t), NoFsync: true}
	srv, err := demo.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() { closeEtcd(srv) })

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{cfg.ClientAddr},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("connect to etcd at %s: %v", cfg.ClientAddr, err)
	}
	t.Cleanup(func() { cli.Close() })
	e.cli = cli
}

func closeEtcd(srv *embed.Etcd) { srv.Close() }

// seed starts a demo backend per instance and writes the demo mesh.
func (e *env) seed() {
	t := e.t
	backends := make([]*demo.Backend, 0, len(demo.Instances()))
	for _, inst := range demo.Instances() {
		b, err := demo.StartBackend(inst)
		if err != nil {
			t.Fatalf("start backend %s: %v", inst.Name, err)
		}
		t.Cleanup(b.Stop)
		e.backends[inst.Name] = b
		backends = append(backends, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	lease, err := e.cli.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("grant lease: %v", err)
	}
	e.lease = lease.ID
	if err := demo.Seed(ctx, e.cli, prefix, backends, lease.ID); err != nil {
		t.Fatalf("seed demo mesh: %v", err)
	}
}

func (e *env) startAgent() {
	t := e.t
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	w, err := etcdwatch.New(etcdwatch.Config{Client: e.cli, Prefix: prefix, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatalf("new etcd watcher: %v", err)
	}
	a, err := agent.New(agent.Config{
		XDSAddr:    "127.0.0.1:0",
		AdminAddr:  "127.0.0.1:0",
		Watcher:    w,
		SourceName: "etcd",
		Logger:     log,
		Registry:   reg,
		DrainDelay: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	e.agent = a

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
			t.Errorf("agent did not stop within %s", waitTimeout)
		}
	})
}

// put writes a value and fails the test on error.
func (e *env) put(key, value string, opts ...clientv3.OpOption) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := e.cli.Put(ctx, key, value, opts...); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

// del deletes a key and fails the test on error.
func (e *env) del(key string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := e.cli.Delete(ctx, key); err != nil {
		e.t.Fatalf("delete %s: %v", key, err)
	}
}

// putEndpoint writes the endpoint document of a demo instance with the
// weight given, under the env's lease.
func (e *env) putEndpoint(instance string, weight uint32) {
	e.t.Helper()
	b := e.backends[instance]
	doc, err := endpointDocument(b, weight)
	if err != nil {
		e.t.Fatalf("endpoint document of %s: %v", instance, err)
	}
	e.put(mesh.EndpointKey(prefix, b.Instance.Service, b.Instance.Name), doc, clientv3.WithLease(e.lease))
}
