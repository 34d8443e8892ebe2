package consul

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// stubConsul is a fake Consul HTTP API for behaviour a real agent cannot be
// made to show on demand. It serves the three endpoints the watcher uses,
// each with a handler the test picks, and records every request.
type stubConsul struct {
	server *httptest.Server

	mu       sync.Mutex
	requests []stubRequest
	// arrived has room for one wake-up per request; it is never closed.
	arrived chan struct{}
}

// stubRequest is one request the stub received.
type stubRequest struct {
	path  string
	index string
	token string
}

// stubHandlers are the stub's handlers; a nil one responds 404 at once.
type stubHandlers struct {
	kv, catalog, health http.HandlerFunc
}

// newStubConsul starts a stub on loopback and closes it when the test
// ends, after the watchers the test started later have stopped.
func newStubConsul(t *testing.T, h stubHandlers) *stubConsul {
	t.Helper()
	s := &stubConsul{arrived: make(chan struct{}, 1000)}
	s.server = httptest.NewServer(s.handler(h))
	t.Cleanup(s.server.Close)
	return s
}

func (s *stubConsul) handler(h stubHandlers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, stubRequest{
			path: r.URL.Path, index: r.URL.Query().Get("index"), token: r.Header.Get("X-Consul-Token"),
		})
		s.mu.Unlock()
		select {
		case s.arrived <- struct{}{}:
		default:
		}

		var next http.HandlerFunc
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			next = h.kv
		case r.URL.Path == "/v1/catalog/services":
			next = h.catalog
		case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
			next = h.health
		}
		if next == nil {
			http.NotFound(w, r)
			return
		}
		next(w, r)
	})
}

// requestsTo returns the recorded requests whose path starts with prefix.
func (s *stubConsul) requestsTo(prefix string) []stubRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stubRequest
	for _, r := range s.requests {
		if strings.HasPrefix(r.path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// blocking returns a handler that responds with body at index, or with a
// 404 when body is empty, and holds a request that already waits on index
// until the client goes away, as Consul holds it until its wait time.
func blocking(index, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") == index {
			<-r.Context().Done()
			return
		}
		respond(w, index, body)
	}
}

// respond writes body with X-Consul-Index, or a 404 when body is empty,
// which is how Consul responds to a KV list of an empty prefix.
func respond(w http.ResponseWriter, index, body string) {
	w.Header().Set("X-Consul-Index", index)
	if body == "" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprint(w, body)
}

// healthBody returns a /v1/health/service response with one passing
// instance of web at address.
func healthBody(id, address string) string {
	return fmt.Sprintf(`[{"Node": {"Node": "node-1", "Address": %[2]q, "Datacenter": "dc1"},
		"Service": {"ID": %[1]q, "Service": "web", "Address": %[2]q, "Port": 8080,
			"Weights": {"Passing": 1, "Warning": 1}},
		"Checks": [{"CheckID": "serfHealth", "Status": "passing"}]}]`, id, address)
}
