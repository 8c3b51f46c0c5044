#!/usr/bin/env bash
# Builds one pinned tool from its wrapper module in tools/<name>/ into the cache outside the work tree.
# The cache folder is keyed by a hash of the wrapper module (go.mod, go.sum, sources, build recipe) and the
# Go version, so a pin change rebuilds and an unchanged pin is never rebuilt.
# Prints the bin folder on stdout; progress ("building …", "built … in Ns") and, on failure, the last lines of
# the build log go to stderr. The full log stays in <cache>/<name>-<key>.partial/build.log.
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

# module_dir SRC MODULE: the folder of MODULE at the version SRC's go.mod pins, downloaded first, so that a
# recipe works from an empty module cache. Fails loudly instead of printing an empty path.
module_dir() {
  local src=$1 module=$2 dir
  (cd "$src" && go mod download "$module") || { echo "could not download $module" >&2; return 1; }
  dir=$(cd "$src" && go list -m -f '{{.Dir}}' "$module")
  if [[ -z $dir || ! -d $dir ]]; then
    echo "module $module has no folder in the module cache after download (got '$dir')" >&2
    return 1
  fi
  echo "$dir"
}

rm -rf "$out.partial"
mkdir -p "$out.partial/bin"
log="$out.partial/build.log"
start=$(date +%s)
echo "building $name ($key)" >&2
# shellcheck source=/dev/null
source "$here/$name/recipe.sh"
# Not in an `if`: bash ignores `set -e` inside a tested subshell, and a recipe must stop at its first error.
set +e
(set -euo pipefail; build_tool "$here/$name" "$out.partial/bin") >"$log" 2>&1
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "FAILED $name after $(( $(date +%s) - start ))s; last lines of $log:" >&2
  tail -n 30 "$log" | sed 's/^/    /' >&2
  exit 1
fi
echo "$(( $(date +%s) - start ))" > "$out.partial/build-seconds"
touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "built $name in $(cat "$out/build-seconds")s" >&2
echo "$out/bin"
