#!/usr/bin/env bash
# `make image`: the reconciler image, built with podman from the project's Dockerfile on a base made from
# Debian's packages, with the pinned binaries `make tools` built and the locked Python packages. Three images,
# each tagged by a hash of its inputs and built only when podman's storage lacks that tag:
#   localhost/canaryapp-base:<key>    tools/debian-base/'s root filesystem (cached like every tool, keyed by
#                                     its recipe: tools/build.sh debian-base), imported
#   localhost/canaryapp-tools:<hash>  pulumi and pulumi-resource-kubernetes from .tools/bin, in /out: the
#                                     Dockerfile's TOOLS_IMAGE, so its Go stage is skipped
#   localhost/canaryapp:<hash>        the Dockerfile on those two; the hash covers both tags, this script
#                                     and what the Dockerfile copies: requirements.lock, pyproject.toml,
#                                     README.md, tools/image/runtime_closure.py, reconciler/ and stacks/
# Prints each image's size and build time. Podman keeps its usual layer cache, so a change of the sources
# alone rebuilds only the last layer (the locked packages stay); `podman image prune` drops the layers of
# earlier builds. Podman runs with tools/image/containers.conf unless CONTAINERS_CONF names another. Its
# storage is podman's own, outside the work tree; `podman rmi` of a tag rebuilds that image.
#
#   tools/image/build.sh              build what is missing, print the reconciler image's tag last
#   tools/image/build.sh --print-ref  print the reconciler image's tag, build nothing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
tools_bin="$top/.tools/bin"
binaries=(pulumi pulumi-resource-kubernetes)

short_hash() { sha256sum | cut -c1-16; }

base_ref() { echo "localhost/canaryapp-base:$("$top/tools/key.sh" debian-base)"; }

tools_ref() {
  local name path
  for name in "${binaries[@]}"; do
    path=$(readlink -f "$tools_bin/$name" || true)
    if [[ ! -f $path ]]; then
      echo "$tools_bin/$name is missing: run \`make tools\` (it builds the pinned binaries)" >&2
      return 1
    fi
    sha256sum < "$path"
  done | { echo "localhost/canaryapp-tools:$(short_hash)"; }
}

app_ref() {
  local base=$1 tools=$2
  {
    echo "$base $tools"
    cd "$top"
    find Dockerfile tools/image/build.sh requirements.lock pyproject.toml README.md \
      tools/image/runtime_closure.py reconciler stacks -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | { echo "localhost/canaryapp:$(short_hash)"; }
}

exists() { podman image exists "$1"; }

size_mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

build_base() {
  local ref=$1 out start
  out=$("$top/tools/build.sh" debian-base)
  start=$(date +%s)
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$out/../share/debian-base.tar" "$ref" >/dev/null
  echo "base image $ref: root filesystem built in $(cat "$out/../build-seconds")s, imported in" \
    "$(( $(date +%s) - start ))s, $(size_mb "$ref")" >&2
}

build_tools() {
  local ref=$1 container name start
  start=$(date +%s)
  container=$(buildah from --quiet scratch)
  for name in "${binaries[@]}"; do
    buildah copy --quiet --chmod 0755 "$container" "$(readlink -f "$tools_bin/$name")" "/out/$name" >/dev/null
  done
  buildah commit --quiet --rm "$container" "$ref" >/dev/null
  echo "tools image $ref: built in $(( $(date +%s) - start ))s, $(size_mb "$ref")" >&2
}

build_app() {
  local ref=$1 base=$2 tools=$3 scratch start status=0
  local -a secrets
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/canaryapp-image.XXXXXX")
  # The pip settings may hold credentials: they live in a private temporary folder for the build only.
  trap 'rm -rf "$scratch"' RETURN
  mapfile -t secrets < <("$top/.venv/bin/python" "$top/tools/pip_settings.py" image "$scratch")
  echo "building $ref (base $base, tools $tools)" >&2
  start=$(date +%s)
  # Docker's image format, as `docker build` makes: in the OCI format buildah ignores SHELL, even for RUN.
  podman build --format=docker --pull=never --network=host \
    --build-arg "BASE_IMAGE=$base" --build-arg "TOOLS_IMAGE=$tools" \
    "${secrets[@]}" --file "$top/Dockerfile" --tag "$ref" "$top" >"$scratch/build.log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    echo "FAILED building $ref after $(( $(date +%s) - start ))s; last lines of the build:" >&2
    tail -n 30 "$scratch/build.log" | sed 's/^/    /' >&2
    return 1
  fi
  echo "reconciler image $ref: built in $(( $(date +%s) - start ))s, $(size_mb "$ref")" >&2
}

base=$(base_ref)
tools=$(tools_ref)
app=$(app_ref "$base" "$tools")
if [[ ${1:-} == --print-ref ]]; then
  echo "$app"
  exit 0
fi
for command in podman buildah debootstrap; do
  if ! command -v "$command" >/dev/null; then
    echo "make image needs podman, buildah and debootstrap; $command is missing:" \
      "\`make tools\` installs them (tools/debian.sh, tools/debian-packages.txt)" >&2
    exit 1
  fi
done
start=$(date +%s)
if ! exists "$app"; then
  exists "$base" || build_base "$base"
  exists "$tools" || build_tools "$tools"
  build_app "$app" "$base" "$tools"
  echo "make image: built in $(( $(date +%s) - start ))s" >&2
else
  echo "reconciler image $app: up to date, $(size_mb "$app")" >&2
fi
echo "$app"
