package xds

import (
	"maps"
	"slices"
	"strconv"
	"sync"
)

// Cache holds the current resources of every type and wakes the streams
// that follow them. Unlike a snapshot cache, it tracks versions per
// resource: a change to one resource wakes streams with that one name, and
// each stream sends only what its client does not have yet.
//
// Cache is safe for concurrent use.
type Cache struct {
	mu sync.RWMutex
	// types maps a type URL to its resources; guarded by mu.
	types map[string]*typeResources
	// watchers are the open streams; guarded by mu.
	watchers map[*watcher]struct{}
	// applied counts the calls to Apply that changed something; guarded by mu.
	applied uint64
	// ready is set by the first Apply, even one that changes nothing.
	// Streams send nothing before it, so a client never mistakes an agent
	// that has not read its store yet for an empty mesh. Guarded by mu.
	ready bool
}

type typeResources struct {
	// version counts the changes to this type; it is the version_info of
	// state-of-the-world responses.
	version   uint64
	resources map[string]*Resource
}

// watcher is a stream's inbox: the cache records changed names here and
// signals wake; the stream drains them from its own goroutine.
type watcher struct {
	mu sync.Mutex
	// changed maps a type URL to the names changed since the last drain;
	// guarded by mu.
	changed map[string]map[string]struct{}
	// resync makes the stream send every subscription in full; guarded
	// by mu.
	resync bool
	// wake has capacity one. The cache sends without blocking and the
	// stream receives. It is never closed.
	wake chan struct{}
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	c := &Cache{
		types:    make(map[string]*typeResources),
		watchers: make(map[*watcher]struct{}),
	}
	for _, t := range pushOrder {
		c.types[t] = &typeResources{resources: make(map[string]*Resource)}
	}
	return c
}

// Apply stores the changes and wakes every stream. Upserts whose version
// equals the stored one are skipped. It returns the number of resources
// that changed.
func (c *Cache) Apply(ch Changes) int {
	c.mu.Lock()
	defer c.mu.Unlock()

	changed := make(map[string][]string)
	for typeURL, rs := range ch.Upserts {
		tr := c.typeLocked(typeURL)
		for _, r := range rs {
			if old := tr.resources[r.Name]; old != nil && old.Version == r.Version {
				continue
			}
			tr.resources[r.Name] = r
			changed[typeURL] = append(changed[typeURL], r.Name)
		}
	}
	for typeURL, names := range ch.Removes {
		tr := c.typeLocked(typeURL)
		for _, name := range names {
			if _, ok := tr.resources[name]; ok {
				delete(tr.resources, name)
				changed[typeURL] = append(changed[typeURL], name)
			}
		}
	}

	n := 0
	for typeURL, names := range changed {
		c.types[typeURL].version++
		n += len(names)
	}
	first := !c.ready
	c.ready = true
	if n > 0 || first {
		c.applied++
		for w := range c.watchers {
			w.notify(changed, first)
		}
	}
	return n
}

// Ready reports whether the cache has received its first state.
func (c *Cache) Ready() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready
}

func (c *Cache) typeLocked(typeURL string) *typeResources {
	tr := c.types[typeURL]
	if tr == nil {
		tr = &typeResources{resources: make(map[string]*Resource)}
		c.types[typeURL] = tr
	}
	return tr
}

// Version returns the version string of one type: it changes whenever a
// resource of that type changes.
func (c *Cache) Version(typeURL string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if tr := c.types[typeURL]; tr != nil {
		return strconv.FormatUint(tr.version, 10)
	}
	return "0"
}

// Applied returns the number of calls to Apply that changed something.
func (c *Cache) Applied() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.applied
}

// Get returns the named resource or nil.
func (c *Cache) Get(typeURL, name string) *Resource {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if tr := c.types[typeURL]; tr != nil {
		return tr.resources[name]
	}
	return nil
}

// lookup returns the resources of a type for the given names, and the type
// version, under one read lock. Missing names are left out.
func (c *Cache) lookup(typeURL string, names []string) ([]*Resource, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	tr := c.types[typeURL]
	if tr == nil {
		return nil, "0"
	}
	out := make([]*Resource, 0, len(names))
	for _, n := range names {
		if r := tr.resources[n]; r != nil {
			out = append(out, r)
		}
	}
	return out, strconv.FormatUint(tr.version, 10)
}

// wildcard returns every resource of a type that wildcard subscribers
// receive, sorted by name, and the type version.
func (c *Cache) wildcard(typeURL string) ([]*Resource, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	tr := c.types[typeURL]
	if tr == nil {
		return nil, "0"
	}
	out := make([]*Resource, 0, len(tr.resources))
	for _, name := range slices.Sorted(maps.Keys(tr.resources)) {
		if r := tr.resources[name]; !r.NamedOnly {
			out = append(out, r)
		}
	}
	return out, strconv.FormatUint(tr.version, 10)
}

// Snapshot returns a copy of every resource by type URL and name.
func (c *Cache) Snapshot() map[string]map[string]*Resource {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]map[string]*Resource, len(c.types))
	for t, tr := range c.types {
		out[t] = maps.Clone(tr.resources)
	}
	return out
}

func (c *Cache) addWatcher() *watcher {
	w := &watcher{changed: make(map[string]map[string]struct{}), wake: make(chan struct{}, 1)}
	c.mu.Lock()
	c.watchers[w] = struct{}{}
	c.mu.Unlock()
	return w
}

func (c *Cache) removeWatcher(w *watcher) {
	c.mu.Lock()
	delete(c.watchers, w)
	c.mu.Unlock()
}

func (w *watcher) notify(changed map[string][]string, resync bool) {
	w.mu.Lock()
	w.resync = w.resync || resync
	for typeURL, names := range changed {
		set := w.changed[typeURL]
		if set == nil {
			set = make(map[string]struct{}, len(names))
			w.changed[typeURL] = set
		}
		for _, n := range names {
			set[n] = struct{}{}
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// drain returns and clears the changed names and the resync flag.
func (w *watcher) drain() (map[string]map[string]struct{}, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out, resync := w.changed, w.resync
	w.changed = make(map[string]map[string]struct{})
	w.resync = false
	return out, resync
}
