package etcd

import (
	"runtime"
	"strings"
	"sync"

	"github.com/tether-mesh/tether/mesh"
)

// entry is one stored key at one version.
type entry struct {
	key    string
	value  []byte
	modRev int64
}

// mirror is the watcher's copy of the keys it follows, kept in a
// mesh.Builder. Keys under the main prefix go through Builder.Put and
// Builder.Delete; keys under a naming prefix are parsed here and applied as
// single endpoints. It is not safe for concurrent use.
type mirror struct {
	builder *mesh.Builder
	naming  []string
	// modRevs maps each key to the ModRevision of the version applied, so
	// that a list after a lost watch re-parses only keys that changed and
	// unchanged services keep their pointers in the next State.
	modRevs map[string]int64
}

func newMirror(prefix string, naming []string) *mirror {
	return &mirror{
		builder: mesh.NewBuilder(prefix),
		naming:  naming,
		modRevs: make(map[string]int64),
	}
}

// holds reports whether the mirror has a value or an error for key.
func (m *mirror) holds(key string) bool {
	_, ok := m.modRevs[key]
	return ok
}

// current reports whether the mirror already holds e's version of its key.
func (m *mirror) current(e entry) bool {
	rev, ok := m.modRevs[e.key]
	return ok && rev == e.modRev
}

// put applies one stored key and returns the parse error of an invalid
// value. An invalid value leaves the key's last good value in place.
// parsed, when not nil, is e's value already parsed by parseAll.
func (m *mirror) put(e entry, parsed *mesh.Parsed) error {
	m.modRevs[e.key] = e.modRev
	if prefix, ok := m.namingPrefix(e.key); ok {
		return m.putNaming(prefix, e)
	}
	if parsed == nil {
		parsed = m.builder.Parse(e.key, e.value)
	}
	return m.builder.PutParsed(parsed)
}

// parallelParseMin is the number of entries from which parseAll spreads
// parsing over every core. Below it, starting goroutines costs more than
// it saves.
const parallelParseMin = 256

// parseAll parses the entries under the main prefix on every core and
// returns the results by index. Naming-format entries stay nil, and put
// parses them. Parsing does not change the mirror, so it can run
// concurrently, while applying stays on the caller's goroutine.
func (m *mirror) parseAll(entries []entry) []*mesh.Parsed {
	out := make([]*mesh.Parsed, len(entries))
	if len(entries) < parallelParseMin {
		return out
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(entries); i += workers {
				if _, naming := m.namingPrefix(entries[i].key); !naming {
					out[i] = m.builder.Parse(entries[i].key, entries[i].value)
				}
			}
		})
	}
	wg.Wait()
	return out
}

func (m *mirror) putNaming(prefix string, e entry) error {
	m.builder.TrackKey(e.key)
	service, _, err := parseNamingKey(prefix, e.key)
	var ep *mesh.Endpoint
	if err == nil {
		ep, err = parseNamingEndpoint(e.key, e.value)
	}
	if err != nil {
		m.builder.SetInvalid(e.key, err)
		return err
	}
	m.builder.ClearInvalid(e.key)
	// The key is the instance name, so that a naming instance never
	// replaces a native endpoint document of the same service.
	m.builder.PutEndpoint(service, e.key, ep)
	return nil
}

// delete removes key with its value or error.
func (m *mirror) delete(key string) {
	delete(m.modRevs, key)
	if prefix, ok := m.namingPrefix(key); ok {
		if service, _, err := parseNamingKey(prefix, key); err == nil {
			m.builder.DeleteEndpoint(service, key)
		}
	}
	m.builder.Delete(key)
}

// vanished returns the keys the mirror holds that are not in listed.
func (m *mirror) vanished(listed map[string]struct{}) []string {
	var keys []string
	for _, key := range m.builder.Keys() {
		if _, ok := listed[key]; !ok {
			keys = append(keys, key)
		}
	}
	return keys
}

func (m *mirror) namingPrefix(key string) (string, bool) {
	for _, p := range m.naming {
		if strings.HasPrefix(key, p) {
			return p, true
		}
	}
	return "", false
}
