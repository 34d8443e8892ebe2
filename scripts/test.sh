#!/usr/bin/env bash
# Runs every test with the race detector, after building what the tests
# need that the Go module cache does not hold. Safe to run again: builds
# are cached under ${TETHER_CACHE:-$HOME/.cache/tether}.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -x scripts/consul.sh && -z "${TETHER_CONSUL_BIN:-}" ]]; then
  echo "== building Consul for the tests (cached after the first run)"
  TETHER_CONSUL_BIN=$(scripts/consul.sh | tail -n 1)
  export TETHER_CONSUL_BIN
fi

echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 25m ./...

# Istio's delta xDS client lives in a module of its own so that its
# Kubernetes dependencies stay out of the agent's go.mod.
echo "== go test -race (e2e/adsc, Istio's xDS clients)"
(cd e2e/adsc && go vet ./... && go test -race -count=1 -timeout 15m ./...)
