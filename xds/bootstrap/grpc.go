// Package bootstrap writes the bootstrap files that xDS clients read at
// start to find Tether.
package bootstrap

import (
	"encoding/json"
	"fmt"
)

// GRPCOptions describes a proxyless gRPC client's bootstrap.
type GRPCOptions struct {
	// ServerAddr is Tether's xDS address, host:port.
	ServerAddr string
	// NodeID identifies the client in Tether's /debug/syncz.
	NodeID string
	// Cluster is the client's own service name, if any.
	Cluster string
	// Region and Zone place the client for locality-aware load balancing.
	Region string
	Zone   string
}

// GRPC returns a bootstrap for grpc-go, grpc-java, grpc-js and gRPC C-core,
// in the JSON layout of gRFC A27 ("xDS-Based Global Load Balancing"). The
// connection to Tether is plain text: Tether listens on loopback by default.
func GRPC(o GRPCOptions) ([]byte, error) {
	if o.ServerAddr == "" || o.NodeID == "" {
		return nil, fmt.Errorf("bootstrap: server address and node id are required")
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      o.ServerAddr,
			"channel_creds":   []any{map[string]string{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{
			"id":       o.NodeID,
			"cluster":  o.Cluster,
			"locality": map[string]string{"region": o.Region, "zone": o.Zone},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}
