package demo

import (
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdConfig configures an embedded single-member etcd server.
type EtcdConfig struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// ClientAddr and PeerAddr are host:port pairs; port 0 picks a free port.
	ClientAddr string
	PeerAddr   string
	// LogLevel is etcd's own log level: debug, info, warn, error or
	// fatal. Default fatal: etcd logs through its own zap logger, and
	// Close logs expected errors at error level. Failures still reach the
	// caller through the server's Err channel.
	LogLevel string
	// NoFsync skips fsync, for tests only: a crash loses data.
	NoFsync bool
	// Logger, when set, receives etcd's log in place of its own stderr
	// output, and LogLevel is ignored.
	Logger *zap.Logger
}

// StartEtcd starts an embedded etcd server and waits until it serves
// clients. The caller must Close it.
func StartEtcd(cfg EtcdConfig) (*embed.Etcd, error) {
	ec := embed.NewConfig()
	ec.Dir = cfg.Dir
	ec.Name = "tether-dev"
	ec.LogLevel = cfg.LogLevel
	if ec.LogLevel == "" {
		ec.LogLevel = "fatal"
	}
	ec.UnsafeNoFsync = cfg.NoFsync
	if cfg.Logger != nil {
		ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(cfg.Logger)
	}
	client, err := url.Parse("http://" + cfg.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd client address %q: %w", cfg.ClientAddr, err)
	}
	peer, err := url.Parse("http://" + cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd peer address %q: %w", cfg.PeerAddr, err)
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within 60s", cfg.Dir)
	}
}

// ClientURL returns the URL clients of e connect to.
func ClientURL(e *embed.Etcd) string {
	return "http://" + e.Clients[0].Addr().String()
}
