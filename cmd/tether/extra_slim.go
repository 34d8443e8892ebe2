//go:build slim

package main

import "github.com/spf13/cobra"

// extraCommands returns nothing in a slim build (go build -tags slim),
// the build for sidecars and VMs: it has agent, config and bootstrap.
func extraCommands(*globalFlags) []*cobra.Command { return nil }
