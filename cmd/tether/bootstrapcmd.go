package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tether-mesh/tether/xds/bootstrap"
)

func newBootstrapCommand(_ *globalFlags) *cobra.Command {
	var o bootstrap.GRPCOptions
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Print an xDS bootstrap for a proxyless gRPC client",
		Long: `Print the JSON bootstrap a proxyless gRPC client reads from the file named by
GRPC_XDS_BOOTSTRAP, or inline from GRPC_XDS_BOOTSTRAP_CONFIG, to find the agent.`,
		Example: `  tether bootstrap --node-id frontend-1 > /etc/grpc-xds.json
  GRPC_XDS_BOOTSTRAP=/etc/grpc-xds.json ./my-grpc-client`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := bootstrap.GRPC(o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.ServerAddr, "xds-addr", "127.0.0.1:18000", "host:port of the agent's xDS server")
	cmd.Flags().StringVar(&o.NodeID, "node-id", "grpc-client", "node id the client reports to the agent")
	cmd.Flags().StringVar(&o.Cluster, "cluster", "", "the client's own service name, if any")
	cmd.Flags().StringVar(&o.Region, "region", "", "the client's region, for locality-aware load balancing")
	cmd.Flags().StringVar(&o.Zone, "zone", "", "the client's zone within --region")
	return cmd
}
