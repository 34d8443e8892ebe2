#!/usr/bin/env bash
# consul.sh builds Consul v1.14.11 (MPL-2.0) from source once, into a cache
# directory, and prints the path of the binary. A later run reuses the binary.
#
# The build happens in a throwaway module in a temporary directory so that
# Consul's server module never enters the project's go.mod.
#
# CACHE defaults to ${TETHER_CACHE:-$HOME/.cache/tether}.
set -euo pipefail

version="1.14.11"
cache="${CACHE:-${TETHER_CACHE:-$HOME/.cache/tether}}"
bin="$cache/consul-$version"

if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "building consul $version into $bin (takes 5 to 10 minutes the first time)" >&2
(
	cd "$work"
	export GOFLAGS=-mod=mod
	go mod init consulbuild >&2
	go get "github.com/hashicorp/consul@v$version" >&2
	# Build to a temporary name first so an interrupted build never leaves a
	# half-written binary at the cached path.
	go build -o "$bin.tmp" github.com/hashicorp/consul >&2
)
mv "$bin.tmp" "$bin"
echo "$bin"
