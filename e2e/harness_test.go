// Package e2e runs Tether against real parts: an embedded etcd server,
// the agent's xDS server, demo gRPC backends, and grpc-go's own xDS
// resolver and balancer as the client.
package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	xdsresolver "google.golang.org/grpc/xds"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/internal/faultnet"
	"github.com/tether-mesh/tether/mesh"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
	"github.com/tether-mesh/tether/xds/bootstrap"
)

// waitTimeout bounds every wait for the mesh to converge.
const waitTimeout = 15 * time.Second

const prefix = "/tether/"

// env is one running mesh: etcd, the agent and the demo backends.
type env struct {
	t        *testing.T
	etcdCfg  demo.EtcdConfig
	etcd     *embed.Etcd
	cli      *clientv3.Client
	agent    *agent.Agent
	backends map[string]*demo.Backend
	lease    clientv3.LeaseID
	logs     *syncBuffer
	proxy    *faultnet.Proxy
}

type envOptions struct {
	silenceTimeout time.Duration
	// throughProxy puts a fault-injecting proxy between the agent and etcd;
	// the test's own writes go to etcd directly.
	throughProxy bool
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
func startEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, backends: map[string]*demo.Backend{}, logs: &syncBuffer{}}
	e.etcdCfg = demo.EtcdConfig{Dir: t.TempDir(), ClientAddr: freeAddr(t), PeerAddr: freeAddr(t), NoFsync: true}
	e.startEtcd()
	t.Cleanup(e.stopEtcd)

	cli := newEtcdClient(t, e.etcdCfg.ClientAddr)
	e.cli = cli

	for _, inst := range demo.Instances() {
		e.startBackend(inst)
	}
	lease, err := cli.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	e.lease = lease.ID
	backends := make([]*demo.Backend, 0, len(e.backends))
	for _, b := range e.backends {
		backends = append(backends, b)
	}
	if err := demo.Seed(t.Context(), cli, prefix, backends, lease.ID); err != nil {
		t.Fatal(err)
	}
	e.startAgent(opts)
	return e
}

func newEtcdClient(t *testing.T, addr string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{addr},
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (e *env) startEtcd() {
	e.t.Helper()
	srv, err := demo.StartEtcd(e.etcdCfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.etcd = srv
}

func (e *env) stopEtcd() {
	if e.etcd != nil {
		e.etcd.Close()
		e.etcd = nil
	}
}

func (e *env) startBackend(inst demo.Instance) *demo.Backend {
	e.t.Helper()
	b, err := demo.StartBackend(inst)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(b.Stop)
	e.backends[inst.Name] = b
	return b
}

func (e *env) startAgent(opts envOptions) {
	t := e.t
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	agentCli := e.cli
	if opts.throughProxy {
		p, err := faultnet.Start(e.etcdCfg.ClientAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		e.proxy = p
		agentCli = newEtcdClient(t, p.Addr())
	}
	w, err := etcdwatch.New(etcdwatch.Config{
		Client: agentCli, Prefix: prefix, SilenceTimeout: opts.silenceTimeout, Logger: log, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
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
		t.Fatal(err)
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
			t.Error("agent did not stop in time")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", e.logs.String())
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

func (e *env) del(key string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := e.cli.Delete(ctx, key); err != nil {
		e.t.Fatalf("delete %s: %v", key, err)
	}
}

// putEndpoint registers a backend's endpoint document under the lease
// given, or the env's lease when lease is 0.
func (e *env) putEndpoint(b *demo.Backend, lease clientv3.LeaseID) {
	e.t.Helper()
	doc, err := demo.EndpointDocument(b.Instance, b.Addr)
	if err != nil {
		e.t.Fatal(err)
	}
	if lease == 0 {
		lease = e.lease
	}
	e.put(mesh.EndpointKey(prefix, b.Instance.Service, b.Instance.Name), string(doc), clientv3.WithLease(lease))
}

// dial returns a grpc-go client that resolves target through the agent
// with grpc-go's own xDS resolver.
func (e *env) dial(target, nodeID string) testgrpc.TestServiceClient {
	e.t.Helper()
	b, err := bootstrap.GRPC(bootstrap.GRPCOptions{ServerAddr: e.agent.XDSAddr(), NodeID: nodeID})
	if err != nil {
		e.t.Fatal(err)
	}
	resolver, err := xdsresolver.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// call sends n requests and counts the replies by instance name. Failed
// requests count under "error".
func call(t *testing.T, c testgrpc.TestServiceClient, n int, headers ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	ctx := context.Background()
	if len(headers) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, headers...)
	}
	for range n {
		rctx, cancel := context.WithTimeout(ctx, waitTimeout)
		resp, err := c.UnaryCall(rctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			out["error"]++
			continue
		}
		out[resp.GetServerId()]++
	}
	return out
}

// eventually sends batches of n requests until check accepts a batch or
// waitTimeout passes.
func eventually(t *testing.T, c testgrpc.TestServiceClient, n int, what string, check func(map[string]int) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last map[string]int
	for time.Now().Before(deadline) {
		last = call(t, c, n)
		if check(last) {
			return
		}
	}
	t.Fatalf("%s: not reached within %s; last batch of %d replies by instance: %v", what, waitTimeout, n, last)
}

// getJSON fetches an admin endpoint and decodes it into v, returning the
// status code.
func (e *env) getJSON(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get("http://" + e.agent.AdminAddr() + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			e.t.Fatalf("GET %s: decode %q: %v", path, body, err)
		}
	}
	return resp.StatusCode
}

func (e *env) getText(path string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.agent.AdminAddr() + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(body)
}
