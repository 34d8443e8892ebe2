//go:build !slim

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/telemetry"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
)

// devLeaseTTL is the lease of the demo endpoint keys, in seconds. The dev
// command keeps it alive; if the process dies, the endpoints vanish this
// long after.
const devLeaseTTL = 10

func newDevCommand(g *globalFlags) *cobra.Command {
	var sf serveFlags
	var dataDir, etcdAddr, etcdPeerAddr, prefix string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the agent with an embedded etcd and the demo mesh",
		Long: `Start an in-process etcd in --data-dir, seed the demo mesh (productpage,
details, reviews v1/v2/v3 behind a weighted route, ratings), start a small gRPC
backend for every demo endpoint, and serve the mesh over xDS to any node that
connects. Service documents you edit survive a restart; demo endpoints are
rewritten at every start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return runDev(cmd.Context(), log, devOptions{
				dataDir: dataDir, etcdAddr: etcdAddr, etcdPeerAddr: etcdPeerAddr, prefix: prefix, serve: &sf,
			})
		},
	}
	sf.register(cmd.Flags())
	cmd.Flags().Lookup("cache-file").Usage = "file for the last-known-good mesh state, served at start until the store responds (default <data-dir>/last-known-good.json)"
	cmd.Flags().StringVar(&dataDir, "data-dir", "tether-dev-data", "directory of the embedded etcd's data and the last-known-good file")
	cmd.Flags().StringVar(&etcdAddr, "etcd-listen-addr", "127.0.0.1:2379", "host:port where the embedded etcd serves clients such as etcdctl and tether config")
	cmd.Flags().StringVar(&etcdPeerAddr, "etcd-peer-addr", "127.0.0.1:2380", "host:port of the embedded etcd's peer listener")
	cmd.Flags().StringVar(&prefix, "prefix", "/tether/", "key prefix of the mesh in etcd")
	return cmd
}

type devOptions struct {
	dataDir, etcdAddr, etcdPeerAddr, prefix string
	serve                                   *serveFlags
}

func runDev(ctx context.Context, log *slog.Logger, o devOptions) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("create --data-dir: %w", err)
	}
	unlock, err := lockDataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	etcdCfg := demo.EtcdConfig{Dir: filepath.Join(o.dataDir, "etcd"), ClientAddr: o.etcdAddr, PeerAddr: o.etcdPeerAddr}
	if log.Enabled(ctx, slog.LevelDebug) {
		// etcd logs expected errors while it shuts down, so its log joins
		// the agent's only when asked for.
		etcdCfg.Logger = telemetry.ZapLogger(log, "embedded-etcd")
	}
	etcd, err := demo.StartEtcd(etcdCfg)
	if err != nil {
		return err
	}
	defer etcd.Close()
	etcdURL := demo.ClientURL(etcd)

	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second, Logger: telemetry.ZapLogger(log, "etcd-client"),
	})
	if err != nil {
		return fmt.Errorf("connect to embedded etcd: %w", err)
	}
	defer cli.Close()

	var backends []*demo.Backend
	defer func() {
		for _, b := range backends {
			b.Stop()
		}
	}()
	for _, inst := range demo.Instances() {
		b, err := demo.StartBackend(inst)
		if err != nil {
			return err
		}
		backends = append(backends, b)
	}
	keepAlive, err := registerDemo(ctx, cli, o.prefix, backends)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { keepDemoRegistered(ctx, log, cli, o.prefix, backends, keepAlive) })

	if o.serve.cacheFile == "" {
		o.serve.cacheFile = filepath.Join(o.dataDir, "last-known-good.json")
	}
	reg := prometheus.NewRegistry()
	w, err := etcdwatch.New(etcdwatch.Config{
		Client:         cli,
		Prefix:         o.prefix,
		NamingPrefixes: o.serve.namingPrefixes,
		SilenceTimeout: o.serve.silenceTimeout,
		Logger:         log,
		Registerer:     reg,
	})
	if err != nil {
		return err
	}
	return runAgent(ctx, log, reg, w, sourceEtcd, o.serve, func(a *agent.Agent) {
		printDevBanner(a, etcdURL, o.prefix, backends)
	})
}

// registerDemo seeds the demo mesh with the endpoints under a new lease
// and returns the lease's keep-alive channel.
func registerDemo(ctx context.Context, cli *clientv3.Client, prefix string, backends []*demo.Backend) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	lease, err := cli.Grant(ctx, devLeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("grant lease for demo endpoints: %w", err)
	}
	keepAlive, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return nil, fmt.Errorf("keep demo endpoint lease alive: %w", err)
	}
	if err := demo.Seed(ctx, cli, prefix, backends, lease.ID); err != nil {
		return nil, err
	}
	return keepAlive, nil
}

// keepDemoRegistered drains the lease's keep-alive responses and, when the
// lease ends while the process lives (it was paused or suspended longer
// than the lease), registers the demo endpoints again under a new lease.
func keepDemoRegistered(ctx context.Context, log *slog.Logger, cli *clientv3.Client, prefix string,
	backends []*demo.Backend, keepAlive <-chan *clientv3.LeaseKeepAliveResponse,
) {
	for {
		for range keepAlive {
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("demo endpoint lease ended; registering the demo endpoints again", "component", "dev")
		for {
			var err error
			if keepAlive, err = registerDemo(ctx, cli, prefix, backends); err == nil {
				break
			}
			log.Warn("registering the demo endpoints failed; retrying in 1s", "component", "dev", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// lockDataDir takes an exclusive lock on the data directory, so that a
// second dev process on it fails at once instead of waiting forever on
// etcd's own database lock. The returned function releases it.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "tether-dev.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("--data-dir %s is in use by another tether dev process: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func printDevBanner(a *agent.Agent, etcdURL, prefix string, backends []*demo.Backend) {
	out := os.Stdout
	fmt.Fprintf(out, "tether dev is running\n\n")
	fmt.Fprintf(out, "  embedded etcd   %s (mesh under %s)\n", etcdURL, prefix)
	fmt.Fprintf(out, "  xDS server      %s (ADS and per-type services, state of the world and delta)\n", a.XDSAddr())
	fmt.Fprintf(out, "  admin HTTP      http://%s (/healthz/ready, /debug/config_dump, /debug/syncz, /metrics)\n", a.AdminAddr())
	fmt.Fprintf(out, "  demo backends   ")
	for i, b := range backends {
		if i > 0 {
			fmt.Fprintf(out, "                  ")
		}
		fmt.Fprintf(out, "%s at %s\n", b.Instance.Name, b.Addr)
	}
	fmt.Fprintf(out, "\nTry it:\n")
	fmt.Fprintf(out, "  tether call xds:///reviews -n 20 --xds-addr %s       # see the 50/30/20 split\n", a.XDSAddr())
	fmt.Fprintf(out, "  tether call xds:///reviews -n 5 -H end-user=jason --xds-addr %s\n", a.XDSAddr())
	fmt.Fprintf(out, "  tether config get reviews --etcd-endpoints %s\n\n", etcdURL)
}
