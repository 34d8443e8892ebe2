package consul

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers/etcd"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "zero value", cfg: Config{}},
		{name: "prefix without slash", cfg: Config{Prefix: "tether"}, want: "Prefix"},
		{name: "prefix with leading slash", cfg: Config{Prefix: "/tether/"}, want: "Prefix"},
		{name: "wait time too long", cfg: Config{WaitTime: 11 * time.Minute}, want: "WaitTime"},
		{name: "negative wait time", cfg: Config{WaitTime: -time.Second}, want: "WaitTime"},
		{name: "negative rate", cfg: Config{QueryRate: -1}, want: "QueryRate"},
		{name: "negative burst", cfg: Config{QueryBurst: -1}, want: "QueryBurst"},
		{name: "backoff min above max", cfg: Config{BackoffMin: time.Minute, BackoffMax: time.Second}, want: "BackoffMin"},
		{name: "cert without key", cfg: Config{TLS: TLSConfig{CertFile: "c.pem"}}, want: "KeyFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v, expected nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, expected an error naming %s", err, tt.want)
			}
		})
	}
}

func TestConfigEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
	t.Setenv("CONSUL_HTTP_TOKEN", "env-token")

	w, err := New(Config{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if w.address != "http://127.0.0.1:1" || w.token != "env-token" {
		t.Errorf("address %s and token from the environment not used", w.address)
	}

	w, err = New(Config{Address: "https://127.0.0.1:2", Token: "flag-token"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if w.address != "https://127.0.0.1:2" || w.token != "flag-token" {
		t.Errorf("address %s and token from Config did not override the environment", w.address)
	}
}

func TestConfigTLSNeedsHTTPS(t *testing.T) {
	caFile, _, _ := writeClientCert(t, t.TempDir())
	_, err := New(Config{Address: "127.0.0.1:1", TLS: TLSConfig{CAFile: caFile}})
	if err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("New: %v, expected an error about the http address", err)
	}
}

func TestMetricsShareRegistryWithEtcd(t *testing.T) {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("create etcd client: %v", err)
	}
	defer client.Close()

	registry := prometheus.NewRegistry()
	if _, err := etcd.New(etcd.Config{Client: client, Registerer: registry}); err != nil {
		t.Fatalf("create etcd watcher: %v", err)
	}
	if _, err := New(Config{Address: "127.0.0.1:1", Registerer: registry}); err != nil {
		t.Fatalf("create consul watcher on the etcd watcher's registry: %v", err)
	}
}

// TestTLSStub runs against a stub over mutual TLS with a CA file and a
// client certificate.
func TestTLSStub(t *testing.T) {
	dir := t.TempDir()
	clientCert, clientKey, clientPool := writeClientCert(t, dir)

	stub := &stubConsul{arrived: make(chan struct{}, 1000)}
	server := httptest.NewUnstartedServer(stub.handler(stubHandlers{
		kv: blocking("3", ""), catalog: blocking("7", `{}`),
	}))
	server.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	server.StartTLS()
	t.Cleanup(server.Close)

	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", server.Certificate().Raw)

	cfg := fastConfig(server.URL)
	cfg.TLS = TLSConfig{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}
	rw := startWatcher(t, cfg)
	rw.rec.waitFor(t, "first state over TLS", func(*mesh.State) bool { return true })
}

// writeClientCert writes a self-signed client certificate and its key and
// returns their paths and a pool that trusts the certificate.
func writeClientCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate client key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tether-test-client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create client certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encode client key: %v", err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse client certificate: %v", err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func writePEM(t *testing.T, path, blockType string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
