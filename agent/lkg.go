package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tether-mesh/tether/mesh"
)

// persistInterval is how often the last-known-good file is rewritten when
// the state changed. Writing is off the push path, so a burst of changes
// costs one write.
const persistInterval = time.Second

// lkgFormat is the version of the last-known-good file layout.
const lkgFormat = 1

type lkgFile struct {
	Format    int           `json:"format"`
	Source    string        `json:"source"`
	Revision  int64         `json:"revision"`
	SavedAt   time.Time     `json:"saved_at"`
	Services  []lkgService  `json:"services"`
	Endpoints []lkgEndpoint `json:"endpoints"`
}

type lkgService struct {
	Key     string        `json:"key"`
	Service *mesh.Service `json:"service"`
}

type lkgEndpoint struct {
	Service  string         `json:"service"`
	Instance string         `json:"instance"`
	Key      string         `json:"key"`
	Endpoint *mesh.Endpoint `json:"endpoint"`
}

// persist writes the current state to CacheFile whenever it changed, at
// most once per persistInterval, and once more on shutdown.
func (a *Agent) persist(ctx context.Context) error {
	if a.cfg.CacheFile == "" {
		return nil
	}
	var written *mesh.State
	tick := time.NewTicker(persistInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.writeIfChanged(&written)
			return nil
		case <-tick.C:
			a.writeIfChanged(&written)
		}
	}
}

func (a *Agent) writeIfChanged(written **mesh.State) {
	a.mu.Lock()
	st, source := a.current, a.currentSource
	a.mu.Unlock()
	if st == nil || st == *written || source == sourceLastKnownGood {
		return
	}
	if err := writeLastKnownGood(a.cfg.CacheFile, st, source); err != nil {
		a.log.Warn("could not write the last-known-good file", "path", a.cfg.CacheFile, "error", err)
		return
	}
	*written = st
}

func writeLastKnownGood(path string, st *mesh.State, source string) error {
	f := lkgFile{Format: lkgFormat, Source: source, Revision: st.Revision, SavedAt: time.Now().UTC()}
	for _, name := range st.ServiceNames() {
		svc := st.Services[name]
		f.Services = append(f.Services, lkgService{Key: svc.Key, Service: svc})
	}
	for _, set := range st.Endpoints {
		for _, inst := range set.SortedInstances() {
			ep := set.Instances[inst]
			f.Endpoints = append(f.Endpoints, lkgEndpoint{Service: set.Service, Instance: inst, Key: ep.Key, Endpoint: ep})
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loadLastKnownGood reads CacheFile. A missing file is normal on a first
// start; a damaged one is reported and ignored.
func (a *Agent) loadLastKnownGood() *mesh.State {
	if a.cfg.CacheFile == "" {
		return nil
	}
	st, err := readLastKnownGood(a.cfg.CacheFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		a.log.Warn("ignoring the last-known-good file", "path", a.cfg.CacheFile, "error", err)
		return nil
	}
	a.log.Info("loaded last-known-good state", "path", a.cfg.CacheFile, "revision", st.Revision,
		"services", len(st.Services), "endpoints", st.EndpointCount())
	return st
}

func readLastKnownGood(path string) (*mesh.State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f lkgFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	if f.Format != lkgFormat {
		return nil, fmt.Errorf("%s has format %d, this agent reads format %d", path, f.Format, lkgFormat)
	}
	st := &mesh.State{
		Revision:  f.Revision,
		Services:  make(map[string]*mesh.Service, len(f.Services)),
		Endpoints: make(map[string]*mesh.EndpointSet),
		Invalid:   map[string]error{},
	}
	for _, s := range f.Services {
		if s.Service == nil || s.Service.Name == "" {
			return nil, fmt.Errorf("%s: a service entry has no document", path)
		}
		s.Service.Key = s.Key
		st.Services[s.Service.Name] = s.Service
	}
	for _, e := range f.Endpoints {
		if e.Endpoint == nil {
			return nil, fmt.Errorf("%s: endpoint %s/%s has no document", path, e.Service, e.Instance)
		}
		set := st.Endpoints[e.Service]
		if set == nil {
			set = &mesh.EndpointSet{Service: e.Service, Instances: map[string]*mesh.Endpoint{}}
			st.Endpoints[e.Service] = set
		}
		e.Endpoint.Key = e.Key
		set.Instances[e.Instance] = e.Endpoint
	}
	return st, nil
}
