package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/mesh"
)

// prefix is the key prefix the reference mesh is written under.
const prefix = "/tether/"

// endpointsPerService is the number of endpoints of every reference
// service; the first half is labelled version v1, the rest v2.
const endpointsPerService = 10

// txnOps is the number of puts per etcd transaction when the mesh is
// written. Embedded etcd rejects transactions of more than 128 operations
// (embed.DefaultMaxTxnOps).
const txnOps = 100

// serviceDoc is a reference service in the style of bookinfo's reviews:
// two subsets, a header route and a weighted 80/20 split with a timeout,
// retries and outlier detection.
const serviceDoc = `protocol: grpc
port: 9080
loadBalancing: round_robin
subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
routes:
  - name: canary-header
    match:
      headers:
        - name: x-canary
          exact: "true"
    backends:
      - subset: v2
  - name: split
    backends:
      - subset: v1
        weight: 80
      - subset: v2
        weight: 20
    timeout: 5s
    retries:
      attempts: 2
      retryOn: [unavailable]
outlierDetection:
  consecutive5xx: 5
  interval: 10s
  baseEjectionTime: 30s
  maxEjectionPercent: 50
`

// refMesh describes a generated mesh: services svc-0000 and up with
// endpointsPerService endpoints each.
type refMesh struct {
	services int
	// real holds the addresses of running backends for the endpoints of
	// svc-0000 (host:port). Every other endpoint gets a loopback address
	// that nothing listens on and no client dials.
	real []string
}

func serviceName(i int) string { return fmt.Sprintf("svc-%04d", i) }

func instanceName(e int) string { return fmt.Sprintf("ep-%02d", e) }

// endpointVersion returns the subset label of endpoint e.
func endpointVersion(e int) string {
	if e < endpointsPerService/2 {
		return "v1"
	}
	return "v2"
}

// endpointAddr returns the address of endpoint e of service s.
func (m refMesh) endpointAddr(s, e int) (string, uint32) {
	if s == 0 && e < len(m.real) {
		host, port, err := net.SplitHostPort(m.real[e])
		if err == nil {
			p, err := strconv.ParseUint(port, 10, 16)
			if err == nil {
				return host, uint32(p)
			}
		}
	}
	// 127.0.0.0/8 holds every address here; a distinct port per endpoint
	// keeps the addresses of one service distinct, as gRPC requires.
	return fmt.Sprintf("127.0.%d.%d", 1+s/250, 1+s%250), uint32(20000 + e)
}

// endpointDoc returns the JSON endpoint document of endpoint e of service
// s with the given weight.
func (m refMesh) endpointDoc(s, e int, weight uint32) string {
	addr, port := m.endpointAddr(s, e)
	b, err := json.Marshal(mesh.Endpoint{
		Address:  addr,
		Port:     port,
		Labels:   map[string]string{"app": serviceName(s), "version": endpointVersion(e)},
		Locality: mesh.Locality{Region: "local", Zone: fmt.Sprintf("local-%c", 'a'+rune(e%3))},
		Weight:   weight,
		Health:   mesh.HealthHealthy,
	})
	if err != nil {
		// mesh.Endpoint holds only strings and numbers.
		panic(fmt.Sprintf("marshal endpoint document: %v", err))
	}
	return string(b)
}

func endpointKey(s, e int) string { return mesh.EndpointKey(prefix, serviceName(s), instanceName(e)) }

// kvs returns every key and value of the mesh, services first, all
// endpoints at weight 1.
func (m refMesh) kvs() [][2]string {
	out := make([][2]string, 0, m.services*(1+endpointsPerService))
	for s := range m.services {
		out = append(out, [2]string{mesh.ServiceKey(prefix, serviceName(s)), serviceDoc})
	}
	for s := range m.services {
		for e := range endpointsPerService {
			out = append(out, [2]string{endpointKey(s, e), m.endpointDoc(s, e, 1)})
		}
	}
	return out
}

// write puts the whole mesh into etcd in transactions of txnOps puts and
// returns the revision of the last one.
func (m refMesh) write(ctx context.Context, cli *clientv3.Client) (int64, error) {
	kvs := m.kvs()
	var rev int64
	for start := 0; start < len(kvs); start += txnOps {
		batch := kvs[start:min(start+txnOps, len(kvs))]
		ops := make([]clientv3.Op, len(batch))
		for i, kv := range batch {
			ops[i] = clientv3.OpPut(kv[0], kv[1])
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return 0, fmt.Errorf("write reference mesh, keys %d to %d: %w", start, start+len(batch), err)
		}
		rev = resp.Header.Revision
	}
	return rev, nil
}

// builder returns a mesh.Builder that holds the whole mesh, the same state
// the etcd watcher builds from the store.
func (m refMesh) builder() (*mesh.Builder, error) {
	b := mesh.NewBuilder(prefix)
	for _, kv := range m.kvs() {
		if err := b.Put(kv[0], []byte(kv[1])); err != nil {
			return nil, fmt.Errorf("reference mesh document %s: %w", kv[0], err)
		}
	}
	return b, nil
}
