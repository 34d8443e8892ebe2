package agent

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/xds"
)

// largePush is the number of changed resources from which a push returns
// freed memory to the operating system at once. A cold start of a large
// mesh changes thousands; one endpoint change changes one or two.
const largePush = 1000

// publishFrom hands a new state to the pump. It never blocks: a state that
// arrives while the previous one waits replaces it.
func (a *Agent) publishFrom(st *mesh.State, source string) {
	a.mu.Lock()
	a.pending = st
	a.pendingSource = source
	a.mu.Unlock()
	select {
	case a.updated <- struct{}{}:
	default:
	}
}

// pump waits for states, coalesces bursts and pushes each result: a push
// happens once no new state arrived for Debounce, or MaxDelay after the
// first state of the burst, whichever comes first.
func (a *Agent) pump(ctx context.Context) error {
	translator := xds.NewTranslator(xds.TranslatorOptions{Logger: a.cfg.Logger})
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.updated:
		}
		deadline := time.NewTimer(a.cfg.MaxDelay)
		quiet.Reset(a.cfg.Debounce)
	burst:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				return nil
			case <-a.updated:
				quiet.Reset(a.cfg.Debounce)
			case <-quiet.C:
				break burst
			case <-deadline.C:
				quiet.Stop()
				break burst
			}
		}
		deadline.Stop()
		a.push(translator)
	}
}

// push translates the pending state and applies the changes to the cache.
func (a *Agent) push(translator *xds.Translator) {
	a.mu.Lock()
	st, source := a.pending, a.pendingSource
	a.pending = nil
	a.mu.Unlock()
	if st == nil {
		return
	}
	if wait := a.resetWait(st, source); wait > 0 {
		a.mu.Lock()
		if a.pending == nil {
			a.pending, a.pendingSource = st, source
		}
		a.mu.Unlock()
		// The timer sends without blocking, so it never outlives a
		// stopped pump for long.
		time.AfterFunc(wait, func() {
			select {
			case a.updated <- struct{}{}:
			default:
			}
		})
		return
	}
	if a.holdEmpty(st, source) {
		return
	}

	start := time.Now()
	changes, err := translator.Update(st)
	if err != nil {
		// The translator still returns the changes for every service it
		// could translate; the broken ones keep their last resources.
		a.metrics.translateErrors.Inc()
		a.log.Error("some services could not be translated; they keep their last resources", "error", err)
	}
	n := a.cache.Apply(changes)
	elapsed := time.Since(start)
	if n >= largePush {
		// Parsing and translating a large state leaves garbage that the
		// runtime would return to the OS only slowly. Returning it now,
		// after the push, makes resident memory reflect the live data.
		debug.FreeOSMemory()
	}

	a.mu.Lock()
	a.current = st
	a.currentSource = source
	a.resetUntil = time.Time{}
	a.storeServed = a.storeServed || source != sourceLastKnownGood
	a.lastPush = time.Now()
	a.mu.Unlock()
	a.metrics.pushes.Inc()
	a.metrics.pushSeconds.Observe(elapsed.Seconds())
	a.log.Info("pushed mesh state", "source", source, "revision", st.Revision,
		"services", len(st.Services), "endpoints", st.EndpointCount(),
		"invalid_documents", len(st.Invalid), "resources_changed", n,
		"duration_ms", float64(elapsed.Microseconds())/1000)
}

// resetWait returns how long st must wait because the store's revision
// went backwards, which a store reset or a restore from an older snapshot
// does. It starts the wait on the first such state.
func (a *Agent) resetWait(st *mesh.State, source string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	backwards := a.current != nil && source == a.currentSource && st.Revision < a.current.Revision
	if !backwards {
		a.resetUntil = time.Time{}
		return 0
	}
	if a.resetUntil.IsZero() {
		a.resetUntil = now.Add(a.cfg.ResetGrace)
		a.metrics.resets.Inc()
		a.log.Warn("the store's revision went backwards, so it was reset or restored; waiting before serving its state",
			"source", source, "revision", st.Revision, "revision_served", a.current.Revision, "wait", a.cfg.ResetGrace.String())
	}
	return a.resetUntil.Sub(now)
}

// holdEmpty reports whether st must be held back: it has no services or no
// endpoints while the state served has some, and Config.AllowEmptyMesh is
// off. A store that lost its data delivers such states, often one kind
// first and then the other.
func (a *Agent) holdEmpty(st *mesh.State, source string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	servedServices, servedEndpoints := 0, 0
	if a.current != nil {
		servedServices, servedEndpoints = len(a.current.Services), a.current.EndpointCount()
	}
	lost := (len(st.Services) == 0 && servedServices > 0) || (st.EndpointCount() == 0 && servedEndpoints > 0)
	hold := lost && !a.cfg.AllowEmptyMesh
	if hold && !a.heldEmpty {
		a.metrics.emptyHeld.Inc()
		a.log.Error("the store returned a mesh with no services or no endpoints; keeping the last state. "+
			"If they were all deleted on purpose, restart with --allow-empty-mesh",
			"source", source, "revision", st.Revision, "services", len(st.Services), "endpoints", st.EndpointCount(),
			"services_served", servedServices, "endpoints_served", servedEndpoints)
	}
	a.heldEmpty = hold
	return hold
}

// Current returns the state last pushed and its source: the watcher's
// name or "last-known-good".
func (a *Agent) Current() (*mesh.State, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current, a.currentSource
}
