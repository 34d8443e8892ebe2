package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tether-mesh/tether/agent"
	"github.com/tether-mesh/tether/watchers"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
)

// serveFlags are the flags of the xDS and admin servers, shared by agent
// and dev.
type serveFlags struct {
	xdsAddr        string
	adminAddr      string
	debounce       time.Duration
	maxDelay       time.Duration
	drainDelay     time.Duration
	cacheFile      string
	silenceTimeout time.Duration
	namingPrefixes []string
	insecureRemote bool
	allowEmptyMesh bool
	resetGrace     time.Duration
}

func (s *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.xdsAddr, "xds-addr", agent.DefaultXDSAddr, "host:port of the xDS gRPC server")
	fs.StringVar(&s.adminAddr, "admin-addr", agent.DefaultAdminAddr, "host:port of the admin HTTP server (/healthz/live, /healthz/ready, /debug/config_dump, /debug/syncz, /metrics)")
	fs.DurationVar(&s.debounce, "debounce", agent.DefaultDebounce, "quiet time after a store change before the agent pushes (for example 1ms)")
	fs.DurationVar(&s.maxDelay, "max-delay", agent.DefaultMaxDelay, "longest a burst of changes delays a push (for example 50ms)")
	fs.DurationVar(&s.drainDelay, "drain-delay", agent.DefaultDrainDelay, "how long open xDS streams may stay after shutdown starts (for example 5s)")
	fs.StringVar(&s.cacheFile, "cache-file", "", "file for the last-known-good mesh state, served at start until the store responds; empty disables it")
	fs.DurationVar(&s.silenceTimeout, "silence-timeout", etcdwatch.DefaultSilenceTimeout, "etcd only: longest an etcd watch may stay silent, with no event and no progress notification, before the agent marks the store stale and reconnects")
	fs.DurationVar(&s.resetGrace, "reset-grace", agent.DefaultResetGrace, "how long to wait after the store's revision goes backwards (a reset or restore) before serving its state, so it can settle (for example 5s)")
	fs.BoolVar(&s.allowEmptyMesh, "allow-empty-mesh", false, "serve a store state with no services or no endpoints even when some were served before; without it such a state is held back and reported, because a store that lost its data looks the same")
	fs.BoolVar(&s.insecureRemote, "insecure-remote", false, "allow --xds-addr and --admin-addr outside loopback without TLS; any host that reaches them can read the whole mesh")
	fs.StringSliceVar(&s.namingPrefixes, "etcd-naming-prefix", nil, "etcd only: also read endpoints registered with etcd's naming/endpoints package: keys <prefix><service>/<anything>; repeatable")
}

func newAgentCommand(g *globalFlags) *cobra.Command {
	var src sourceFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Watch an existing etcd or Consul and serve the mesh over xDS",
		Long: `Run the agent against an existing etcd cluster (--source etcd, the default) or
Consul (--source consul: service documents from KV, endpoints from the
catalog's health API). The agent lists the store, follows its changes, and
serves the translated mesh over xDS until it receives SIGINT or SIGTERM, then
drains open streams for --drain-delay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			w, release, err := src.watcher(log, reg, &sf)
			if err != nil {
				return err
			}
			defer release()
			return runAgent(cmd.Context(), log, reg, w, src.source, &sf, nil)
		},
	}
	src.register(cmd.Flags())
	sf.register(cmd.Flags())
	return cmd
}

// runAgent runs the agent on a watcher until ctx is done. started, if not
// nil, is called once the listeners are open.
func runAgent(ctx context.Context, log *slog.Logger, reg *prometheus.Registry, w watchers.Watcher,
	sourceName string, sf *serveFlags, started func(*agent.Agent),
) error {
	a, err := agent.New(agent.Config{
		XDSAddr:        sf.xdsAddr,
		AdminAddr:      sf.adminAddr,
		Debounce:       sf.debounce,
		MaxDelay:       sf.maxDelay,
		DrainDelay:     sf.drainDelay,
		CacheFile:      sf.cacheFile,
		InsecureRemote: sf.insecureRemote,
		AllowEmptyMesh: sf.allowEmptyMesh,
		ResetGrace:     sf.resetGrace,
		Watcher:        w,
		SourceName:     sourceName,
		Logger:         log,
		Registry:       reg,
	})
	if err != nil {
		return err
	}
	if started != nil {
		started(a)
	}
	return a.Run(ctx)
}
