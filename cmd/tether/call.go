//go:build !slim

package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver

	"github.com/tether-mesh/tether/xds/bootstrap"
)

// bootstrapEnv is the variable grpc-go reads its xDS bootstrap from. It is
// read once at process start, so call re-executes itself to set it.
const bootstrapEnv = "GRPC_XDS_BOOTSTRAP_CONFIG"

func newCallCommand(_ *globalFlags) *cobra.Command {
	var xdsAddr, nodeID string
	var count int
	var headers []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "call TARGET",
		Short: "Send requests through the mesh as a proxyless gRPC client",
		Long: `Send -n unary requests (grpc.testing.TestService/UnaryCall) to TARGET, such as
xds:///reviews, using grpc-go's own xDS resolver and balancer against the
agent at --xds-addr, then print how many replies each instance sent. The demo
backends of "tether dev" answer this method.`,
		Example: `  tether call xds:///reviews -n 20
  tether call xds:///reviews -n 5 -H end-user=jason`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Getenv(bootstrapEnv) == "" && os.Getenv("GRPC_XDS_BOOTSTRAP") == "" {
				return reexecWithBootstrap(xdsAddr, nodeID)
			}
			return callTarget(cmd.Context(), args[0], count, headers, timeout)
		},
	}
	cmd.Flags().StringVar(&xdsAddr, "xds-addr", "127.0.0.1:18000", "host:port of the agent's xDS server")
	cmd.Flags().StringVar(&nodeID, "node-id", "tether-call", "node id the client reports to the agent")
	cmd.Flags().IntVarP(&count, "count", "n", 10, "number of requests")
	cmd.Flags().StringSliceVarP(&headers, "header", "H", nil, "request header as name=value; repeatable")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "deadline of each request, including the first xDS resolution (for example 10s)")
	return cmd
}

func reexecWithBootstrap(xdsAddr, nodeID string) error {
	b, err := bootstrap.GRPC(bootstrap.GRPCOptions{ServerAddr: xdsAddr, NodeID: nodeID})
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable to set %s: %w", bootstrapEnv, err)
	}
	env := append(os.Environ(), bootstrapEnv+"="+string(b))
	return syscall.Exec(self, os.Args, env)
}

func callTarget(ctx context.Context, target string, count int, headers []string, timeout time.Duration) error {
	if count < 1 {
		return fmt.Errorf("invalid --count %d: send at least 1 request", count)
	}
	md := metadata.MD{}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, "=")
		if !ok || name == "" {
			return fmt.Errorf("invalid --header %q: write name=value", h)
		}
		md.Append(strings.ToLower(name), value)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("create client for %s: %w", target, err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	tally := map[string]int{}
	var failures []error
	for range count {
		rctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, md), timeout)
		// Without wait-for-ready, a request fails at once with the
		// resolver's reason (such as a listener that does not exist)
		// instead of waiting out its whole timeout.
		resp, err := client.UnaryCall(rctx, &testpb.SimpleRequest{FillServerId: true})
		cancel()
		if err != nil {
			failures = append(failures, err)
			continue
		}
		tally[resp.GetServerId()]++
	}
	for _, id := range slices.Sorted(maps.Keys(tally)) {
		fmt.Printf("%-20s %d\n", id, tally[id])
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d of %d requests failed, the first: %w", len(failures), count, failures[0])
	}
	return nil
}
