//go:build !slim

package main

import "github.com/spf13/cobra"

// extraCommands returns the commands a slim build leaves out. dev links an
// etcd server and call links grpc-go's xDS client. Together they add about
// 20 MB to the binary and about 11 MiB to the agent's idle resident memory
// (BenchmarkAgentMemory in bench, go1.26.8).
func extraCommands(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{newDevCommand(g), newCallCommand(g)}
}
