package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	xdsresolver "google.golang.org/grpc/xds"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/demo"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
	"github.com/tether-mesh/tether/xds"
	"github.com/tether-mesh/tether/xds/bootstrap"
)

// waitTimeout bounds every wait for a push, an ACK or a server to start.
const waitTimeout = 60 * time.Second

// edsType is the type URL whose ACKs end a propagation measurement.
const edsType = resourcev3.EndpointType

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startEtcd starts an embedded etcd server without fsync and returns a
// client of it. Both are closed when tb ends.
func startEtcd(tb testing.TB) (*embed.Etcd, *clientv3.Client) {
	tb.Helper()
	srv, err := demo.StartEtcd(demo.EtcdConfig{
		Dir: tb.TempDir(), ClientAddr: freeAddr(tb), PeerAddr: freeAddr(tb), NoFsync: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	return srv, newEtcdClient(tb, srv)
}

func newEtcdClient(tb testing.TB, srv *embed.Etcd) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{srv.Clients[0].Addr().String()},
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
		// The catch-up baseline reads 100,000 events in large responses.
		MaxCallRecvMsgSize: 64 << 20,
	})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// startBackends starts n demo gRPC backends, one per endpoint of svc-0000,
// and returns their addresses.
func startBackends(tb testing.TB, n int) []string {
	tb.Helper()
	addrs := make([]string, n)
	for e := range n {
		b, err := demo.StartBackend(demo.Instance{
			Service: serviceName(0),
			Name:    serviceName(0) + "-" + instanceName(e),
			Labels:  map[string]string{"version": endpointVersion(e)},
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(b.Stop)
		addrs[e] = b.Addr
	}
	return addrs
}

// tetherEnv is a running agent with its etcd watcher and the registry its
// metrics go to.
type tetherEnv struct {
	agent    *agent.Agent
	registry *prometheus.Registry
	acks     *ackTracker
}

// startAgent runs an agent that watches cli until tb ends. Its OnAck hook
// feeds acks; NACKs are counted from its metrics.
func startAgent(tb testing.TB, cli *clientv3.Client, acks *ackTracker) *tetherEnv {
	tb.Helper()
	a, reg, err := newAgent(cli, acks)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("agent.Run: %v", err)
			}
		case <-time.After(waitTimeout):
			tb.Error("agent did not stop within the wait timeout")
		}
	})
	return &tetherEnv{agent: a, registry: reg, acks: acks}
}

// newAgent builds an agent with an etcd watcher on cli and a fresh
// registry. acks may be nil.
func newAgent(cli *clientv3.Client, acks *ackTracker) (*agent.Agent, *prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	w, err := etcdwatch.New(etcdwatch.Config{Client: cli, Prefix: prefix, Logger: log, Registerer: reg})
	if err != nil {
		return nil, nil, fmt.Errorf("etcd watcher: %w", err)
	}
	cfg := agent.Config{
		XDSAddr:    "127.0.0.1:0",
		AdminAddr:  "127.0.0.1:0",
		Watcher:    w,
		SourceName: "etcd",
		Logger:     log,
		Registry:   reg,
		DrainDelay: 100 * time.Millisecond,
	}
	if acks != nil {
		cfg.OnAck = func(ev xds.AckEvent) { acks.ack(ev.StreamID, ev.TypeURL, ev.Version, ev.At) }
	}
	a, err := agent.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	return a, reg, nil
}

// waitReady waits until the agent applied its first state.
func (e *tetherEnv) waitReady(tb testing.TB) {
	tb.Helper()
	if !poll(waitTimeout, func() bool { return e.agent.Cache().Applied() > 0 }) {
		tb.Fatalf("agent applied no state within %s", waitTimeout)
	}
}

// edsVersion returns the agent's current EDS type version.
func (e *tetherEnv) edsVersion(tb testing.TB) uint64 {
	tb.Helper()
	v, err := strconv.ParseUint(e.agent.Cache().Version(edsType), 10, 64)
	if err != nil {
		tb.Fatalf("agent EDS version is not a counter: %v", err)
	}
	return v
}

// sentBytes returns tether_xds_sent_bytes_total summed over types.
func (e *tetherEnv) sentBytes(tb testing.TB) float64 {
	tb.Helper()
	return counterSum(tb, e.registry, "tether_xds_sent_bytes_total")
}

// nacks returns tether_xds_nacks_total summed over types.
func (e *tetherEnv) nacks(tb testing.TB) float64 {
	tb.Helper()
	return counterSum(tb, e.registry, "tether_xds_nacks_total")
}

func counterSum(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// poll calls cond every 100µs until it returns true or timeout passes.
// It is for conditions that no event announces, such as a cache counter.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Microsecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// dialClients starts n grpc-go clients, each with its own xDS bootstrap
// and node id (nodePrefix-000, nodePrefix-001, ...), dials xds:///target through
// the xDS server at xdsAddr, and makes one RPC with each so that the
// client holds listener, route, cluster and endpoint state. Each client
// opens one ADS stream.
func dialClients(tb testing.TB, xdsAddr, target, nodePrefix string, n int) {
	tb.Helper()
	conns := make([]*grpc.ClientConn, n)
	tb.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})

	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			c, err := dialOne(ctx, xdsAddr, target, fmt.Sprintf("%s-%03d", nodePrefix, i))
			conns[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
}

func dialOne(ctx context.Context, xdsAddr, target, nodeID string) (*grpc.ClientConn, error) {
	cfg, err := bootstrap.GRPC(bootstrap.GRPCOptions{ServerAddr: xdsAddr, NodeID: nodeID})
	if err != nil {
		return nil, err
	}
	resolver, err := xdsresolver.NewXDSResolverWithConfigForTesting(cfg)
	if err != nil {
		return nil, fmt.Errorf("xds resolver for %s: %w", nodeID, err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial xds:///%s as %s: %w", target, nodeID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	_, err = testgrpc.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true))
	if err != nil {
		return conn, fmt.Errorf("first rpc to xds:///%s as %s: %w", target, nodeID, err)
	}
	return conn, nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
