package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults for the zero values of Config.
const (
	DefaultPrefix         = "/tether/"
	DefaultSilenceTimeout = 15 * time.Second
	DefaultListTimeout    = 10 * time.Second
	DefaultListPageSize   = 1000
	DefaultBackoffMin     = 200 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
)

// Config configures a Watcher. The zero value of every field except Client
// selects its default.
type Config struct {
	// Client is the etcd client to read and watch with. The caller owns it:
	// the watcher never closes it, and Run returns an error once the caller
	// has closed it. Configure gRPC keepalive on it (DialKeepAliveTime and
	// DialKeepAliveTimeout) so that a dead TCP connection is torn down.
	// Otherwise the silence check detects the dead watch but every retry
	// reuses the same dead connection.
	Client *clientv3.Client

	// Prefix is the key prefix of service and endpoint documents. It must
	// end with "/". Default DefaultPrefix.
	Prefix string

	// NamingPrefixes are prefixes in etcd's naming format
	// (go.etcd.io/etcd/client/v3/naming/endpoints): a key
	// <prefix><service>/<instance> holds a JSON endpoints.Endpoint. Each
	// must end with "/", and no prefix, Prefix included, may be a prefix
	// of another.
	NamingPrefixes []string

	// SilenceTimeout bounds how long a watch may stay silent. When neither
	// an event nor a progress notification arrives within it, the watch is
	// treated as dead: Health reports Stale, and the watcher lists again
	// and starts a new watch. Default DefaultSilenceTimeout.
	SilenceTimeout time.Duration

	// ProgressInterval is how often the watcher requests a progress
	// notification from etcd, so that a quiet but healthy watch is still
	// heard from. It must be shorter than SilenceTimeout. Default
	// SilenceTimeout / 3.
	ProgressInterval time.Duration

	// ListTimeout bounds one complete list of all prefixes, every page
	// included. Default DefaultListTimeout.
	ListTimeout time.Duration

	// ListPageSize is the maximum number of keys one list request returns.
	// Default DefaultListPageSize.
	ListPageSize int64

	// BackoffMin and BackoffMax bound the delay between retries after a
	// failed list or watch. The delay doubles from BackoffMin up to
	// BackoffMax, and each wait is drawn at random from the upper half of
	// the current delay. Defaults DefaultBackoffMin and DefaultBackoffMax.
	BackoffMin time.Duration
	BackoffMax time.Duration

	// Logger receives the watcher's logs. Default: logs are discarded.
	Logger *slog.Logger

	// Registerer receives the watcher's metrics. When nil, the metrics are
	// kept but not registered.
	Registerer prometheus.Registerer
}

// Validate reports the first invalid field of c. Zero values are valid and
// stand for their defaults.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("etcd watcher config: Client is missing")
	}
	c = c.withDefaults()
	if err := c.validatePrefixes(); err != nil {
		return err
	}
	if err := c.validateDurations(); err != nil {
		return err
	}
	if c.ListPageSize < 0 {
		return fmt.Errorf("etcd watcher config: ListPageSize %d is negative", c.ListPageSize)
	}
	return nil
}

func (c Config) validatePrefixes() error {
	all := c.allPrefixes()
	for i, p := range all {
		if !strings.HasSuffix(p, "/") {
			return fmt.Errorf("etcd watcher config: prefix %q must end with \"/\"", p)
		}
		for j, q := range all {
			if i != j && strings.HasPrefix(q, p) {
				return fmt.Errorf("etcd watcher config: prefix %q contains prefix %q: "+
					"a key would be read twice, so make the prefixes disjoint", p, q)
			}
		}
	}
	return nil
}

func (c Config) validateDurations() error {
	durations := []struct {
		name  string
		value time.Duration
	}{
		{"SilenceTimeout", c.SilenceTimeout},
		{"ProgressInterval", c.ProgressInterval},
		{"ListTimeout", c.ListTimeout},
		{"BackoffMin", c.BackoffMin},
		{"BackoffMax", c.BackoffMax},
	}
	for _, d := range durations {
		if d.value <= 0 {
			return fmt.Errorf("etcd watcher config: %s %v must be positive", d.name, d.value)
		}
	}
	if c.ProgressInterval >= c.SilenceTimeout {
		return fmt.Errorf("etcd watcher config: ProgressInterval %v must be shorter than SilenceTimeout %v",
			c.ProgressInterval, c.SilenceTimeout)
	}
	if c.BackoffMin > c.BackoffMax {
		return fmt.Errorf("etcd watcher config: BackoffMin %v is longer than BackoffMax %v",
			c.BackoffMin, c.BackoffMax)
	}
	return nil
}

// withDefaults returns a copy of c with every zero field set to its
// default. Negative durations stay, so that Validate rejects them.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.SilenceTimeout == 0 {
		c.SilenceTimeout = DefaultSilenceTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = c.SilenceTimeout / 3
	}
	if c.ListTimeout == 0 {
		c.ListTimeout = DefaultListTimeout
	}
	if c.ListPageSize == 0 {
		c.ListPageSize = DefaultListPageSize
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// allPrefixes returns Prefix followed by NamingPrefixes. The index of a
// prefix in this list is the index of its watch.
func (c Config) allPrefixes() []string {
	return append([]string{c.Prefix}, c.NamingPrefixes...)
}
