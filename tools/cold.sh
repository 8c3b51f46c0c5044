#!/usr/bin/env bash
# `make tools-cold`: proves that the toolchain builds on a new machine. Builds every pinned tool with an empty
# Go module cache, an empty Go build cache and an empty tools cache (all temporary, removed afterwards), two at
# a time like `make tools`, and prints the wall time of each tool and of the whole build. Touches nothing in
# the work tree or in the real caches. Takes about 20-30 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/list.sh
source "$here/list.sh"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/canaryapp-tools-cold.XXXXXX")
cleanup() { chmod -R u+w "$scratch" 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT
export GOMODCACHE=$scratch/gomodcache GOCACHE=$scratch/gocache CANARYAPP_TOOLS_CACHE=$scratch/tools
echo "cold build in $scratch (GOMODCACHE, GOCACHE and CANARYAPP_TOOLS_CACHE all empty)"
start=$(date +%s)
status=0
printf '%s\n' "${TOOLS[@]}" | xargs -P 2 -I{} "$here/build.sh" {} >/dev/null || status=$?
total=$(( $(date +%s) - start ))
echo
printf '%-20s %s\n' tool seconds
for name in "${TOOLS[@]}"; do
  seconds=$(cat "$CANARYAPP_TOOLS_CACHE/$name-$("$here/key.sh" "$name")/build-seconds" 2>/dev/null || echo failed)
  printf '%-20s %s\n' "$name" "$seconds"
done
printf '%-20s %s\n' "total (wall)" "$total"
exit "$status"
