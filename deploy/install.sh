#!/bin/sh
# Builds a self-contained sigma-agent install tree: the sources main.ts imports, its npm
# dependencies pinned by deno.lock (node_modules/), the permission flags and the launcher
# bin/sigma-agent. Used by the Dockerfile's build stage and for a systemd host without a
# `deno compile` binary. Needs `deno` (the pinned version) on PATH and the npm registry.
#
# Usage: deploy/install.sh [PREFIX]     (default PREFIX: /opt/sigma-agent)
set -eu
src=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
prefix=${1:-/opt/sigma-agent}
mkdir -p "$prefix/bin" "$prefix/deploy" "$prefix/proto"
cp "$src/main.ts" "$src/deno.json" "$src/deno.lock" "$prefix/"
cp -R "$src/lib" "$prefix/"
cp -R "$src/proto/gen" "$prefix/proto/"
cp "$src/deploy/permissions.flags" "$src/deploy/dev_api.ts" "$prefix/deploy/"
cp "$src/deploy/bin/sigma-agent" "$prefix/bin/sigma-agent"
chmod 0755 "$prefix/bin/sigma-agent"
cd "$prefix"
# Only what main.ts needs (not the test and tooling packages), exactly as locked.
deno install --quiet --frozen --entrypoint main.ts
# Type-check once at build time; `deno run` does not.
deno check --quiet --frozen main.ts
