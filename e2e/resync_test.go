package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/demo"
	"github.com/tether-mesh/tether/mesh"
	"github.com/tether-mesh/tether/xds"
)

// versions maps type URL to resource name to version.
type versions map[string]map[string]string

// served returns the versions of every resource the agent serves.
func (e *env) served() versions {
	out := versions{}
	for typeURL, rs := range e.agent.Cache().Snapshot() {
		if len(rs) == 0 {
			continue
		}
		out[typeURL] = map[string]string{}
		for name, r := range rs {
			out[typeURL][name] = r.Version
		}
	}
	return out
}

// expected translates what etcd holds now from scratch, with a fresh
// builder and translator: the resources a correct agent must serve.
// override replaces the stored value of some keys, for keys whose stored
// value is invalid and whose last good value the agent keeps.
func (e *env) expected(override map[string]string) versions {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		e.t.Fatal(err)
	}
	b := mesh.NewBuilder(prefix)
	for _, kv := range resp.Kvs {
		value := kv.Value
		if v, ok := override[string(kv.Key)]; ok {
			value = []byte(v)
		}
		if err := b.Put(string(kv.Key), value); err != nil {
			e.t.Fatalf("stored document %s is invalid: %v", kv.Key, err)
		}
	}
	tr := xds.NewTranslator(xds.TranslatorOptions{})
	if _, err := tr.Update(b.State()); err != nil {
		e.t.Fatal(err)
	}
	out := versions{}
	for typeURL, rs := range tr.Resources() {
		if len(rs) == 0 {
			continue
		}
		out[typeURL] = map[string]string{}
		for name, r := range rs {
			out[typeURL][name] = r.Version
		}
	}
	return out
}

// diff describes how got differs from want, or returns "".
func diff(got, want versions) string {
	var lines []string
	types := slices.Sorted(maps.Keys(want))
	for t := range got {
		if _, ok := want[t]; !ok {
			types = append(types, t)
		}
	}
	for _, t := range types {
		short := t[strings.LastIndex(t, ".")+1:]
		for name, v := range want[t] {
			if g, ok := got[t][name]; !ok {
				lines = append(lines, fmt.Sprintf("missing %s %s", short, name))
			} else if g != v {
				lines = append(lines, fmt.Sprintf("stale %s %s", short, name))
			}
		}
		for name := range got[t] {
			if _, ok := want[t][name]; !ok {
				lines = append(lines, fmt.Sprintf("extra %s %s", short, name))
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// expectServed waits until the agent serves exactly want.
func (e *env) expectServed(what string, want versions) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		d := diff(e.served(), want)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: served resources differ from the store after %s:\n%s", what, waitTimeout, d)
		}
		time.Sleep(20 * time.Millisecond) // polling the cache; nothing to await
	}
}

func TestCompactionDuringDisconnectServesExactState(t *testing.T) {
	e := startEnv(t, envOptions{throughProxy: true})
	e.expectServed("initial", e.expected(nil))

	e.proxy.Cut()
	// While the agent cannot see etcd: a new endpoint, a deleted service,
	// then compaction past every revision the agent saw.
	extra := e.startBackend(demoInstance("ratings", "ratings-v1-late", "v1"))
	e.putEndpoint(extra, 0)
	e.del(mesh.ServiceKey(prefix, "details"))
	resp, err := e.cli.Get(t.Context(), "compact-marker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	e.proxy.Restore()

	want := e.expected(nil)
	if _, ok := want[resourcev3.ClusterType]["details"]; ok {
		t.Fatal("test setup: details still in the store")
	}
	e.expectServed("after compaction", want)
	if m := e.getText("/metrics"); !strings.Contains(m, `tether_store_resyncs_total{reason="compacted",source="etcd"} 1`) {
		t.Errorf("the agent did not report a resync after compaction:\n%s", grep(m, "resyncs"))
	}

	// The watcher is still alive: a later write is seen.
	e.put(mesh.ServiceKey(prefix, "late"), "protocol: grpc\nport: 9091\n")
	e.expectServed("after a later write", e.expected(nil))
}

func TestEtcdRestartServesExactState(t *testing.T) {
	e := startEnv(t, envOptions{silenceTimeout: 2 * time.Second})
	e.expectServed("initial", e.expected(nil))
	before := e.served()

	e.stopEtcd()
	if d := diff(e.served(), before); d != "" {
		t.Errorf("served resources changed while etcd was down:\n%s", d)
	}
	e.startEtcd()
	e.put(mesh.ServiceKey(prefix, "ratings"), "protocol: grpc\nport: 9080\nloadBalancing: least_request\n")
	e.expectServed("after restart", e.expected(nil))
}

func TestInvalidDocumentServesLastGoodExactly(t *testing.T) {
	e := startEnv(t, envOptions{})
	key := mesh.ServiceKey(prefix, "reviews")
	good, err := e.cli.Get(t.Context(), key)
	if err != nil || len(good.Kvs) != 1 {
		t.Fatalf("read %s: %v", key, err)
	}
	e.expectServed("initial", e.expected(nil))

	e.put(key, "protocol: grpc\nport: 9080\nroutes:\n  - backends: [{subset: nope}]\n")
	e.put(mesh.ServiceKey(prefix, "ratings"), "protocol: grpc\nport: 9080\nconnectTimeout: 3s\n")
	e.expectServed("after the invalid write", e.expected(map[string]string{key: string(good.Kvs[0].Value)}))
}

func demoInstance(service, name, version string) demo.Instance {
	return demo.Instance{Service: service, Name: name, Labels: map[string]string{"app": service, "version": version}}
}

func TestSilentWatchReportsDegraded(t *testing.T) {
	e := startEnv(t, envOptions{throughProxy: true, silenceTimeout: time.Second})
	e.expectServed("initial", e.expected(nil))
	before := e.served()

	// The proxy stops delivering bytes but keeps the connection open, as a
	// partitioned or stopped etcd member does.
	e.proxy.Blackhole()
	e.put(mesh.ServiceKey(prefix, "ratings"), "protocol: grpc\nport: 9080\nconnectTimeout: 4s\n")

	var ready struct {
		Status string `json:"status"`
		Store  struct {
			Stale bool `json:"stale"`
		} `json:"store"`
	}
	deadline := time.Now().Add(waitTimeout)
	for ready.Status != "degraded" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling readiness; nothing to await
		if code := e.getJSON("/healthz/ready", &ready); code != 200 {
			t.Fatalf("readiness returned %d while serving the last good state", code)
		}
	}
	if ready.Status != "degraded" || !ready.Store.Stale {
		t.Fatalf("readiness = %+v, want degraded with a stale store", ready)
	}
	if m := e.getText("/metrics"); !strings.Contains(m, `tether_store_stale{source="etcd"} 1`) {
		t.Errorf("metrics lack tether_store_stale 1:\n%s", grep(m, "stale"))
	}
	if d := diff(e.served(), before); d != "" {
		t.Errorf("served resources changed while the store was silent:\n%s", d)
	}

	e.proxy.Restore()
	e.expectServed("after the partition healed", e.expected(nil))
	deadline = time.Now().Add(waitTimeout)
	for ready.Status != "ready" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling readiness; nothing to await
		e.getJSON("/healthz/ready", &ready)
	}
	if ready.Status != "ready" {
		t.Errorf("readiness = %+v after the partition healed, want ready", ready)
	}
}
