package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/mesh"
)

// Seed writes the demo mesh under prefix. Service documents are written
// only where the key is absent, so edits survive a restart of `tether
// dev`. Endpoint documents are replaced by the running backends and bound
// to lease, so they vanish when the lease ends.
func Seed(ctx context.Context, cli *clientv3.Client, prefix string, backends []*Backend, lease clientv3.LeaseID) error {
	for name, doc := range Services() {
		key := mesh.ServiceKey(prefix, name)
		if _, err := mesh.ParseService(key, name, []byte(doc)); err != nil {
			return fmt.Errorf("demo service %s is invalid: %w", name, err)
		}
		_, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, doc)).
			Commit()
		if err != nil {
			return fmt.Errorf("seed %s: %w", key, err)
		}
	}
	for _, svc := range []string{"productpage", "details", "ratings", "reviews"} {
		if _, err := cli.Delete(ctx, prefix+mesh.EndpointsDir+svc+"/", clientv3.WithPrefix()); err != nil {
			return fmt.Errorf("clear old demo endpoints of %s: %w", svc, err)
		}
	}
	for _, b := range backends {
		doc, err := EndpointDocument(b.Instance, b.Addr)
		if err != nil {
			return err
		}
		key := mesh.EndpointKey(prefix, b.Instance.Service, b.Instance.Name)
		if _, err := cli.Put(ctx, key, string(doc), clientv3.WithLease(lease)); err != nil {
			return fmt.Errorf("seed %s: %w", key, err)
		}
	}
	return nil
}

// EndpointDocument returns the JSON endpoint document for an instance
// listening on addr.
func EndpointDocument(inst Instance, addr string) ([]byte, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("backend address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("backend port %q: %w", portStr, err)
	}
	return json.Marshal(mesh.Endpoint{
		Address:  host,
		Port:     uint32(port),
		Labels:   inst.Labels,
		Locality: mesh.Locality{Region: "local", Zone: "local-a"},
		Weight:   1,
		Health:   mesh.HealthHealthy,
	})
}
