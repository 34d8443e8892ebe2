// Package bench holds Tether's benchmarks and their recorded results
// (RESULTS.md). The benchmarks run the real pipeline: an embedded etcd
// server, the agent with its etcd watcher, and grpc-go's own xDS resolver
// and balancer as clients. Each prints go-control-plane's snapshot cache,
// fed the same change, beside it. The package has no exported API; the
// code lives in _test.go files and runs only with -bench.
package bench
