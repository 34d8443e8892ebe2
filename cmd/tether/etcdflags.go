package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/telemetry"
)

// etcdFlags are the flags that connect to etcd.
type etcdFlags struct {
	endpoints   []string
	caFile      string
	certFile    string
	keyFile     string
	username    string
	password    string
	dialTimeout time.Duration
}

func (e *etcdFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&e.endpoints, "etcd-endpoints", []string{"127.0.0.1:2379"}, "etcd client URLs or host:port pairs, comma separated")
	fs.StringVar(&e.caFile, "etcd-ca-file", "", "PEM file of the CA that signed the etcd server certificates; enables TLS")
	fs.StringVar(&e.certFile, "etcd-cert-file", "", "PEM client certificate for etcd TLS client authentication")
	fs.StringVar(&e.keyFile, "etcd-key-file", "", "PEM private key of --etcd-cert-file")
	fs.StringVar(&e.username, "etcd-username", "", "etcd user for authentication")
	fs.StringVar(&e.password, "etcd-password", "", "password of --etcd-username; prefer the TETHER_ETCD_PASSWORD variable, which stays out of the process list")
	fs.DurationVar(&e.dialTimeout, "etcd-dial-timeout", 5*time.Second, "timeout of the first connection to etcd (for example 5s)")
}

// client connects to etcd. The client logs through log.
func (e *etcdFlags) client(log *slog.Logger) (*clientv3.Client, error) {
	if e.password != "" && e.username == "" {
		return nil, errors.New("--etcd-password (or TETHER_ETCD_PASSWORD) is set without --etcd-username")
	}
	cfg := clientv3.Config{
		Endpoints:            e.endpoints,
		DialTimeout:          e.dialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Username:             e.username,
		Password:             e.password,
		Logger:               telemetry.ZapLogger(log, "etcd-client"),
	}
	if e.caFile != "" || e.certFile != "" {
		tlsCfg, err := e.tlsConfig()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tlsCfg
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(e.endpoints, ","), err)
	}
	return cli, nil
}

func (e *etcdFlags) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.caFile != "" {
		pem, err := os.ReadFile(e.caFile)
		if err != nil {
			return nil, fmt.Errorf("read --etcd-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-ca-file %s contains no PEM certificate", e.caFile)
		}
		cfg.RootCAs = pool
	}
	if (e.certFile == "") != (e.keyFile == "") {
		return nil, errors.New("--etcd-cert-file and --etcd-key-file go together")
	}
	if e.certFile != "" {
		cert, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
		if err != nil {
			return nil, fmt.Errorf("load etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
