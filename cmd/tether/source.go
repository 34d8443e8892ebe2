package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/tether-mesh/tether/watchers"
	consulwatch "github.com/tether-mesh/tether/watchers/consul"
	etcdwatch "github.com/tether-mesh/tether/watchers/etcd"
)

// Configuration sources.
const (
	sourceEtcd   = "etcd"
	sourceConsul = "consul"
)

// sourceFlags choose the configuration store and how to reach it.
type sourceFlags struct {
	source string
	prefix string
	etcd   etcdFlags
	consul consulFlags
}

func (s *sourceFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.source, "source", sourceEtcd, "configuration store: etcd or consul")
	fs.StringVar(&s.prefix, "prefix", "", "key prefix of the mesh; services/<name> and endpoints/<service>/<instance> live under it (default /tether/ in etcd, tether/ in Consul KV)")
	s.etcd.register(fs)
	s.consul.register(fs)
}

// resolvedPrefix checks the source and returns the prefix with its
// default for that source.
func (s *sourceFlags) resolvedPrefix() (string, error) {
	prefix := s.prefix
	switch s.source {
	case sourceEtcd:
		if prefix == "" {
			prefix = etcdwatch.DefaultPrefix
		}
	case sourceConsul:
		if prefix == "" {
			prefix = consulwatch.DefaultPrefix
		}
		if strings.HasPrefix(prefix, "/") {
			return "", fmt.Errorf("invalid --prefix %q: Consul KV keys do not start with /", prefix)
		}
	default:
		return "", fmt.Errorf("invalid --source %q: use etcd or consul", s.source)
	}
	if !strings.HasSuffix(prefix, "/") {
		return "", fmt.Errorf("invalid --prefix %q: it must end with /", prefix)
	}
	return prefix, nil
}

// addressFlag names the flag that sets the chosen store's address.
func (s *sourceFlags) addressFlag() string {
	if s.source == sourceConsul {
		return "--consul-addr (or CONSUL_HTTP_ADDR)"
	}
	return "--etcd-endpoints"
}

// watcher returns the watcher for the chosen store and a function that
// releases its client.
func (s *sourceFlags) watcher(log *slog.Logger, reg prometheus.Registerer, sf *serveFlags) (watchers.Watcher, func(), error) {
	prefix, err := s.resolvedPrefix()
	if err != nil {
		return nil, nil, err
	}
	if s.source == sourceConsul {
		cfg := s.consul.config(prefix)
		cfg.Logger, cfg.Registerer = log, reg
		w, err := consulwatch.New(cfg)
		return w, func() {}, err
	}
	cli, err := s.etcd.client(log)
	if err != nil {
		return nil, nil, err
	}
	w, err := etcdwatch.New(etcdwatch.Config{
		Client:         cli,
		Prefix:         prefix,
		NamingPrefixes: sf.namingPrefixes,
		SilenceTimeout: sf.silenceTimeout,
		Logger:         log,
		Registerer:     reg,
	})
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return w, func() { cli.Close() }, nil
}

// consulFlags are the flags that connect to Consul. Each one left empty is
// taken from Consul's own environment variable, as the consul command does.
type consulFlags struct {
	addr           string
	token          string
	tokenFile      string
	caFile         string
	certFile       string
	keyFile        string
	datacenter     string
	namespace      string
	includeWarning bool
	waitTime       time.Duration
}

func (c *consulFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.addr, "consul-addr", "", "Consul HTTP address, host:port or https://host:port (default $CONSUL_HTTP_ADDR, else localhost:8500)")
	fs.StringVar(&c.token, "consul-token", "", "Consul ACL token; prefer $CONSUL_HTTP_TOKEN or --consul-token-file, which stay out of the process list")
	fs.StringVar(&c.tokenFile, "consul-token-file", "", "file holding the Consul ACL token (default $CONSUL_HTTP_TOKEN_FILE)")
	fs.StringVar(&c.caFile, "consul-ca-file", "", "PEM CA certificate that signed Consul's HTTPS certificate (default $CONSUL_CACERT)")
	fs.StringVar(&c.certFile, "consul-cert-file", "", "PEM client certificate for Consul (default $CONSUL_CLIENT_CERT)")
	fs.StringVar(&c.keyFile, "consul-key-file", "", "PEM private key of --consul-cert-file (default $CONSUL_CLIENT_KEY)")
	fs.StringVar(&c.datacenter, "consul-datacenter", "", "Consul datacenter to read (default: the agent's own)")
	fs.StringVar(&c.namespace, "consul-namespace", "", "Consul Enterprise namespace (default $CONSUL_NAMESPACE)")
	fs.DurationVar(&c.waitTime, "consul-wait-time", consulwatch.DefaultWaitTime, "longest a Consul blocking query waits for a change, at most 10m; a Consul that stops answering without closing the connection is noticed after about this long (for example 1m)")
	fs.BoolVar(&c.includeWarning, "consul-include-warning", false, "also route to instances whose health checks are warning, not only passing")
}

func (c *consulFlags) config(prefix string) consulwatch.Config {
	return consulwatch.Config{
		Address:        c.addr,
		Token:          c.token,
		TokenFile:      c.tokenFile,
		TLS:            consulwatch.TLSConfig{CAFile: c.caFile, CertFile: c.certFile, KeyFile: c.keyFile},
		Datacenter:     c.datacenter,
		Namespace:      c.namespace,
		Prefix:         prefix,
		IncludeWarning: c.includeWarning,
		WaitTime:       c.waitTime,
	}
}
