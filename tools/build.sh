#!/usr/bin/env bash
# Builds one pinned tool from its wrapper module in tools/<name>/ into the cache outside the work tree.
# The cache folder is keyed by a hash of the wrapper module (go.mod, go.sum, sources, build recipe) and the
# Go version, so a pin change rebuilds and an unchanged pin is never rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=$1
cache_root=${CANARYAPP_TOOLS_CACHE:-$HOME/.cache/canaryapp/tools}
key=$("$here/key.sh" "$name")
out="$cache_root/$name-$key"
if [[ -f "$out/.complete" ]]; then
  echo "$out/bin"
  exit 0
fi
rm -rf "$out.partial"
mkdir -p "$out.partial/bin"
start=$(date +%s)
echo "building $name ($key) into $out" >&2
# shellcheck source=/dev/null
source "$here/$name/recipe.sh"
build_tool "$here/$name" "$out.partial/bin" >&2
echo "$(( $(date +%s) - start ))" > "$out.partial/build-seconds"
touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "built $name in $(cat "$out/build-seconds")s" >&2
echo "$out/bin"
