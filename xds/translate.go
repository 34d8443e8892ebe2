package xds

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tether-mesh/tether/mesh"
)

// DefaultBindAddress is the address Envoy's outbound listeners bind to when
// TranslatorOptions.BindAddress is empty.
const DefaultBindAddress = "0.0.0.0"

// Errors that Translator.Update wraps in a *TranslationError.
var (
	// ErrPortConflict reports a tcp service that shares its port with
	// another service. Envoy binds one listener per port, so the tcp
	// service gets no outbound listener.
	ErrPortConflict = errors.New("xds: tcp service shares its port with another service")
	// ErrNameConflict reports a service whose name equals the name of a
	// per-port route configuration.
	ErrNameConflict = errors.New("xds: service name collides with a generated resource name")
	// ErrDuplicateAddress reports two endpoints of one service with the
	// same address and port. gRPC clients reject such an assignment.
	ErrDuplicateAddress = errors.New("xds: duplicate endpoint address")
	// ErrInvalidResource reports a generated resource that failed
	// validation, which is a bug in the translator.
	ErrInvalidResource = errors.New("xds: generated resource is invalid")
)

// TranslationError is a failure to translate part of the mesh, with the
// store keys whose documents produced it.
type TranslationError struct {
	// TypeURL and Name identify the resource that could not be produced.
	TypeURL string
	Name    string
	// Keys are the store keys of the documents involved.
	Keys []string
	// Err is the cause, which wraps one of the Err* values of this package.
	Err error
}

func (e *TranslationError) Error() string {
	kind := e.TypeURL[strings.LastIndex(e.TypeURL, ".")+1:]
	return fmt.Sprintf("translate %s %q (keys %s): %v", kind, e.Name, strings.Join(e.Keys, ", "), e.Err)
}

func (e *TranslationError) Unwrap() error { return e.Err }

// TranslatorOptions configures a Translator.
type TranslatorOptions struct {
	// Logger receives debug records of each update. Default slog.Default().
	Logger *slog.Logger
	// BindAddress is the IP address Envoy's outbound listeners bind to.
	// Default DefaultBindAddress.
	BindAddress string
}

// Translator turns mesh States into Envoy resources and keeps the previous
// result, so that each Update translates only the services that changed.
// A Translator is not safe for concurrent use: one goroutine owns it.
type Translator struct {
	log         *slog.Logger
	bindAddress string

	// services and endpoints are the maps of the last State given to
	// Update. States are immutable, so keeping them is safe.
	services  map[string]*mesh.Service
	endpoints map[string]*mesh.EndpointSet
	// outputs holds per-service translation results by service name.
	outputs map[string]*serviceOutput
	// deferPuts makes putResource queue resources in pending, for
	// flushPuts to prepare on every core.
	deferPuts bool
	pending   []*pendingPut
	// ports maps a port to the services that listen on it.
	ports map[uint32]map[string]*mesh.Service
	// resources is the current full set by type URL, then name.
	resources map[string]map[string]*Resource
}

// serviceOutput is the translation result of one service, kept so that an
// endpoint change or a rebuild of a shared resource does not redo the
// whole service.
type serviceOutput struct {
	name string
	svc  *mesh.Service
	// virtualHost is shared by the route configuration named after the
	// service and the one named after its port. It is nil for tcp.
	virtualHost *routev3.VirtualHost
	// owned lists every resource the service alone produces.
	owned []resourceRef
}

type resourceRef struct {
	typeURL string
	name    string
}

// NewTranslator returns a Translator with no previous state.
func NewTranslator(opts TranslatorOptions) *Translator {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	bind := opts.BindAddress
	if bind == "" {
		bind = DefaultBindAddress
	}
	t := &Translator{
		log:         logger.With("component", "xds.translator"),
		bindAddress: bind,
		services:    map[string]*mesh.Service{},
		endpoints:   map[string]*mesh.EndpointSet{},
		outputs:     map[string]*serviceOutput{},
		ports:       map[uint32]map[string]*mesh.Service{},
		resources:   map[string]map[string]*Resource{},
	}
	for _, typeURL := range translatedTypes {
		t.resources[typeURL] = map[string]*Resource{}
	}
	return t
}

// translatedTypes are the type URLs a Translator produces.
var translatedTypes = []string{
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
}

// Update translates st against the State of the previous call and returns
// what changed. Only services whose *mesh.Service or *mesh.EndpointSet
// pointer differs from the previous State are translated again, and only
// resources whose bytes changed are returned. A nil st is an empty mesh.
//
// The error joins one *TranslationError per problem found while
// translating the changed services. The returned Changes are still valid
// and cover everything that could be translated. A problem is reported by
// the Update that translates the service involved, and not again while that
// service stays unchanged.
func (t *Translator) Update(st *mesh.State) (Changes, error) {
	if st == nil {
		st = &mesh.State{}
	}
	d := t.diff(st)
	b := newChangeBatch()
	dirtyPorts := map[uint32]struct{}{}
	t.deferPuts = len(d.services) >= deferPutsMin

	for _, name := range d.removed {
		dirtyPorts[t.services[name].Port] = struct{}{}
		t.removeService(b, name)
	}
	for _, name := range d.services {
		svc := st.Services[name]
		if old := t.services[name]; old != nil {
			dirtyPorts[old.Port] = struct{}{}
		}
		dirtyPorts[svc.Port] = struct{}{}
		t.translateService(b, name, svc, st.Endpoints[name])
	}
	for _, name := range d.endpoints {
		t.translateEndpoints(b, t.outputs[name], st.Endpoints[name])
	}
	for _, port := range slices.Sorted(maps.Keys(dirtyPorts)) {
		t.translatePort(b, port)
	}
	if t.deferPuts {
		t.flushPuts(b)
	}

	t.services = st.Services
	t.endpoints = st.Endpoints
	t.log.Debug("translated mesh state",
		"revision", st.Revision,
		"services_changed", len(d.services),
		"services_removed", len(d.removed),
		"endpoint_sets_changed", len(d.endpoints),
		"upserts", b.upsertCount(),
		"removes", b.removeCount(),
		"errors", len(b.errs))
	return b.changes(), errors.Join(b.errs...)
}

// stateDiff lists, by service name in sorted order, what changed between
// two States.
type stateDiff struct {
	// removed services had a document before and have none now.
	removed []string
	// services have a new or changed document.
	services []string
	// endpoints are services whose document is unchanged but whose
	// endpoint set is new, changed or gone.
	endpoints []string
}

// diff compares st with the previous State by pointer. It costs one map
// lookup per service and per endpoint set of st, plus a pass over the
// previous State's maps only when something was removed from them.
func (t *Translator) diff(st *mesh.State) stateDiff {
	var d stateDiff
	kept := 0
	for name, svc := range st.Services {
		old, ok := t.services[name]
		if ok {
			kept++
		}
		if svc != old {
			d.services = append(d.services, name)
		}
	}
	if kept < len(t.services) {
		for name := range t.services {
			if _, ok := st.Services[name]; !ok {
				d.removed = append(d.removed, name)
			}
		}
	}

	var epsChanged []string
	keptSets := 0
	for name, eps := range st.Endpoints {
		old, ok := t.endpoints[name]
		if ok {
			keptSets++
		}
		if eps != old {
			epsChanged = append(epsChanged, name)
		}
	}
	if keptSets < len(t.endpoints) {
		for name := range t.endpoints {
			if _, ok := st.Endpoints[name]; !ok {
				epsChanged = append(epsChanged, name)
			}
		}
	}
	// A changed document already rebuilds its endpoints, and endpoints of
	// a service without a document produce nothing.
	for _, name := range epsChanged {
		if svc := st.Services[name]; svc != nil && svc == t.services[name] {
			d.endpoints = append(d.endpoints, name)
		}
	}

	slices.Sort(d.removed)
	slices.Sort(d.services)
	slices.Sort(d.endpoints)
	return d
}

// Resources returns the current full set of resources by type URL, then
// name. The maps are copies; the *Resource values are shared and must not
// be modified.
func (t *Translator) Resources() map[string]map[string]*Resource {
	out := make(map[string]map[string]*Resource, len(t.resources))
	for typeURL, byName := range t.resources {
		out[typeURL] = maps.Clone(byName)
	}
	return out
}

// translateService rebuilds everything service name produces on its own and
// moves it between port groups. Shared per-port resources are rebuilt later
// by translatePort.
func (t *Translator) translateService(b *changeBatch, name string, svc *mesh.Service, eps *mesh.EndpointSet) {
	prev := t.outputs[name]
	if prev != nil {
		delete(t.ports[prev.svc.Port], name)
	}
	if t.ports[svc.Port] == nil {
		t.ports[svc.Port] = map[string]*mesh.Service{}
	}
	t.ports[svc.Port][name] = svc

	out := &serviceOutput{name: name, svc: svc}
	t.outputs[name] = out
	t.translateClusters(b, name, out)
	t.translateEndpoints(b, out, eps)
	t.translateServiceRoutes(b, name, out)

	if prev != nil {
		t.removeStale(b, prev.owned, out.owned)
	}
}

// removeService removes every resource the service alone produced.
func (t *Translator) removeService(b *changeBatch, name string) {
	out := t.outputs[name]
	if out == nil {
		return
	}
	for _, ref := range out.owned {
		t.remove(b, ref.typeURL, ref.name)
	}
	delete(t.ports[out.svc.Port], name)
	delete(t.outputs, name)
}

// removeStale removes the resources in before that are not in after.
func (t *Translator) removeStale(b *changeBatch, before, after []resourceRef) {
	keep := make(map[resourceRef]struct{}, len(after))
	for _, ref := range after {
		keep[ref] = struct{}{}
	}
	for _, ref := range before {
		if _, ok := keep[ref]; !ok {
			t.remove(b, ref.typeURL, ref.name)
		}
	}
}

// put validates msg, stores it and records it as an upsert when its bytes
// or keys changed. A resource that fails validation is not stored, so the
// previous version, if any, stays in place.
func (t *Translator) put(b *changeBatch, typeURL, name string, msg proto.Message, keys ...string) bool {
	return t.putResource(b, typeURL, name, msg, false, keys)
}

// putNamedOnly is put for a resource sent only to clients that request it
// by name (see Resource.NamedOnly).
func (t *Translator) putNamedOnly(b *changeBatch, typeURL, name string, msg proto.Message, keys ...string) bool {
	return t.putResource(b, typeURL, name, msg, true, keys)
}

// putResource does the work of put and putNamedOnly. It returns whether
// the set now holds a resource of that name, new or previous, so that a
// caller can leave out resources that would refer to a missing one. While
// a large Update defers its puts, it returns true and the resource is
// marshalled, validated and stored by flushPuts.
func (t *Translator) putResource(b *changeBatch, typeURL, name string, msg proto.Message, namedOnly bool, keys []string) bool {
	p := &pendingPut{typeURL: typeURL, name: name, msg: msg, namedOnly: namedOnly, keys: keys}
	if t.deferPuts {
		t.pending = append(t.pending, p)
		return true
	}
	p.prepare()
	return t.store(b, p)
}

// pendingPut is one resource on its way into the set.
type pendingPut struct {
	typeURL   string
	name      string
	msg       proto.Message
	namedOnly bool
	keys      []string
	// r and err are set by prepare.
	r   *Resource
	err error
}

// prepare marshals, hashes and validates the resource. It touches nothing
// shared, so several goroutines may prepare different puts at once.
func (p *pendingPut) prepare() {
	p.r, p.err = NewResource(p.name, p.msg, p.keys...)
	if p.err == nil {
		p.err = ValidateResource(p.r)
	}
	if p.r != nil {
		p.r.NamedOnly = p.namedOnly
		// The marshalled bytes are all the set needs from now on.
		p.r.Message = nil
	}
}

// store puts a prepared resource into the set and records the upsert
// when its bytes or keys changed. A resource that failed validation is
// not stored, so the previous version, if any, stays in place.
func (t *Translator) store(b *changeBatch, p *pendingPut) bool {
	byName := t.resources[p.typeURL]
	if p.err != nil {
		b.errs = append(b.errs, &TranslationError{
			TypeURL: p.typeURL, Name: p.name, Keys: p.keys,
			Err: fmt.Errorf("%w: %w", ErrInvalidResource, p.err),
		})
		return byName[p.name] != nil
	}
	r := p.r
	old := byName[p.name]
	if old != nil && old.Version == r.Version && old.NamedOnly == r.NamedOnly && slices.Equal(old.Keys, r.Keys) {
		return true
	}
	byName[p.name] = r
	b.upsert(r)
	return true
}

// deferPutsMin is the number of changed services from which Update
// prepares resources on every core. Marshalling and validating are most
// of a cold start's translation time.
const deferPutsMin = 64

// flushPuts prepares the deferred puts on every core, then stores them in
// the order they were made, so a later put of a name wins as it would
// have without deferring.
// NOTE: while puts are deferred, putResource reports every resource as
// present, so a listener is kept even when its route configuration fails
// validation. Validation failures are translator bugs, and each is still
// reported in the Update's error.
func (t *Translator) flushPuts(b *changeBatch) {
	pending := t.pending
	t.pending, t.deferPuts = nil, false
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(pending); i += workers {
				pending[i].prepare()
			}
		})
	}
	wg.Wait()
	for _, p := range pending {
		t.store(b, p)
	}
}

// remove drops a resource from the current set and records the removal
// when it was there.
func (t *Translator) remove(b *changeBatch, typeURL, name string) {
	if _, ok := t.resources[typeURL][name]; !ok {
		return
	}
	delete(t.resources[typeURL], name)
	b.remove(typeURL, name)
}

// changeBatch collects the changes and errors of one Update. An upsert
// cancels an earlier removal of the same name and the other way round.
type changeBatch struct {
	upserts map[string]map[string]*Resource
	removes map[string]map[string]struct{}
	errs    []error
}

func newChangeBatch() *changeBatch {
	return &changeBatch{
		upserts: map[string]map[string]*Resource{},
		removes: map[string]map[string]struct{}{},
	}
}

func (b *changeBatch) upsert(r *Resource) {
	typeURL := r.TypeURL()
	delete(b.removes[typeURL], r.Name)
	if b.upserts[typeURL] == nil {
		b.upserts[typeURL] = map[string]*Resource{}
	}
	b.upserts[typeURL][r.Name] = r
}

func (b *changeBatch) remove(typeURL, name string) {
	delete(b.upserts[typeURL], name)
	if b.removes[typeURL] == nil {
		b.removes[typeURL] = map[string]struct{}{}
	}
	b.removes[typeURL][name] = struct{}{}
}

// changes returns the batch as Changes, with every list sorted by name and
// no empty lists.
func (b *changeBatch) changes() Changes {
	ch := Changes{Upserts: map[string][]*Resource{}, Removes: map[string][]string{}}
	for typeURL, byName := range b.upserts {
		if len(byName) == 0 {
			continue
		}
		rs := slices.Collect(maps.Values(byName))
		slices.SortFunc(rs, func(x, y *Resource) int { return cmp.Compare(x.Name, y.Name) })
		ch.Upserts[typeURL] = rs
	}
	for typeURL, names := range b.removes {
		if len(names) == 0 {
			continue
		}
		ch.Removes[typeURL] = slices.Sorted(maps.Keys(names))
	}
	return ch
}

func (b *changeBatch) upsertCount() int {
	n := 0
	for _, byName := range b.upserts {
		n += len(byName)
	}
	return n
}

func (b *changeBatch) removeCount() int {
	n := 0
	for _, names := range b.removes {
		n += len(names)
	}
	return n
}
