package consul

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Defaults for the zero values of Config.
const (
	DefaultPrefix = "tether/"
	// DefaultWaitTime is the wait time Consul itself applies to a blocking
	// query that names none.
	DefaultWaitTime = 5 * time.Minute
	// MaxWaitTime is the longest wait Consul accepts; it caps longer ones.
	MaxWaitTime = 10 * time.Minute
	// DefaultRequestSlack is added to the wait time to bound one request.
	// Consul adds up to WaitTime/16 of jitter to a wait, which the bound
	// covers on top of the slack.
	DefaultRequestSlack = 10 * time.Second
	DefaultQueryRate    = rate.Limit(1)
	DefaultQueryBurst   = 5
	DefaultBackoffMin   = 200 * time.Millisecond
	DefaultBackoffMax   = 10 * time.Second
)

// Config configures a Watcher. Connection fields that are empty take their
// value from the environment variables that the consul CLI reads
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT,
// CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_NAMESPACE), read when
// New is called. Every other zero field selects its default.
type Config struct {
	// Address is the Consul agent's HTTP API as host:port, or as
	// scheme://host:port with scheme http, https or unix. Default
	// CONSUL_HTTP_ADDR, else localhost:8500.
	Address string

	// Token is the ACL token sent with every request. Default
	// CONSUL_HTTP_TOKEN. The watcher never logs it and removes it from
	// every error it logs or reports.
	Token string

	// TokenFile is a file that holds the ACL token, read by the Consul
	// client when Token is empty. Default CONSUL_HTTP_TOKEN_FILE.
	TokenFile string

	// TLS configures HTTPS to the agent. Its files take effect only with an
	// https:// Address or CONSUL_HTTP_SSL=true.
	TLS TLSConfig

	// Datacenter is the datacenter to read from. Default: the agent's.
	Datacenter string

	// Namespace is the Consul Enterprise namespace to read from. Default
	// CONSUL_NAMESPACE, else the token's namespace.
	Namespace string

	// Prefix is the KV prefix of service documents, which are read from
	// <Prefix>services/<name>. It must end with "/" and must not start
	// with "/". Default DefaultPrefix.
	Prefix string

	// IncludeWarning keeps instances whose worst check is in the warning
	// state. By default only instances whose every check passes are
	// endpoints.
	IncludeWarning bool

	// WaitTime is how long one blocking query may wait for a change, at
	// most MaxWaitTime. Default DefaultWaitTime.
	WaitTime time.Duration

	// RequestSlack bounds one request beyond its wait time and Consul's
	// jitter of WaitTime/16, so that a request to an agent that stopped
	// responding fails instead of hanging. Default DefaultRequestSlack.
	RequestSlack time.Duration

	// QueryRate and QueryBurst limit the requests of each blocking query
	// (the KV prefix, the catalog and each service's health) with a token
	// bucket: QueryRate requests per second, up to QueryBurst at once.
	// Defaults DefaultQueryRate and DefaultQueryBurst.
	QueryRate  rate.Limit
	QueryBurst int

	// BackoffMin and BackoffMax bound the delay before a failed request is
	// retried. The delay doubles from BackoffMin up to BackoffMax, and each
	// wait is drawn at random from the upper half of the current delay.
	// Defaults DefaultBackoffMin and DefaultBackoffMax.
	BackoffMin time.Duration
	BackoffMax time.Duration

	// RequireConsistent turns off stale reads. By default every query sets
	// Consul's stale mode, so that any server, not only the leader, can
	// serve it.
	RequireConsistent bool

	// Logger receives the watcher's logs. Default: logs are discarded.
	Logger *slog.Logger

	// Registerer receives the watcher's metrics. When nil, the metrics are
	// kept but not registered.
	Registerer prometheus.Registerer
}

// TLSConfig holds the files for HTTPS to the Consul agent. Each empty field
// takes its value from the environment variable named beside it.
type TLSConfig struct {
	// CAFile is a PEM file of CA certificates to verify the agent with
	// (CONSUL_CACERT).
	CAFile string
	// CAPath is a directory of PEM CA certificates (CONSUL_CAPATH).
	CAPath string
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS (CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY). Set both or
	// neither.
	CertFile string
	KeyFile  string
	// ServerName is the name to verify the agent's certificate against
	// (CONSUL_TLS_SERVER_NAME). Default: the host of Address.
	ServerName string
}

// Validate reports the first invalid field of c. Zero values are valid and
// stand for their defaults. It does not read the environment.
func (c Config) Validate() error {
	c = c.withDefaults()
	if !strings.HasSuffix(c.Prefix, "/") || strings.HasPrefix(c.Prefix, "/") {
		return fmt.Errorf("consul watcher config: Prefix %q must end with \"/\" and must not start with \"/\"",
			c.Prefix)
	}
	if c.WaitTime <= 0 || c.WaitTime > MaxWaitTime {
		return fmt.Errorf("consul watcher config: WaitTime %v is out of range (0, %v]", c.WaitTime, MaxWaitTime)
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("consul watcher config: TLS.CertFile and TLS.KeyFile must be set together")
	}
	return nil
}

func (c Config) validateLimits() error {
	durations := []struct {
		name  string
		value time.Duration
	}{
		{"RequestSlack", c.RequestSlack},
		{"BackoffMin", c.BackoffMin},
		{"BackoffMax", c.BackoffMax},
	}
	for _, d := range durations {
		if d.value <= 0 {
			return fmt.Errorf("consul watcher config: %s %v must be positive", d.name, d.value)
		}
	}
	if c.BackoffMin > c.BackoffMax {
		return fmt.Errorf("consul watcher config: BackoffMin %v is longer than BackoffMax %v",
			c.BackoffMin, c.BackoffMax)
	}
	if c.QueryRate <= 0 {
		return fmt.Errorf("consul watcher config: QueryRate %v must be positive", float64(c.QueryRate))
	}
	if c.QueryBurst < 1 {
		return fmt.Errorf("consul watcher config: QueryBurst %d must be at least 1", c.QueryBurst)
	}
	return nil
}

// withDefaults returns a copy of c with every zero field that does not come
// from the environment set to its default. Negative values stay, so that
// Validate rejects them.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.RequestSlack == 0 {
		c.RequestSlack = DefaultRequestSlack
	}
	if c.QueryRate == 0 {
		c.QueryRate = DefaultQueryRate
	}
	if c.QueryBurst == 0 {
		c.QueryBurst = DefaultQueryBurst
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

// requestTimeout bounds one blocking request: the wait, Consul's jitter of
// up to a sixteenth of it, and the slack.
func (c Config) requestTimeout() time.Duration {
	return c.WaitTime + c.WaitTime/16 + c.RequestSlack
}

// apiConfig builds the Consul client configuration: the environment first,
// through api.DefaultConfigWithLogger, then every field set in c on top.
func (c Config) apiConfig(log *slog.Logger) *api.Config {
	ac := api.DefaultConfigWithLogger(newHCLogger(log))
	setIfNonEmpty(&ac.Address, c.Address)
	setIfNonEmpty(&ac.Token, c.Token)
	setIfNonEmpty(&ac.TokenFile, c.TokenFile)
	setIfNonEmpty(&ac.Datacenter, c.Datacenter)
	setIfNonEmpty(&ac.Namespace, c.Namespace)
	setIfNonEmpty(&ac.TLSConfig.CAFile, c.TLS.CAFile)
	setIfNonEmpty(&ac.TLSConfig.CAPath, c.TLS.CAPath)
	setIfNonEmpty(&ac.TLSConfig.CertFile, c.TLS.CertFile)
	setIfNonEmpty(&ac.TLSConfig.KeyFile, c.TLS.KeyFile)
	setIfNonEmpty(&ac.TLSConfig.Address, c.TLS.ServerName)

	// Every watched service holds one connection open in a blocking query.
	// The pooled transport's default keeps only GOMAXPROCS+1 idle
	// connections per host, so between two queries the other connections
	// would be closed and dialled again.
	ac.Transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	return ac
}

// maxIdleConnsPerHost bounds the idle connections kept to the agent.
const maxIdleConnsPerHost = 1024

func setIfNonEmpty(dst *string, value string) {
	if value != "" {
		*dst = value
	}
}

// LogValue describes c for logs without its token.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("address", c.Address),
		slog.Bool("token_set", c.Token != "" || c.TokenFile != ""),
		slog.String("datacenter", c.Datacenter),
		slog.String("namespace", c.Namespace),
		slog.String("prefix", c.Prefix),
		slog.Bool("include_warning", c.IncludeWarning),
		slog.Duration("wait_time", c.WaitTime),
	)
}
