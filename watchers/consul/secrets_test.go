package consul

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tether-mesh/tether/mesh"
)

// newSecret returns a random token that cannot appear in output by chance.
func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random token: %v", err)
	}
	return "secret-" + hex.EncodeToString(b)
}

// assertNoSecret fails the test when secret occurs in text.
func assertNoSecret(t *testing.T, where, text, secret string) {
	t.Helper()
	if strings.Contains(text, secret) {
		t.Errorf("the token appears in %s:\n%s", where, text)
	}
}

// TestSecretsInLogsStub runs against a stub whose errors echo the token,
// which a real agent does not do, to prove the watcher's own redaction.
func TestSecretsInLogsStub(t *testing.T) {
	token := newSecret(t)
	stub := newStubConsul(t, stubHandlers{
		kv: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "ACL not found", http.StatusForbidden)
		},
		catalog: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "bad token "+r.Header.Get("X-Consul-Token"), http.StatusInternalServerError)
		},
	})
	cfg := fastConfig(stub.server.URL)
	cfg.Token = token
	rw := startWatcher(t, cfg)
	rw.w.log.Info("watcher config", "config", cfg)

	waitUntil(t, "both queries failing", func() bool {
		return metricValue(rw.w.metrics.requestErrors.WithLabelValues(endpointKV)) > 0 &&
			metricValue(rw.w.metrics.requestErrors.WithLabelValues(endpointCatalog)) > 0
	})
	waitUntil(t, "the echoed token reported", func() bool {
		return strings.Contains(rw.w.Health().LastError, redactedMark)
	})

	for _, r := range stub.requestsTo("/v1/") {
		if r.token != token {
			t.Fatalf("request to %s carried token %q, expected the configured one", r.path, r.token)
		}
	}
	assertNoSecret(t, "the logs", rw.logs.String(), token)
	assertNoSecret(t, "Health().LastError", rw.w.Health().LastError, token)
	if !strings.Contains(rw.logs.String(), "ACL not found") {
		t.Errorf("logs lack the agent's 403 error:\n%s", rw.logs.String())
	}
}

func TestSecretsInLogsConsul(t *testing.T) {
	agent := sharedConsul(t)
	token := newSecret(t)
	// The dev agent has ACLs off, so it accepts any token.
	t.Setenv("CONSUL_HTTP_TOKEN", token)
	const prefix = "secrets-test/"
	clearKV(t, agent.Client(), prefix)
	putKV(t, agent.Client(), prefix+"services/vault", `{"port": 8200, "bogus": 1}`)

	cfg := fastConfig(agent.Addr())
	cfg.Prefix = prefix
	rw := startWatcher(t, cfg)
	if rw.w.token != token {
		t.Fatal("the watcher did not take the token from CONSUL_HTTP_TOKEN")
	}
	rw.w.log.Info("watcher config", "config", cfg)
	rw.w.log.Info("watcher config with token", slog.Any("config", Config{Token: token}))

	rw.rec.waitFor(t, "invalid document reported", func(s *mesh.State) bool {
		return s.Invalid[prefix+"services/vault"] != nil
	})
	assertNoSecret(t, "the logs", rw.logs.String(), token)
	assertNoSecret(t, "Health().LastError", rw.w.Health().LastError, token)
}

func TestRedact(t *testing.T) {
	err := redact(&mesh.FieldError{Key: "k", Reason: "token abc in text abc"}, "abc")
	if got, want := err.Error(), "k: token [redacted] in text [redacted]"; got != want {
		t.Errorf("redacted error %q, expected %q", got, want)
	}
	var fe *mesh.FieldError
	if !errors.As(err, &fe) {
		t.Error("redacted error lost its chain")
	}
	if got := redact(nil, "abc"); got != nil {
		t.Errorf("redact(nil) = %v, expected nil", got)
	}
}
