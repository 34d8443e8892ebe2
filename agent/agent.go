package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/xds"
)

// Agent is one running Tether agent. Create it with New, run it with Run.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	metrics *agentMetrics

	xdsLis   net.Listener
	adminLis net.Listener
	cache    *xds.Cache
	server   *xds.Server

	// updated has capacity one: publish sends without blocking and the
	// pump receives. It is never closed.
	updated chan struct{}

	mu sync.Mutex
	// pending is the newest state not yet pushed and its source; guarded
	// by mu.
	pending       *mesh.State
	pendingSource string
	// current is the state last pushed and its source; guarded by mu.
	current       *mesh.State
	currentSource string
	lastPush      time.Time
	// storeServed is set once a state from the store (not the
	// last-known-good file) was pushed; guarded by mu.
	storeServed bool
	// draining is set when shutdown starts.
	draining atomic.Bool
	// heldEmpty is set while a state with no services is held back; see
	// Config.AllowEmptyMesh. Guarded by mu.
	heldEmpty bool
	// resetUntil is when the wait after a store reset ends, or zero; see
	// Config.ResetGrace. Guarded by mu.
	resetUntil time.Time
}

// sourceLastKnownGood names states read from the last-known-good file.
const sourceLastKnownGood = "last-known-good"

// New checks cfg and opens the xDS and admin listeners, so that a busy
// port is reported before anything starts.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "agent"),
		cache:   xds.NewCache(),
		updated: make(chan struct{}, 1),
	}
	a.metrics = newAgentMetrics(cfg.Registry, a)
	a.server = xds.NewServer(a.cache, xds.Options{Logger: cfg.Logger, Registerer: cfg.Registry, OnAck: cfg.OnAck})

	var err error
	if a.xdsLis, err = net.Listen("tcp", cfg.XDSAddr); err != nil {
		return nil, fmt.Errorf("listen for xds on %s: %w", cfg.XDSAddr, err)
	}
	if a.adminLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		a.xdsLis.Close()
		return nil, fmt.Errorf("listen for admin http on %s: %w", cfg.AdminAddr, err)
	}
	return a, nil
}

// XDSAddr returns the address the xDS server listens on.
func (a *Agent) XDSAddr() string { return a.xdsLis.Addr().String() }

// AdminAddr returns the address the admin server listens on.
func (a *Agent) AdminAddr() string { return a.adminLis.Addr().String() }

// Cache returns the xDS cache the agent pushes to.
func (a *Agent) Cache() *xds.Cache { return a.cache }

// Server returns the xDS server, for status and tests.
func (a *Agent) Server() *xds.Server { return a.server }

// Run serves until ctx is done, then drains and returns. It returns the
// first error of any component; the others are stopped and waited for.
func (a *Agent) Run(ctx context.Context) error {
	defer a.xdsLis.Close()
	defer a.adminLis.Close()

	if st := a.loadLastKnownGood(); st != nil {
		a.publishFrom(st, sourceLastKnownGood)
	}

	grpcServer := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	a.server.Register(grpcServer)
	admin := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.runWatcher(gctx) })
	g.Go(func() error { return a.pump(gctx) })
	g.Go(func() error { return a.persist(gctx) })
	g.Go(func() error {
		a.log.Info("xds server listening", "addr", a.XDSAddr())
		return grpcServer.Serve(a.xdsLis)
	})
	g.Go(func() error {
		a.log.Info("admin server listening", "addr", a.AdminAddr())
		if err := admin.Serve(a.adminLis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		a.shutdown(grpcServer, admin)
		return nil
	})
	err := g.Wait()
	a.log.Info("agent stopped")
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (a *Agent) runWatcher(ctx context.Context) error {
	publish := func(st *mesh.State) { a.publishFrom(st, a.cfg.SourceName) }
	if err := a.cfg.Watcher.Run(ctx, publish); err != nil {
		return fmt.Errorf("%s watcher: %w", a.cfg.SourceName, err)
	}
	return ctx.Err()
}

// shutdown stops new streams, lets open ones drain for DrainDelay, then
// closes everything.
func (a *Agent) shutdown(g *grpc.Server, admin *http.Server) {
	a.draining.Store(true)
	a.log.Info("draining", "drain_delay", a.cfg.DrainDelay.String(), "streams", a.server.StreamCount())
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(a.cfg.DrainDelay):
		g.Stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := admin.Shutdown(ctx); err != nil {
		a.log.Warn("admin server did not stop cleanly", "error", err)
	}
}
