// Package agent runs Tether: it supervises the configuration watcher, the
// translation pump, the xDS server and the admin HTTP server, keeps a
// last-known-good copy of the mesh on disk, and drains on shutdown.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-mesh/tether/watchers"
	"github.com/tether-mesh/tether/xds"
)

// Default addresses and timings. Both servers listen on loopback unless an
// operator asks for another address.
const (
	DefaultXDSAddr    = "127.0.0.1:18000"
	DefaultAdminAddr  = "127.0.0.1:15020"
	DefaultDebounce   = time.Millisecond
	DefaultMaxDelay   = 50 * time.Millisecond
	DefaultDrainDelay = 5 * time.Second
	DefaultResetGrace = 5 * time.Second
)

// Config configures an Agent.
type Config struct {
	// XDSAddr is the host:port the xDS gRPC server listens on. An address
	// other than loopback needs InsecureRemote, because the server has no
	// mTLS yet.
	XDSAddr string
	// InsecureRemote allows XDSAddr and AdminAddr outside loopback without
	// TLS. Any host that reaches them can read the whole mesh.
	InsecureRemote bool
	// AdminAddr is the host:port of the admin HTTP server (health, debug,
	// metrics).
	AdminAddr string
	// Debounce is how long the agent waits after a store change for more
	// changes before it translates and pushes.
	Debounce time.Duration
	// MaxDelay bounds the wait of a burst: a push happens at most this long
	// after the first change of the burst.
	MaxDelay time.Duration
	// DrainDelay is how long streams stay open after shutdown starts, so
	// proxies can finish in-flight work.
	DrainDelay time.Duration
	// CacheFile, when set, holds the last good mesh state: written after
	// pushes, read at start so the agent can serve before the store
	// responds.
	CacheFile string
	// Watcher is the configuration source.
	Watcher watchers.Watcher
	// SourceName labels the source in logs and status, such as "etcd".
	SourceName string
	Logger     *slog.Logger
	// Registry receives every metric; the admin server exposes it.
	Registry *prometheus.Registry
	// AllowEmptyMesh lets a state with no services, or with no endpoints,
	// replace one that has them. Without it such a state is held back and
	// reported, because a store that lost its data (a Consul dev agent
	// restarted, a token that lost read access, a wrong prefix) looks
	// exactly like it.
	AllowEmptyMesh bool
	// ResetGrace is how long the agent waits, after the store's revision
	// goes backwards, before it serves the store's state. A store that
	// was reset or restored reports its content piece by piece; waiting
	// lets it settle, so the empty-mesh check finds the whole loss instead
	// of one service at a time.
	ResetGrace time.Duration
	// OnAck, when set, is called for every ACK an xDS client sends, on the
	// stream's goroutine; it must return quickly. Benchmarks use it.
	OnAck func(xds.AckEvent)
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.XDSAddr == "" {
		c.XDSAddr = DefaultXDSAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.Debounce == 0 {
		c.Debounce = DefaultDebounce
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.ResetGrace == 0 {
		c.ResetGrace = DefaultResetGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	var errs []error
	if c.Watcher == nil {
		errs = append(errs, errors.New("agent: no configuration source"))
	}
	for name, addr := range map[string]string{"xds address": c.XDSAddr, "admin address": c.AdminAddr} {
		if err := checkListenAddr(addr, c.InsecureRemote); err != nil {
			errs = append(errs, fmt.Errorf("agent: invalid %s %q: %w", name, addr, err))
		}
	}
	if c.Debounce < 0 || c.MaxDelay < c.Debounce {
		errs = append(errs, fmt.Errorf("agent: debounce %s must be between 0 and the max delay %s", c.Debounce, c.MaxDelay))
	}
	if c.ResetGrace < 0 {
		errs = append(errs, fmt.Errorf("agent: reset grace %s is negative", c.ResetGrace))
	}
	if c.DrainDelay < 0 {
		errs = append(errs, fmt.Errorf("agent: drain delay %s is negative", c.DrainDelay))
	}
	return errors.Join(errs...)
}

// checkListenAddr accepts a host:port on loopback, or anywhere when
// insecure is set.
func checkListenAddr(addr string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if insecure || host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("host %q is not an IP address or localhost", host)
	}
	if !ip.IsLoopback() {
		// TODO: serve xDS over mTLS and lift this rule for remote proxies
		// that present a client certificate.
		return errors.New("listening outside loopback serves the mesh in plain text to any host; " +
			"pass --insecure-remote to accept that, or keep a loopback address")
	}
	return nil
}
