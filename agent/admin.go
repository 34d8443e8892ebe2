package agent

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/watchers"
	"github.com/tether-mesh/tether/xds"
)

func (a *Agent) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
	})
	mux.HandleFunc("GET /healthz/ready", a.serveReady)
	mux.HandleFunc("GET /debug/config_dump", a.serveConfigDump)
	mux.HandleFunc("GET /debug/syncz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"streams": a.server.Status()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}))
	return mux
}

// Readiness is the body of /healthz/ready.
type Readiness struct {
	Ready bool `json:"ready"`
	// Status is ready, degraded (serving, but the store is stale, the
	// state came from the last-known-good file, the store was reset, or an
	// empty state is held back), draining (shutting down) or not_ready.
	Status   string          `json:"status"`
	Source   string          `json:"source,omitempty"`
	Revision int64           `json:"revision,omitempty"`
	Store    watchers.Health `json:"store"`
	// SecondsSinceSync is how long ago the store last confirmed the
	// state, whether or not it is stale now.
	SecondsSinceSync float64 `json:"seconds_since_sync,omitempty"`
	Streams          int     `json:"streams"`
	// HeldEmpty is true while the store's latest state has no services
	// and the agent keeps serving the last one.
	HeldEmpty bool `json:"held_empty,omitempty"`
}

// readiness reports ready once a state from the store has been pushed. A
// state from the last-known-good file also makes the agent ready, but
// degraded: proxies are better served by the last good configuration than
// by none while the store is unreachable.
func (a *Agent) readiness() Readiness {
	a.mu.Lock()
	st, source, storeServed, heldEmpty := a.current, a.currentSource, a.storeServed, a.heldEmpty
	resetting := !a.resetUntil.IsZero()
	a.mu.Unlock()

	r := Readiness{Status: "not_ready", Source: source, Store: a.cfg.Watcher.Health(), Streams: a.server.StreamCount()}
	if st != nil {
		r.Revision = st.Revision
	}
	r.HeldEmpty = heldEmpty
	if !r.Store.LastSync.IsZero() {
		r.SecondsSinceSync = time.Since(r.Store.LastSync).Seconds()
	}
	switch {
	case st == nil:
	case a.draining.Load():
		// Health checks stop sending new clients while streams drain.
		r.Status = "draining"
	case storeServed && !r.Store.Stale && !heldEmpty && !resetting:
		r.Ready, r.Status = true, "ready"
	default:
		r.Ready, r.Status = true, "degraded"
	}
	return r
}

func (a *Agent) serveReady(w http.ResponseWriter, _ *http.Request) {
	r := a.readiness()
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, r)
}

// ConfigDump is the body of /debug/config_dump.
type ConfigDump struct {
	Source   string   `json:"source"`
	Revision int64    `json:"revision"`
	Mesh     meshDump `json:"mesh"`
	// Resources maps a type URL to resource name to the resource, the same
	// for every node.
	Resources map[string]map[string]resourceDump `json:"resources"`
	// Nodes maps a node id to the resource names it subscribes to, by
	// type URL.
	Nodes map[string]map[string][]string `json:"nodes"`
}

type meshDump struct {
	Services  map[string]*mesh.Service             `json:"services"`
	Endpoints map[string]map[string]*mesh.Endpoint `json:"endpoints"`
	Invalid   map[string]string                    `json:"invalid"`
}

type resourceDump struct {
	Version  string          `json:"version"`
	Keys     []string        `json:"keys,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
}

func (a *Agent) serveConfigDump(w http.ResponseWriter, _ *http.Request) {
	st, source := a.Current()
	dump := ConfigDump{Source: source, Resources: map[string]map[string]resourceDump{}, Nodes: map[string]map[string][]string{}}
	if st != nil {
		dump.Revision = st.Revision
		dump.Mesh = dumpMesh(st)
	}
	for typeURL, rs := range a.cache.Snapshot() {
		out := make(map[string]resourceDump, len(rs))
		for name, r := range rs {
			out[name] = dumpResource(r)
		}
		dump.Resources[typeURL] = out
	}
	for _, s := range a.server.Status() {
		node := dump.Nodes[s.NodeID]
		if node == nil {
			node = map[string][]string{}
			dump.Nodes[s.NodeID] = node
		}
		for _, t := range s.Types {
			names := append(node[t.TypeURL], t.Subscribed...)
			if t.Wildcard {
				names = append(names, "*")
			}
			slices.Sort(names)
			node[t.TypeURL] = slices.Compact(names)
		}
	}
	writeJSON(w, http.StatusOK, dump)
}

func dumpMesh(st *mesh.State) meshDump {
	d := meshDump{
		Services:  maps.Clone(st.Services),
		Endpoints: make(map[string]map[string]*mesh.Endpoint, len(st.Endpoints)),
		Invalid:   make(map[string]string, len(st.Invalid)),
	}
	for svc, set := range st.Endpoints {
		d.Endpoints[svc] = set.Instances
	}
	for key, err := range st.Invalid {
		d.Invalid[key] = err.Error()
	}
	return d
}

// dumpResource renders one resource. Secrets are listed by name and
// version only: their payload holds private keys.
func dumpResource(r *xds.Resource) resourceDump {
	d := resourceDump{Version: r.Version, Keys: r.Keys}
	if r.TypeURL() == resourcev3.SecretType {
		return d
	}
	m, err := r.Decode()
	if err != nil {
		return d
	}
	if b, err := protojson.Marshal(m); err == nil {
		d.Resource = b
	}
	return d
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
